"""Hugging Face tokenizer files: minillm tokenizers written as, and read from, other programs' files.

Lecture 1 §tokens: token ids mean nothing without the tokenizer that made them, so a model handed
to another program must bring its tokenizer in that program's format. Two formats:
- `tokenizer.json` of the `tokenizers` library (what transformers' AutoTokenizer loads): a
  pre-tokenizer, a model (here BPE), a decoder, and the added (special) tokens with their ids;
- GPT-2's own `vocab.json` (token -> id) and `merges.txt` (one merge per line, in rank order).
Both write a byte-level token as text in GPT-2's byte-to-unicode alphabet (b" the" -> "Ġthe").
Left out: normalizers, post-processors that insert tokens, WordPiece and Unigram models, and
the word tokenizer (no `tokenizers` decoder puts spaces only between two words).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import regex

from minillm.errors import UserError
from minillm.tokenizers.base import Tokenizer
from minillm.tokenizers.bpe import BPETokenizer
from minillm.tokenizers.bpe_train import GPT2_PATTERN
from minillm.tokenizers.char import CharTokenizer

SUPPORTED = "byte-level BPE and character tokenizers"


# ----- GPT-2's byte alphabet ----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table byte -> printable character, so that any byte string can be written as text.

    The 188 bytes that are printable Latin-1 characters (33..126, 161..172, 174..255) stand
    for themselves; the other 68 (controls, space, 127..160, 173) take the characters
    256, 257, ... in byte order. Example: b" " -> "Ġ" (U+0120), b"\\n" -> "Ċ" (U+010A).
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update((b, chr(256 + i)) for i, b in enumerate(others))
    return table


@functools.lru_cache(maxsize=None)
def unicode_to_bytes() -> dict[str, int]:
    """The inverse table: printable character -> byte."""
    return {ch: b for b, ch in bytes_to_unicode().items()}


def byte_text(token: bytes) -> str:
    """A token's bytes in GPT-2's alphabet. Example: b" the" -> "Ġthe"."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def text_bytes(text: str, source: Any) -> bytes:
    """The bytes a token written in GPT-2's alphabet stands for. Example: "Ġthe" -> b" the"."""
    table = unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in text)
    except KeyError as err:
        raise UserError(f"{source}: token {text!r} holds {err.args[0]!r}, which is not a character "
                         "of GPT-2's byte alphabet, so this is not a byte-level BPE") from None


# ----- the split pattern, written so that both regex engines read it alike -------------------

_CLASS_ESCAPE = regex.compile(r"\\(?:[pP]\{[^}]*\}|[sSwWdD])")


def explicit_pattern(pattern: str) -> str:
    """`pattern` with each Unicode class escape (\\p{L}, \\p{N}, \\s, \\S, \\w, \\d, ...) replaced
    by the explicit list of code-point ranges it matches in the `regex` module minillm uses.

    Why: `tokenizers` matches with Oniguruma, whose Unicode tables are older than `regex`'s;
    a character assigned in a newer Unicode version is a letter to one engine and unassigned
    to the other, and the two cut such text differently. Written out, the classes no longer
    depend on either engine's tables. Example: r" ?\\p{N}+" -> " ?[0-9²³¹¼-¾٠-٩...]+".
    A negated escape (\\S, \\P{..}) inside [...] cannot be written out and is refused.
    """
    out, i, in_class = [], 0, False
    while i < len(pattern):
        escape = _CLASS_ESCAPE.match(pattern, i)
        if escape:
            out.append(_class_text(escape.group(), in_class, pattern))
            i = escape.end()
            continue
        step = 2 if pattern[i] == "\\" else 1  # other escapes are copied whole
        piece = pattern[i:i + step]
        if piece == "[" and not in_class:
            in_class = True
            if pattern.startswith("^", i + 1):
                piece, step = "[^", 2
        elif piece == "]" and in_class:
            in_class = False
        out.append(piece)
        i += step
    return "".join(out)


def _class_text(escape: str, in_class: bool, pattern: str) -> str:
    """One class escape as ranges: "[...]" or "[^...]" outside a class, "..." inside one."""
    negated = escape[1] in "SWDP"
    positive = escape[0] + escape[1].lower() + escape[2:]
    ranges = _ranges(positive)
    if not in_class:
        return ("[^" if negated else "[") + ranges + "]"
    if negated:
        raise UserError(f"the split pattern {pattern!r} holds {escape} inside [...], which cannot be "
                         "written as explicit ranges; write the class positively")
    return ranges


@functools.lru_cache(maxsize=None)
def _ranges(escape: str) -> str:
    """The code points `escape` matches, as class ranges. Example: r"\\s" -> r"\\x09-\\x0D\\x20..."."""
    matcher = regex.compile(escape + "+")
    parts = []
    # Surrogates are not text (and no engine sees them): every code point but them, in order.
    for first, last in ((0, 0xD7FF), (0xE000, 0x10FFFF)):
        run = "".join(map(chr, range(first, last + 1)))
        for match in matcher.finditer(run):
            start, end = first + match.start(), first + match.end() - 1
            parts.append(_literal(start) if start == end else f"{_literal(start)}-{_literal(end)}")
    return "".join(parts)


