"""Phase 3 training data: preference pairs (x, y_w, y_l) as batches of token ids.

Lecture, Phase 3: the reward model learns from triples: a prompt x, a winning response y_w
and a losing one y_l. Each response is laid out with the chat template (the same text the
policy will produce later), <|user|> x <|assistant|> y <|end|>, and scored at its last
token. A batch stacks B chosen rows on top of B rejected rows, right-padded, so ONE forward
pass scores both halves. Long pairs lose prompt tokens from the left, by SFT's rule.
Left out: ties and graded preferences, several responses per prompt (rankings), packing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from minillm.data.sft_batches import encode_each
from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.errors import UserError


def encode_response(tokenizer, prompt: str, response: str, block_size: int) -> list[int]:
    """The ids the reward model reads: <|user|> prompt <|assistant|> response <|end|>, at most
    block_size long.

    The truncation rule is SFT's (`chat.encode_example`): the prompt loses tokens from its
    left; template and response are never cut. SFT's sequences hold block_size + 1 ids (inputs
    plus one next-token target); the reward model has no targets, so its rows hold block_size.

    Raises:
        chat.ResponseTooLong: the template and response alone do not fit.
    """
    ids, _ = chat.encode_example(tokenizer, prompt, response, block_size - 1)
    return ids


@dataclass
class EncodedPairs:
    """Encoded preference pairs, and what did not make it."""

    chosen: list = field(default_factory=list)    # one id list per pair, for y_w
    rejected: list = field(default_factory=list)  # the same pair's y_l
    skipped: int = 0        # pairs where a response (with the template) does not fit the block
    truncated: int = 0      # pairs where a prompt lost tokens on the left to fit
    bad_records: int = 0    # unreadable or unencodable records skipped with skip_bad


def encode_pairs(tokenizer, records, block_size: int, skip_bad: bool = False) -> EncodedPairs:
    """Encode every {"prompt", "chosen", "rejected"} record, counting what did not fit.

    A pair is skipped when either response cannot fit (the two must be scored together).
    A pair the tokenizer cannot encode (an unknown character) stops with its number, or,
    with skip_bad, is skipped and counted as bad.
    """
    encoded, skipped, bad = encode_each(
        records, lambda r: _encode_pair(tokenizer, r, block_size), skip_bad,
        "preference pair {number} cannot be encoded by the model's tokenizer ({err}); pass --skip-bad to skip such pairs")
    return EncodedPairs(chosen=[chosen for chosen, _, _ in encoded], rejected=[rejected for _, rejected, _ in encoded],
                        skipped=skipped, truncated=sum(cut for _, _, cut in encoded), bad_records=bad)


def _encode_pair(tokenizer, record: dict, block_size: int) -> tuple[list[int], list[int], bool]:
    """(chosen ids, rejected ids, whether a prompt lost tokens to fit the block) of one record."""
    w = encode_response(tokenizer, record["prompt"], record["chosen"], block_size)
    l = encode_response(tokenizer, record["prompt"], record["rejected"], block_size)  # noqa: E741
    full_prompt = len(chat.encode_prompt(tokenizer, record["prompt"]))
    response_ids = [len(tokenizer.encode(record["chosen"])), len(tokenizer.encode(record["rejected"]))]
    # A row is truncated when it is shorter than template + whole prompt + response + <|end|>.
    return w, l, any(len(ids) < full_prompt + n + 1 for ids, n in zip((w, l), response_ids))


def pad_rows(rows: list[list[int]], pad_id: int, length: int | None = None):
    """Right-pad id lists into one (N, T) host array, with the real lengths (N,).

    Example: [[5, 6, 7], [8]], pad 0 -> ids [[5, 6, 7], [8, 0, 0]], lengths [3, 1]
    """
    T = length or max(len(r) for r in rows)
    ids = numpy.full((len(rows), T), pad_id, dtype=numpy.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, numpy.array([len(r) for r in rows], dtype=numpy.int64)


def stack_pair_batch(chosen_ids, chosen_len, rejected_ids, rejected_len):
    """[chosen; rejected] as one batch for one forward pass: rows 0..B-1 are y_w, B..2B-1 y_l.

    Columns after the batch's longest row are dropped (they are padding in every row).
    Returns (ids (2B, T), lengths (2B,)) on the device.
    """
    lengths = numpy.concatenate([chosen_len, rejected_len])         # (2B,)
    ids = numpy.concatenate([chosen_ids, rejected_ids])[:, :lengths.max()]  # (2B, T)
    return backend.asarray(ids), backend.asarray(lengths)


class PreferenceBatches:
    """Encoded pairs kept as padded host arrays; batches come out as (ids (2B, T), lengths (2B,)).

    Args:
        pairs: EncodedPairs (or anything with .chosen and .rejected id lists).
        pad_id: the id at padded positions (never read: the score is taken at length - 1).
    """

    def __init__(self, pairs, pad_id: int):
        if not pairs.chosen:
            raise UserError("no preference pairs to train on: every pair was skipped or the file is empty")
        T = max(len(r) for r in [*pairs.chosen, *pairs.rejected])
        self.chosen, self.chosen_len = pad_rows(pairs.chosen, pad_id, T)        # (N, T), (N,)
        self.rejected, self.rejected_len = pad_rows(pairs.rejected, pad_id, T)  # (N, T), (N,)

    def __len__(self) -> int:
        return len(self.chosen)

    def rows(self, index):
        """The pairs at `index` (an integer array) as one stacked batch (see stack_pair_batch)."""
        index = numpy.asarray(backend.to_numpy(index))
        return stack_pair_batch(self.chosen[index], self.chosen_len[index],
                                self.rejected[index], self.rejected_len[index])

    def batch(self, batch_size: int, rng=None):
        """B pairs drawn at random with replacement (like SFT's batches): (ids (2B, T), lengths (2B,))."""
        rng = rng or backend.get_rng()
        return self.rows(rng.integers(0, len(self), size=batch_size))

    def sequential_batches(self, batch_size: int):
        """Every pair once, in order (for deterministic validation metrics)."""
        for start in range(0, len(self), batch_size):
            yield self.rows(numpy.arange(start, min(start + batch_size, len(self))))
