"""Character tokenizer: every character of the training text is one token.

Lecture 1 §tokens: the smallest vocabulary that still spells any word it has seen ("a",
"p", "p", "l", "e"), paid for with the longest sequences. Encoding and decoding are exact;
a character never seen in training raises an error naming it and its position, unless
the tokenizer has an unknown-character token. Deliberately left out: byte fallback (the
BPE tokenizer covers every string) and grouping of combining marks into graphemes.
"""
from __future__ import annotations

from typing import Any, Iterable

from minillm.errors import UserError
from minillm.tokenizers.base import Tokenizer, iter_texts, special_token_list


class CharTokenizer(Tokenizer):
    """Ids 0..n-1 are the training characters in code-point order; special tokens follow.

    Example:
        >>> tok = CharTokenizer.train("banana")
        >>> tok.encode("nab")
        [2, 0, 1]
    """

    kind = "char"

    def __init__(self, chars: Iterable[str], special_tokens: dict[str, int] | None = None,
                 unk_token: str | None = None) -> None:
        self.chars = list(chars)
        for ch in self.chars:
            if not isinstance(ch, str) or len(ch) != 1:
                raise UserError(f"a CharTokenizer vocabulary holds single characters, got {ch!r}")
        self._ids = {ch: i for i, ch in enumerate(self.chars)}
        if len(self._ids) != len(self.chars):
            raise UserError("the character list of a CharTokenizer has duplicates")
        super().__init__(special_tokens)
        self.unk_token = unk_token
        if unk_token is not None:
            self.add_special_tokens([unk_token])

    @classmethod
    def train(cls, text: Any, special_tokens: Iterable[str] = (),
              unk_token: str | None = None) -> "CharTokenizer":
        """Collect the distinct characters of `text` (a str, a pathlib.Path or an iterable of str).

        Args:
            text: the training text.
            special_tokens: e.g. ['<|endoftext|>']; they get the ids after the characters,
                and their characters are not added to the vocabulary on their own.
            unk_token: if given (e.g. '<unk>'), unseen characters encode to it instead of
                raising an error.
        """
        special_tokens = special_token_list(special_tokens, "train(special_tokens=...)")
        tokenizer = cls([], unk_token=None)  # only to cut the text at special tokens
        tokenizer.add_special_tokens(special_tokens)
        seen: set[str] = set()
        for chunk in iter_texts(text):
            for _, piece, is_special in tokenizer._split_special(chunk):
                if not is_special:
                    seen.update(piece)
        result = cls(sorted(seen))
        result.add_special_tokens(special_tokens)
        if unk_token is not None:
            result.unk_token = unk_token
            result.add_special_tokens([unk_token])
        return result

    def _encode_ordinary(self, text: str, start: int) -> list[int]:
        ids = self._ids
        try:
            return [ids[ch] for ch in text]
        except KeyError:
            pass
        unk_id = self.special_tokens.get(self.unk_token) if self.unk_token else None
        out = []
        for offset, ch in enumerate(text):
            if ch in ids:
                out.append(ids[ch])
            elif unk_id is not None:
                out.append(unk_id)
            else:
                raise UserError(
                    f"unknown character {ch!r} (U+{ord(ch):04X}) at position {start + offset}: "
                    f"this CharTokenizer knows {len(self.chars)} characters. Train it on text "
                    "that contains this character, or train with unk_token='<unk>'")
        return out

    def _decode_ids(self, ids: list[int]) -> str:
        n = len(self.chars)
        return "".join(self.chars[i] if i < n else self._special_by_id[i] for i in ids)

    def _ordinary_size(self) -> int:
        return len(self.chars)

    def _ordinary_token(self, token_id: int) -> str:
        return self.chars[token_id]

    def _ordinary_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def _to_dict(self) -> dict[str, Any]:
        return {"unk_token": self.unk_token, "chars": self.chars}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> "CharTokenizer":
        tokenizer = cls(data["chars"])
        tokenizer.unk_token = data.get("unk_token")
        return tokenizer
