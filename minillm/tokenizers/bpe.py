"""Byte-level BPE: subword units learned from data, as in GPT-2.

Lecture 1 §tokens (subword units): text becomes UTF-8 bytes, ids 0..255, so nothing is
ever out of vocabulary; learned merges then glue frequent neighbours into longer tokens
("tion", " the"). Text is first cut into pre-tokens with GPT-2's pattern and merges never
cross a cut; special tokens are cut out whole before that. Encoding applies the merges
in the order they were learned. Deliberately left out: GPT-2's byte-to-unicode table
(we show broken bytes as <0xF0>), BPE dropout, and regex-free fast paths.
"""
from __future__ import annotations

import codecs
import collections
import itertools
import os
import warnings
from typing import Any, Iterable

import regex

from minillm.errors import UserError
from minillm.tokenizers.base import Tokenizer, iter_texts, special_token_list
from minillm.tokenizers.bpe_train import (GPT2_PATTERN, count_words, merge_pair,
                                          train_merges)

CACHE_LIMIT = 200_000  # pre-token encodings remembered; text repeats its words a lot
_UNMERGEABLE = 1 << 62  # the rank of a pair that was never merged: above every real id
_SURROGATE = regex.compile(r"[\ud800-\udfff]")


def _show_broken_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in err.object[err.start:err.end]), err.end


codecs.register_error("minillm-show-bytes", _show_broken_bytes)


def show_token(token: bytes) -> str:
    """A token's bytes as text; bytes that are not whole UTF-8 characters show as <0xNN>.

    Example:
        >>> show_token(b' the'), show_token('é'.encode()[:1])
        (' the', '<0xC3>')
    """
    return token.decode("utf-8", errors="minillm-show-bytes")


