"""The interface every minillm tokenizer shares: text <-> token ids.

Lecture 1 §tokens: a tokenizer cuts text into pieces (words, characters or subword
units) and numbers them; the set of pieces is the vocabulary V the model predicts over.
This module holds what the three tokenizers have in common: special tokens, id lookups,
checks on user input, and saving to / loading from one human-readable JSON file.
Deliberately left out: normalisation (lower-casing, Unicode NFC), batching, padding,
offsets into the original text.
"""
from __future__ import annotations

import json
import operator
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import regex

from minillm.errors import UserError

ENDOFTEXT = "<|endoftext|>"  # the special token that separates documents, and ends a pretrained model's text
FORMAT_NAME = "minillm-tokenizer"
FORMAT_VERSION = 1


class Tokenizer:
    """Base class: ordinary tokens (ids 0..n-1) followed by special tokens (ids n, n+1, ...).

    Subclasses implement `_encode_ordinary`, `_ordinary_size`, `_ordinary_token`,
    `_decode_ids`, `_to_dict` and `_from_dict`.
    """

    kind = "base"  # the name stored in saved files ("char", "word", "bpe")

    def __init__(self, special_tokens: dict[str, int] | None = None) -> None:
        self.special_tokens: dict[str, int] = {}
        self._special_by_id: dict[int, str] = {}
        self._special_pattern = None
        for token, token_id in (special_tokens or {}).items():
            self._register_special(token, token_id)

    # ----- vocabulary -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """|V|: ordinary tokens plus special tokens."""
        return self._ordinary_size() + len(self.special_tokens)

    def id_to_token(self, token_id: int) -> str:
        """The visible piece for one id, e.g. 'apple', 'a', ' the' or '<|endoftext|>'."""
        token_id = self._check_id(token_id)
        if token_id in self._special_by_id:
            return self._special_by_id[token_id]
        return self._ordinary_token(token_id)

    def token_to_id(self, token: str) -> int:
        """The id of one piece; raises KeyError (naming the piece) if it is not in V."""
        if token in self.special_tokens:
            return self.special_tokens[token]
        token_id = self._ordinary_id(token)
        if token_id is None:
            raise KeyError(f"{token!r} is not a token of this {type(self).__name__} "
                           f"(vocab_size={self.vocab_size})")
        return token_id

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Register special tokens; each new one gets the next id after the current vocab.

        Special tokens are matched whole in the input, never split and never merged.
        Adding one that already exists is a no-op (its id is returned again).

        Example: on a tokenizer with vocab_size 300,
        `add_special_tokens(['<|user|>', '<|end|>'])` -> [300, 301].
        """
        ids = []
        for token in special_token_list(tokens, "add_special_tokens"):
            if token not in self.special_tokens:
                self._register_special(token, self.vocab_size)
            ids.append(self.special_tokens[token])
        return ids

    # ----- encode / decode --------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Text -> token ids; special tokens in the text become their single id."""
        check_text(text, "encode")
        ids: list[int] = []
        for start, piece, is_special in self._split_special(text):
            if is_special:
                ids.append(self.special_tokens[piece])
            else:
                ids.extend(self._encode_ordinary(piece, start))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"decode expects a list of token ids (ints), got {type(ids).__name__}")
        return self._decode_ids([self._check_id(i) for i in ids])

    def tokens(self, text: str) -> list[str]:
        """The visible pieces of `text`, one per id, e.g. 'unhappy' -> ['un', 'happy']."""
        return [self.id_to_token(i) for i in self.encode(text)]

    # ----- save / load ------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to one JSON file a person can read (one entry per line)."""
        data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": self.kind,
                "vocab_size": self.vocab_size, "special_tokens": dict(self.special_tokens)}
        data.update(self._to_dict())  # the long lists come last
        Path(path).write_text(dump_readable_json(data), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a file written by `save`; the result encodes exactly as the saved one."""
        data = read_tokenizer_file(path)
        if cls is not Tokenizer and data["kind"] != cls.kind:
            raise UserError(f"{path} holds a {data['kind']!r} tokenizer, not a {cls.kind!r} one; "
                             "use minillm.tokenizers.load(path) to load any kind")
        return tokenizer_class(data["kind"])._from_file_dict(data, path)

    @classmethod
    def _from_file_dict(cls, data: dict[str, Any], path: Any) -> "Tokenizer":
        specials = data.get("special_tokens", {})
        if not isinstance(specials, dict):
            raise UserError(f"{path}: 'special_tokens' must map token text to id")
        try:
            tokenizer = cls._from_dict(data)
            for token, token_id in specials.items():
                tokenizer._register_special(token, token_id)
        except (KeyError, TypeError, IndexError) as err:
            raise UserError(f"{path} is not a valid {cls.kind!r} tokenizer file "
                             f"({type(err).__name__}: {err}); it may be truncated or edited") from None
        tokenizer._check_special_ids(path)
        unk_token = getattr(tokenizer, "unk_token", None)
        if unk_token is not None and unk_token not in tokenizer.special_tokens:
            raise UserError(f"{path}: unk_token {unk_token!r} is not among its special tokens")
        if data.get("vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
            raise UserError(f"{path} says vocab_size={data['vocab_size']} but holds "
                             f"{tokenizer.vocab_size} tokens; the file may be truncated or edited")
        return tokenizer

    # ----- helpers ----------------------------------------------------------------
    def _register_special(self, token: str, token_id: int) -> None:
        if not isinstance(token, str) or not token:
            raise TypeError(f"a special token must be a non-empty string, got {token!r}")
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TypeError(f"special token {token!r} has id {token_id!r}; ids are ints >= 0")
        if token_id in self._special_by_id:
            raise UserError(f"id {token_id} is given to two special tokens: "
                             f"{self._special_by_id[token_id]!r} and {token!r}")
        self.special_tokens[token] = token_id
        self._special_by_id[token_id] = token
        # Longest first, so that '<|end|>' wins over '<|end' when both are special.
        alternatives = sorted(self.special_tokens, key=lambda t: (-len(t), t))
        self._special_pattern = regex.compile("|".join(regex.escape(t) for t in alternatives))

    def _check_special_ids(self, path: Any) -> None:
        expected = set(range(self._ordinary_size(), self.vocab_size))
        if set(self._special_by_id) != expected:
            raise UserError(f"{path}: special token ids {sorted(self._special_by_id)} should be "
                             f"exactly the ids after the {self._ordinary_size()} ordinary tokens")

    def _split_special(self, text: str) -> Iterator[tuple[int, str, bool]]:
        """Yield (start, piece, is_special): `text` cut at every special token.

        Example: with special '<|end|>', 'hi<|end|>yo' ->
        (0, 'hi', False), (2, '<|end|>', True), (9, 'yo', False).
        """
        if self._special_pattern is None:
            if text:
                yield 0, text, False
            return
        start = 0
        for match in self._special_pattern.finditer(text):
            if match.start() > start:
                yield start, text[start:match.start()], False
            yield match.start(), match.group(), True
            start = match.end()
        if start < len(text):
            yield start, text[start:], False

    def _check_id(self, token_id: Any) -> int:
        if isinstance(token_id, bool):
            raise TypeError(f"token ids are ints, got the bool {token_id}")
        try:
            token_id = operator.index(token_id)  # accepts numpy integers too
        except TypeError:
            raise TypeError(f"token ids are ints, got {token_id!r} "
                            f"({type(token_id).__name__})") from None
        if not 0 <= token_id < self.vocab_size:
            raise UserError(f"token id {token_id} is outside the vocabulary: valid ids are "
                             f"0..{self.vocab_size - 1} (vocab_size={self.vocab_size})")
        return token_id

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"special_tokens={list(self.special_tokens)})")

    # ----- what subclasses provide ------------------------------------------------
    def _ordinary_size(self) -> int:
        raise NotImplementedError

    def _ordinary_token(self, token_id: int) -> str:
        raise NotImplementedError

    def _ordinary_id(self, token: str) -> int | None:
        raise NotImplementedError

    def _encode_ordinary(self, text: str, start: int) -> list[int]:
        """Ids of a text that holds no special token; `start` is its offset (for errors)."""
        raise NotImplementedError

    def _decode_ids(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "Tokenizer":
        raise NotImplementedError


# ----- module-level helpers ---------------------------------------------------------
def check_text(text: Any, where: str) -> None:
    """Raise a TypeError a student understands when `text` is not a str."""
    if isinstance(text, str):
        return
    hint = ""
    if isinstance(text, (bytes, bytearray)):
        hint = "; decode the bytes first, e.g. text.decode('utf-8')"
    elif isinstance(text, (list, tuple)):
        hint = "; call it once per string"
    raise TypeError(f"{where} expects a str, got {type(text).__name__}{hint}")


def special_token_list(tokens: Iterable[str], where: str) -> list[str]:
    """`tokens` as a list, without repeats; a bare string (not a list) is a mistake worth naming."""
    if isinstance(tokens, str):
        raise TypeError(f"{where} expects a list of special tokens, got the single string "
                        f"{tokens!r}; write [{tokens!r}]")
    return list(dict.fromkeys(tokens))


def iter_texts(source: Any) -> Iterator[str]:
    """Yield the training text from a str, a file path (os.PathLike) or an iterable of str.

    A plain str is always the text itself; pass `pathlib.Path('corpus.txt')` for a file,
    which is streamed in chunks so it need not fit in memory.
    """
    if isinstance(source, str):
        yield source
    elif isinstance(source, os.PathLike):
        yield from read_file_chunks(source)
    elif isinstance(source, (bytes, bytearray)):
        check_text(source, "train")
    else:
        try:
            items = iter(source)
        except TypeError:
            raise TypeError("train expects a str, a file path (pathlib.Path) or an iterable of "
                            f"str, got {type(source).__name__}") from None
        for item in items:
            check_text(item, "train (each item of the iterable)")
            yield item


# A cut after a non-space character that is followed by a newline never splits a
# GPT-2 pre-token, so chunked reading counts exactly what reading the whole file would.
_SAFE_CUT = regex.compile(r"\S(?=\n)", regex.REVERSE)


def read_file_chunks(path: str | os.PathLike, chunk_chars: int = 1 << 20) -> Iterator[str]:
    """Yield a UTF-8 text file in chunks of about `chunk_chars`, cut only at safe places."""
    carry = ""
    with open(path, encoding="utf-8") as f:
        while block := f.read(chunk_chars):
            carry += block
            match = _SAFE_CUT.search(carry)
            if match:
                yield carry[:match.end()]
                carry = carry[match.end():]
    if carry:
        yield carry


def dump_readable_json(data: dict[str, Any]) -> str:
    """JSON with one top-level key per line and one list item per line, for reading by eye."""
    lines = []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, list) and value:
            items = ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f" {name}: [\n{items}\n ]")
        else:
            lines.append(f" {name}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def read_tokenizer_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and sanity-check a tokenizer file; every failure is a ValueError naming `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file, so not a tokenizer file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); "
                         "the file may be truncated or hand-edited") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise UserError(f"{path} is not a minillm tokenizer file "
                         f"(expected a JSON object with \"format\": \"{FORMAT_NAME}\")")
    if data.get("version") != FORMAT_VERSION:
        raise UserError(f"{path} has format version {data.get('version')!r}; "
                         f"this minillm reads version {FORMAT_VERSION}")
    tokenizer_class(data.get("kind"))  # fails early on an unknown kind
    return data


def tokenizer_class(kind: Any) -> type[Tokenizer]:
    """The Tokenizer subclass whose `kind` is `kind` ('char', 'word' or 'bpe')."""
    classes = {c.kind: c for c in _all_subclasses(Tokenizer)}
    if kind not in classes:
        raise UserError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind]


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub] + _all_subclasses(sub)
    return found
