"""Tokenizers: text <-> token ids, three ways (Lecture 1 §tokens).

- `CharTokenizer`: one token per character ("a"); tiny vocabulary, long sequences.
- `WordTokenizer`: one token per word ("apple"); huge vocabulary, short sequences, <unk>.
- `BPETokenizer`: byte-level subword units ("tion"), learned from data as in GPT-2.

All share `encode`, `decode`, `tokens`, `vocab_size`, `token_to_id`, `id_to_token`,
`add_special_tokens`, `save`; `load(path)` restores whichever kind was saved. This package
imports nothing from the rest of minillm but `minillm.errors` (its bad-input error type).
"""
from minillm.tokenizers.base import Tokenizer
from minillm.tokenizers.bpe import BPETokenizer
from minillm.tokenizers.bpe_train import GPT2_PATTERN, get_pair_counts, merge_pair
from minillm.tokenizers.char import CharTokenizer
from minillm.tokenizers.word import WordTokenizer


def load(path) -> Tokenizer:
    """Load a tokenizer saved with `save`, whatever its kind (char, word or bpe)."""
    return Tokenizer.load(path)


__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "BPETokenizer", "load",
           "get_pair_counts", "merge_pair", "GPT2_PATTERN"]