def _literal(code_point: int) -> str:
    """A code point as a class member both engines read alike: ASCII punctuation, controls and
    space as \\xNN (no character has a special meaning then), everything else as itself."""
    char = chr(code_point)
    return f"\\x{code_point:02X}" if code_point < 0x80 and not char.isalnum() else char


# ----- minillm -> tokenizer.json ----------------------------------------------------------------

def to_tokenizer_json(tokenizer: Tokenizer) -> dict:
    """The `tokenizers` library's tokenizer.json for a minillm tokenizer, giving the same ids.

    Byte-level BPE: the split pattern (written out, see `explicit_pattern`), GPT-2's
    byte-level step, the BPE model with minillm's vocabulary and merges in GPT-2's alphabet,
    the byte-level decoder. Character tokenizer: a BPE model without merges over the whole
    text (so each character is one token) and a decoder that joins tokens with nothing.
    Special tokens become added tokens with their ids, matched whole before anything else.
    """
    if isinstance(tokenizer, BPETokenizer):
        pipeline = _byte_level_bpe(tokenizer)
    elif isinstance(tokenizer, CharTokenizer):
        pipeline = _characters(tokenizer)
    else:
        raise UserError(f"a {type(tokenizer).__name__} cannot be exported: no `tokenizers` decoder puts "
                         f"a space between two words only, as it does; export supports {SUPPORTED}")
    added = [{"id": token_id, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for token, token_id in sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, **pipeline}


def _bpe_model(vocab: dict[str, int], merges: list[list[str]], unk_token: str | None = None) -> dict:
    return {"type": "BPE", "dropout": None, "unk_token": unk_token, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False, "vocab": vocab, "merges": merges}


def _byte_level_bpe(tokenizer: BPETokenizer) -> dict:
    vocab: dict[str, int] = {}
    for token_id in range(256 + len(tokenizer.merge_ids)):
        text = byte_text(tokenizer.vocab[token_id])
        if text in vocab:  # two merges that spell the same bytes: a vocab maps text to one id
            raise UserError(f"tokens {vocab[text]} and {token_id} are both {tokenizer.vocab[token_id]!r}; "
                             "tokenizer.json holds one id per token text, so this BPE cannot be exported")
        vocab[text] = token_id
    merges = [[byte_text(left), byte_text(right)] for left, right in tokenizer.merges]
    split = {"type": "Split", "pattern": {"Regex": explicit_pattern(tokenizer.pattern)},
             "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]},
            "post_processor": None, "decoder": {**byte_level, "use_regex": True},
            "model": _bpe_model(vocab, merges)}


def _characters(tokenizer: CharTokenizer) -> dict:
    # The special tokens are in the model's vocabulary too: `tokenizers` gives an added token
    # the id the model has for it, else the next free id, so the ids must have no gap (and
    # the model looks its unknown token up there).
    vocab = {ch: i for i, ch in enumerate(tokenizer.chars)}
    vocab.update(tokenizer.special_tokens)
    return {"pre_tokenizer": None, "post_processor": None, "decoder": {"type": "Fuse"},
            "model": _bpe_model(vocab, [], tokenizer.unk_token)}


# ----- tokenizer.json / GPT-2 files -> minillm ---------------------------------------------------

def read_tokenizer_json(path: str | os.PathLike) -> tuple[Tokenizer, list[int]]:
    """A minillm tokenizer equal to a tokenizer.json, and `file_ids`: minillm id i is id
    file_ids[i] in the file.

    Reads a byte-level BPE (as written by `to_tokenizer_json`, by GPT-2's converters or by the
    `tokenizers` library) or a character tokenizer written by `to_tokenizer_json`. minillm
    numbers bytes 0..255 by value, then merges in rank order, then added tokens; a file that
    numbers them otherwise reads with the same token pieces under minillm's ids, and
    `file_ids` tells how to reorder a model's embedding rows to match.
    """
    data = _read_json_object(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"{path}: the model is {model.get('type')!r}; minillm reads {SUPPORTED} (model 'BPE')")
    if data.get("normalizer") is not None:
        raise UserError(f"{path}: a normalizer ({data['normalizer'].get('type')}) changes text before "
                         "tokenizing, which minillm does not do; it reads tokenizers without one")
    specials = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    if data.get("decoder") == {"type": "Fuse"} and data.get("pre_tokenizer") is None and not model.get("merges"):
        return _read_characters(model, specials, path)
    pattern = _byte_level_pattern(data, path)
    merges = [m.split(" ") if isinstance(m, str) else m for m in model.get("merges", [])]
    return _read_byte_level(model["vocab"], merges, specials, pattern, path)


def read_gpt2_files(vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> tuple[BPETokenizer, list[int]]:
    """A minillm BPETokenizer from GPT-2's vocab.json and merges.txt, and its `file_ids` (see
    `read_tokenizer_json`). Tokens of vocab.json that are neither a byte nor made by a merge
    (GPT-2's <|endoftext|>) become special tokens."""
    vocab = _read_json_object(vocab_json)
    lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
    merges = [line.split(" ") for line in lines if line and not line.startswith("#version")]
    for number, merge in enumerate(merges):
        if len(merge) != 2:
            raise UserError(f"{merges_txt}: merge {number} is {' '.join(merge)!r}; expected two tokens "
                             "separated by one space")
    made = {byte_text(bytes([b])) for b in range(256)} | {"".join(m) for m in merges}
    specials = {token: token_id for token, token_id in vocab.items() if token not in made}
    return _read_byte_level(vocab, merges, specials, GPT2_PATTERN, vocab_json)


def _read_json_object(path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _byte_level_pattern(data: dict, path) -> str:
    """The split pattern of a byte-level pre-tokenizer: GPT-2's built-in one, or a Split before
    a ByteLevel step without its own regex; anything else is refused."""
    steps = data.get("pre_tokenizer") or {}
    steps = steps.get("pretokenizers", [steps]) if steps.get("type") == "Sequence" else [steps]
    kinds = [step.get("type") for step in steps]
    decoder = (data.get("decoder") or {}).get("type")
    if kinds[-1:] != ["ByteLevel"] or decoder != "ByteLevel" or steps[-1].get("add_prefix_space"):
        raise UserError(f"{path}: pre-tokenizer {kinds} with decoder {decoder!r} is not a byte-level "
                         f"BPE as GPT-2's (ByteLevel without a prefix space); minillm reads {SUPPORTED}")
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return GPT2_PATTERN
    split = steps[0]
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True) \
            and split.get("behavior") == "Isolated" and not split.get("invert") and "Regex" in split["pattern"]:
        pattern = split["pattern"]["Regex"]
        return GPT2_PATTERN if pattern == explicit_pattern(GPT2_PATTERN) else pattern
    raise UserError(f"{path}: pre-tokenizer {kinds} is not one minillm can copy; it reads GPT-2's "
                     "ByteLevel, or one Split (regex, isolated) followed by ByteLevel(use_regex=false)")


def _read_byte_level(vocab: dict[str, int], merges: list[list[str]], specials: dict[str, int],
                     pattern: str, source) -> tuple[BPETokenizer, list[int]]:
    """minillm's tokenizer and file ids from a byte-level vocabulary and merge list."""
    byte_tokens = [byte_text(bytes([b])) for b in range(256)]
    missing = [t for t in byte_tokens if t not in vocab]
    if missing:
        raise UserError(f"{source}: the vocabulary lacks {len(missing)} of the 256 byte tokens "
                         f"(e.g. {missing[0]!r}); minillm's byte-level BPE needs all of them")
    pieces = [(text_bytes(left, source), text_bytes(right, source)) for left, right in merges]
    tokenizer = BPETokenizer(pieces, pattern=pattern)
    file_ids = [vocab[t] for t in byte_tokens]
    for left, right in merges:
        merged = left + right
        if merged not in vocab:
            raise UserError(f"{source}: the merge {left!r} + {right!r} makes {merged!r}, which is not in "
                             "the vocabulary")
        file_ids.append(vocab[merged])
    extra = set(vocab) - set(byte_tokens) - {l + r for l, r in merges} - set(specials)
    if extra:
        raise UserError(f"{source}: {len(extra)} vocabulary token(s), e.g. {sorted(extra)[0]!r}, are "
                         "neither bytes, nor made by a merge, nor added tokens; BPE never produces them")
    return _with_specials(tokenizer, file_ids, specials, source)


def _read_characters(model: dict, specials: dict[str, int], source) -> tuple[CharTokenizer, list[int]]:
    """A character tokenizer as `_characters` writes it."""
    unk = model.get("unk_token")
    chars = sorted((t for t in model["vocab"] if t not in specials), key=model["vocab"].get)
    tokenizer = CharTokenizer(chars)
    tokenizer.unk_token = unk
    return _with_specials(tokenizer, [model["vocab"][c] for c in chars], specials, source)


def _with_specials(tokenizer: Tokenizer, file_ids: list[int], specials: dict[str, int],
                   source) -> tuple[Tokenizer, list[int]]:
    """Add the special tokens in the file's id order; check that no two tokens share an id."""
    ordered = sorted(specials, key=specials.get)
    tokenizer.add_special_tokens(ordered)
    file_ids = file_ids + [specials[t] for t in ordered]
    if len(set(file_ids)) != len(file_ids):
        raise UserError(f"{source}: two tokens share one id, so the file does not describe one "
                         "tokenizer")
    return tokenizer, file_ids
