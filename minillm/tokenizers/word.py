"""Word tokenizer: every word (and punctuation mark) of the training text is one token.

Lecture 1 §tokens: "apple" is one token, so sequences are short, but the vocabulary is
huge and any word not seen in training collapses into one <unk> token.
How text is cut: a word is a run of letters/digits/underscores, with inner apostrophes
kept ("don't"); every other non-space character is a token by itself; a run of
whitespace is a token. A single space between two words is implied, not stored, so
"the cat" is ['the', 'cat']. Deliberately left out: lower-casing, stemming, hyphenated words.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import regex

from minillm.errors import UserError
from minillm.tokenizers.base import Tokenizer, iter_texts, special_token_list

# Alternatives, in order: a word (with inner apostrophes), a whitespace run, one other character.
WORD_PATTERN = regex.compile(r"\w+(?:['’]\w+)*|\s+|[^\w\s]")
_IS_WORD = regex.compile(r"\w")


def split_words(text: str) -> list[str]:
    """Cut text into word-tokenizer pieces, dropping the single space between two words.

    Decoding puts that space back, so joining is exact on the tokenizer's domain.

    Example:
        >>> split_words("Don't panic,  apple!")
        ["Don't", 'panic', ',', '  ', 'apple', '!']
    """
    raw = WORD_PATTERN.findall(text)
    pieces = []
    for i, piece in enumerate(raw):
        between_words = (0 < i < len(raw) - 1 and _IS_WORD.match(raw[i - 1])
                         and _IS_WORD.match(raw[i + 1]))
        if not (piece == " " and between_words):
            pieces.append(piece)
    return pieces


class WordTokenizer(Tokenizer):
    """Ids 0..n-1 are pieces by falling frequency; then <unk> and the other special tokens.

    Domain of exact round trips (decode(encode(s)) == s): text whose pieces are all in
    the vocabulary and that does not put a literal '<unk>' right next to a word.
    """

    kind = "word"

    def __init__(self, words: Iterable[str], special_tokens: dict[str, int] | None = None,
                 unk_token: str = "<unk>") -> None:
        self.words = list(words)
        self._ids = {w: i for i, w in enumerate(self.words)}
        if len(self._ids) != len(self.words):
            raise UserError("the word list of a WordTokenizer has duplicates")
        super().__init__(special_tokens)
        self.unk_token = unk_token
        if unk_token not in self.special_tokens:
            self.add_special_tokens([unk_token])

    @classmethod
    def train(cls, text: Any, max_vocab: int | None = None, min_count: int = 1,
              special_tokens: Iterable[str] = (), unk_token: str = "<unk>") -> "WordTokenizer":
        """Keep the most frequent pieces of `text` (a str, a pathlib.Path or an iterable of str).

        Args:
            text: the training text.
            max_vocab: the largest vocab_size allowed, counting <unk> and special tokens.
            min_count: pieces seen fewer times than this become <unk>.
            special_tokens: e.g. ['<|endoftext|>'], matched whole and never counted as words.
            unk_token: the token that stands for every piece not in the vocabulary.
        """
        special_tokens = list(dict.fromkeys(
            [unk_token] + special_token_list(special_tokens, "train(special_tokens=...)")))
        n_words = _words_budget(max_vocab, len(special_tokens))
        if not isinstance(min_count, int) or min_count < 1:
            raise UserError(f"min_count must be an int >= 1, got {min_count!r}")
        splitter = cls([], unk_token=unk_token)
        splitter.add_special_tokens(special_tokens)
        counts: Counter[str] = Counter()
        for chunk in iter_texts(text):
            for _, piece, is_special in splitter._split_special(chunk):
                if not is_special:
                    counts.update(split_words(piece))
        # Most frequent first; equal counts in alphabetical order, so training is deterministic.
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        tokenizer = cls(kept[:n_words], unk_token=unk_token)
        tokenizer.add_special_tokens(special_tokens)
        return tokenizer

    def _encode_ordinary(self, text: str, start: int) -> list[int]:
        unk_id = self.special_tokens[self.unk_token]
        return [self._ids.get(piece, unk_id) for piece in split_words(text)]

    def _decode_ids(self, ids: list[int]) -> str:
        out = []
        previous_is_word = False
        for i in ids:
            piece = self.id_to_token(i)
            is_word = piece == self.unk_token or (i < len(self.words) and bool(_IS_WORD.match(piece)))
            if previous_is_word and is_word:
                out.append(" ")  # the implied space between two words
            out.append(piece)
            previous_is_word = is_word
        return "".join(out)

    def _ordinary_size(self) -> int:
        return len(self.words)

    def _ordinary_token(self, token_id: int) -> str:
        return self.words[token_id]

    def _ordinary_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def _to_dict(self) -> dict[str, Any]:
        return {"unk_token": self.unk_token, "words": self.words}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "WordTokenizer":
        tokenizer = cls.__new__(cls)
        tokenizer.words = list(data["words"])
        tokenizer._ids = {w: i for i, w in enumerate(tokenizer.words)}
        Tokenizer.__init__(tokenizer)
        tokenizer.unk_token = data["unk_token"]
        return tokenizer


def _words_budget(max_vocab: int | None, n_special: int) -> int | None:
    """How many ordinary pieces fit in `max_vocab` after the special tokens."""
    if max_vocab is None:
        return None
    if not isinstance(max_vocab, int) or max_vocab <= n_special:
        raise UserError(f"max_vocab={max_vocab!r} leaves no room for words: it counts the "
                         f"{n_special} special token(s) (<unk> included), so use at least {n_special + 1}")
    return max_vocab - n_special