class BPETokenizer(Tokenizer):
    """Ids 0..255 are bytes, 256.. the merges in learned order, then the special tokens.

    Example:
        >>> tok = BPETokenizer.train("the cat and the hat " * 20, vocab_size=261)
        >>> tok.merges[:3]
        [(b't', b'h'), (b'th', b'e'), (b'a', b't')]
        >>> tok.tokens("the hat")
        ['the', ' ', 'h', 'at']
    """

    kind = "bpe"

    def __init__(self, merges: Iterable[tuple[Any, Any]] = (),
                 special_tokens: dict[str, int] | None = None, pattern: str = GPT2_PATTERN) -> None:
        self.pattern = pattern
        self._pretokenizer = regex.compile(pattern)
        self._vocab = [bytes([b]) for b in range(256)]  # ordinary tokens: id -> bytes
        self._bytes_to_id = {token: i for i, token in enumerate(self._vocab)}
        self._merge_ids: list[tuple[int, int]] = []
        self.ranks: dict[tuple[int, int], int] = {}  # (left id, right id) -> merged id
        for pair in merges:
            self._add_merge(pair)
        self._cache: dict[str, list[int]] = {}
        self._shown: dict[str, int] | None = None
        super().__init__(special_tokens)

    def _add_merge(self, pair: tuple[Any, Any]) -> None:
        new_id = len(self._vocab)
        left, right = (self._bytes_to_id.get(p) if isinstance(p, bytes) else p for p in pair)
        for part in (left, right):
            if not isinstance(part, int) or not 0 <= part < new_id:
                raise UserError(f"merge {new_id - 256} is {tuple(pair)!r}: each side must be an "
                                 f"existing token (an id below {new_id}, or its bytes)")
        if (left, right) in self.ranks:
            raise UserError(f"merge {new_id - 256} repeats merge {self.ranks[(left, right)] - 256} "
                             f"({tuple(pair)!r}); each pair can be merged only once")
        self._merge_ids.append((left, right))
        self.ranks[(left, right)] = new_id
        self._vocab.append(self._vocab[left] + self._vocab[right])
        self._bytes_to_id.setdefault(self._vocab[-1], new_id)

    @classmethod
    def train(cls, text: Any, vocab_size: int, special_tokens: Iterable[str] = (),
              verbose: bool = False) -> "BPETokenizer":
        """Learn merges from `text` (a str, a pathlib.Path, or an iterable of str).

        Args:
            text: the training text. Each string of an iterable is pre-tokenized on its
                own; a file path is streamed and gives the same result as its whole text.
            vocab_size: everything counted: 256 bytes + merges + special tokens.
            special_tokens: e.g. ['<|endoftext|>']; where they occur in the text they cut
                it, and they take no part in pair counts.
            verbose: print progress every 500 merges.
        """
        special_tokens = special_token_list(special_tokens, "train(special_tokens=...)")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        minimum = 256 + len(special_tokens)
        if vocab_size < minimum:
            raise UserError(f"vocab_size={vocab_size} is too small: a byte-level BPE needs the "
                             f"256 byte tokens + {len(special_tokens)} special token(s) = "
                             f"{minimum} ids before it can learn any merge")
        splitter = cls(special_tokens={t: 256 + i for i, t in enumerate(special_tokens)})
        words, freqs = count_words(splitter._pretokens(iter_texts(text)))
        n_merges = vocab_size - minimum
        tokenizer = cls(train_merges(words, freqs, n_merges, verbose))
        tokenizer.add_special_tokens(special_tokens)
        if tokenizer.vocab_size < vocab_size:
            warnings.warn(f"the training text allows only {len(tokenizer.merges)} merges, so "
                          f"vocab_size is {tokenizer.vocab_size} rather than {vocab_size}")
        return tokenizer

    def _pretokens(self, texts: Iterable[str]) -> Iterable[str]:
        for text in texts:
            for start, piece, is_special in self._split_special(text):
                if not is_special:
                    self._check_encodable(piece, start)
                    yield from self._pretokenizer.findall(piece)

    # ----- what a lesson looks at -----------------------------------------------------
    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The merges in learned order, as (left bytes, right bytes)."""
        return [(self._vocab[a], self._vocab[b]) for a, b in self._merge_ids]

    @property
    def merge_ids(self) -> list[tuple[int, int]]:
        """The merges in learned order, as (left id, right id); merge i makes id 256 + i."""
        return list(self._merge_ids)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Every id -> its bytes (special tokens as their UTF-8 text)."""
        vocab = dict(enumerate(self._vocab))
        vocab.update((i, t.encode("utf-8")) for i, t in self._special_by_id.items())
        return vocab

    # ----- encoding -----------------------------------------------------------------
    def encode_pretoken(self, piece: str) -> list[int]:
        """Encode one pre-token: start from its bytes, apply merges in the order learned.

        Example: with merges [(t, h) -> 256, (256, e) -> 257], 'the' -> [116, 104, 101]
        -> [256, 101] -> [257].
        """
        ids = list(piece.encode("utf-8"))
        ranks = self.ranks
        while len(ids) >= 2:
            # The pair learned earliest has the smallest new id: merge it everywhere first.
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, _UNMERGEABLE))
            if pair not in ranks:
                break
            ids = merge_pair(ids, pair, ranks[pair])
        return ids

    def _encode_pretoken_fast(self, piece: str) -> list[int]:
        """The same ids as `encode_pretoken` (its tested twin), with less Python per merge.

        A merge's rank is the id it makes, so the earliest-learned pair present is simply
        the smallest of the pairs' ranks: one list of ranks looked up with `dict.get` and one
        C-level `min` replace a Python key function called on every pair. The usual case, a
        pair that occurs once, is merged by a slice assignment in place; repeats go through
        `merge_pair`, which merges them left to right without overlaps, as the twin does.
        """
        ids = list(piece.encode("utf-8"))
        get = self.ranks.get
        while len(ids) >= 2:
            pair_ranks = [get(pair, _UNMERGEABLE) for pair in zip(ids, ids[1:])]
            new_id = min(pair_ranks)
            if new_id == _UNMERGEABLE:
                break
            at = pair_ranks.index(new_id)
            if pair_ranks.count(new_id) == 1:
                ids[at:at + 2] = [new_id]
            else:
                ids = merge_pair(ids, (ids[at], ids[at + 1]), new_id)
        return ids

    def _encode_ordinary(self, text: str, start: int) -> list[int]:
        """Pre-tokenize, encode each distinct pre-token not yet in the cache once, then
        look every piece up: the per-piece work (set difference, lookups, joining the
        lists) runs in C, and Python code runs only for pre-tokens never seen before."""
        self._check_encodable(text, start)  # one scan of the whole text, before any piece
        pieces = self._pretokenizer.findall(text)
        cache = self._cache
        lookup = cache.__getitem__
        missing = set(pieces).difference(cache)
        if missing:
            encoded = {piece: self._encode_pretoken_fast(piece) for piece in sorted(missing)}
            room = max(CACHE_LIMIT - len(cache), 0)  # bounded: it fills as it goes, then stays
            cache.update(itertools.islice(encoded.items(), room))
            if len(encoded) > room:  # a full cache: this text's new pieces are looked up here too
                lookup = collections.ChainMap(encoded, cache).__getitem__
        return list(itertools.chain.from_iterable(map(lookup, pieces)))

    @staticmethod
    def _check_encodable(piece: str, start: int, text: str | None = None) -> None:
        """A lone surrogate (half of a UTF-16 pair) is not Unicode text: UTF-8 cannot hold it."""
        if _SURROGATE.search(piece):
            where = _SURROGATE.search(text if text is not None else piece)
            raise UserError(f"the text holds a lone surrogate {where.group()!r} at position "
                             f"{start + where.start()}, which is not a Unicode character and "
                             "has no UTF-8 bytes; fix how the text was decoded")

    def _decode_ids(self, ids: list[int]) -> str:
        vocab, n = self._vocab, len(self._vocab)
        specials = self._special_by_id
        data = b"".join(vocab[i] if i < n else specials[i].encode("utf-8") for i in ids)
        # A sequence may stop inside a character; show U+FFFD there instead of raising.
        return data.decode("utf-8", errors="replace")

    # ----- lookups and files ------------------------------------------------------------
    def _ordinary_size(self) -> int:
        return len(self._vocab)

    def _ordinary_token(self, token_id: int) -> str:
        return show_token(self._vocab[token_id])

    def _ordinary_id(self, token: str) -> int | None:
        try:
            found = self._bytes_to_id.get(token.encode("utf-8"))
        except UnicodeEncodeError:
            return None
        if found is None:  # maybe a token shown with <0xNN> bytes
            if self._shown is None:
                self._shown = {show_token(t): i for i, t in enumerate(self._vocab)}
            found = self._shown.get(token)
        return found

    def _to_dict(self) -> dict[str, Any]:
        merges = [[a, b, show_token(self._vocab[256 + i])] for i, (a, b) in enumerate(self._merge_ids)]
        return {"pattern": self.pattern,
                "merges_legend": "[left id, right id, the merged token]; merge i makes id 256 + i",
                "merges": merges}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "BPETokenizer":
        merges = data["merges"]
        for i, merge in enumerate(merges):
            if not isinstance(merge, list) or len(merge) < 2:
                raise UserError(f"merge {i} is {merge!r}; expected [left id, right id, text]")
        return cls([tuple(m[:2]) for m in merges], pattern=data["pattern"])


    # ----- other programs' files (minillm.tokenizers.hf_format) ---------------------------
    @classmethod
    def from_gpt2_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> "BPETokenizer":
        """GPT-2's own tokenizer files (vocab.json, merges.txt) as a BPETokenizer.

        The merges keep GPT-2's ranks, so every text is cut into GPT-2's pieces. GPT-2 numbers
        its 256 byte tokens in its byte-to-unicode order, minillm by byte value: single-byte
        tokens get other ids, merged tokens keep theirs (`minillm import-hf` reorders the
        model's embedding rows to match).
        """
        from minillm.tokenizers.hf_format import read_gpt2_files  # it builds on this class
        return read_gpt2_files(vocab_json, merges_txt)[0]

    @classmethod
    def from_hf_tokenizer_json(cls, path: str | os.PathLike) -> "BPETokenizer":
        """A byte-level BPE from a `tokenizers` tokenizer.json (written by `minillm export` or by
        the `tokenizers` library). Ids follow minillm's order: bytes by value, merges by rank,
        then the added tokens; a file written by `minillm export` keeps every id."""
        from minillm.tokenizers.hf_format import read_tokenizer_json  # it builds on this class
        tokenizer = read_tokenizer_json(path)[0]
        if not isinstance(tokenizer, cls):
            raise UserError(f"{path} holds a {tokenizer.kind!r} tokenizer, not a byte-level BPE; "
                             "use minillm.tokenizers.hf_format.read_tokenizer_json to read any kind")
        return tokenizer
