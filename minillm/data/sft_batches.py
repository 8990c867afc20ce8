"""Phase 2 training data: one demonstration (x, y) holds |y| training samples.

Lecture 5 §Phase 2: from the prompt x = "How to make pizza" and the response y = "First
gather the ingredients ..." come the samples (x, "First"), (x + "First", "gather"), ...:
the context is the prompt plus a growing prefix of the response, the target the next
response token, and no prompt token is ever a target. `sft_samples` lists them literally.
The trainer's form puts x and y in ONE sequence with a loss mask that is 1 on response
positions (`minillm.tokenizers.chat_template.encode_example` lays it out), so one causal forward pass scores all
|y| samples at once (tests prove the two equal). Left out: packing several pairs into one row, multi-turn conversations.
"""
from __future__ import annotations

from dataclasses import dataclass

from minillm.engine import backend
from minillm.engine.backend import IGNORE_INDEX
from minillm.errors import UserError
from minillm.tokenizers import chat_template as chat


def sft_samples(prompt_ids, response_ids) -> list[tuple[list[int], int]]:
    """The slide's training samples: (x + y_1..y_{k-1}, y_k) for k = 1..|y|.

    Targets come from the response only; the prompt is always context.
    Example: x = [7, 8], y = [1, 2] -> [([7, 8], 1), ([7, 8, 1], 2)]
    """
    x, y = [int(i) for i in prompt_ids], [int(i) for i in response_ids]
    return [(x + y[:k], y[k]) for k in range(len(y))]


def masked_samples(ids, loss_mask) -> list[tuple[list[int], int]]:
    """The samples one masked sequence holds: (ids[:t], ids[t]) for every t with loss_mask[t] = 1.

    For ids = x + y and a mask that is 1 exactly on y, this equals sft_samples(x, y).
    Example: ids [7, 8, 1, 2], mask [0, 0, 1, 1] -> [([7, 8], 1), ([7, 8, 1], 2)]
    """
    ids = [int(i) for i in ids]
    return [(ids[:t], ids[t]) for t in range(1, len(ids)) if loss_mask[t]]


def shift_targets(ids, loss_mask, ignore_index: int = IGNORE_INDEX) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one sequence: inputs = ids[:-1]; targets[t] = ids[t+1] where
    loss_mask[t+1] = 1, else ignore_index (prompt and template positions do not count).

    Example: ids [7, 8, 1, 2], mask [0, 0, 1, 1] -> ([7, 8, 1], [-100, 1, 2])
    """
    inputs = [int(i) for i in ids[:-1]]
    targets = [int(i) if m else ignore_index for i, m in zip(ids[1:], loss_mask[1:])]
    return inputs, targets


def encode_each(records, encode, skip_bad: bool, refusal: str) -> tuple[list, int, int]:
    """(encode(record) for every record that fits, how many did not fit, how many were bad).

    `encode` raises chat.ResponseTooLong for a record whose response (with the template) does
    not fit the block: that record is skipped and counted. A record the tokenizer cannot encode
    (a ValueError, e.g. a character it never saw) stops with a UserError, `refusal` formatted
    with the record's {number} and the {err}; with skip_bad it is skipped and counted as bad,
    beside the lines the reader already skipped (`records.skipped`). SFT's demonstrations and
    the reward model's preference pairs are encoded through it.
    """
    encoded, too_long, bad = [], 0, len(getattr(records, "skipped", []))
    for number, record in enumerate(records, start=1):
        try:
            encoded.append(encode(record))
        except chat.ResponseTooLong:
            too_long += 1
        except ValueError as err:
            if not skip_bad:
                raise UserError(refusal.format(number=number, err=err)) from None
            bad += 1
    return encoded, too_long, bad


@dataclass
class EncodedDemonstrations:
    """Encoded demonstrations, and what did not make it."""

    examples: list          # (ids, loss_mask) pairs
    skipped: int = 0        # pairs whose response (plus template) does not fit in the block
    truncated: int = 0      # pairs whose prompt lost tokens on the left to fit
    bad_records: int = 0    # unreadable lines skipped with --skip-bad


def encode_demonstrations(tokenizer, records, block_size: int, skip_bad: bool = False) -> EncodedDemonstrations:
    """Encode every record with the chat template, counting what did not fit.

    A {"prompt", "response"} pair goes through `chat.encode_example`; a record with
    "messages" (a conversation of several turns) through `chat.encode_conversation`, which
    drops whole turns from the front when it is longer than the block. A record the tokenizer
    cannot encode (a character the pretrained tokenizer never saw) stops the run with its
    number, or, with skip_bad, is skipped and counted as bad.
    """
    encoded, skipped, bad = encode_each(
        records, lambda r: _encode_record(tokenizer, r, block_size), skip_bad,
        "demonstration {number} cannot be encoded by the pretrained model's tokenizer ({err}); "
        "pass --skip-bad to skip such demonstrations")
    return EncodedDemonstrations([(ids, mask) for ids, mask, _ in encoded], skipped=skipped,
                                 truncated=sum(cut for _, _, cut in encoded), bad_records=bad)


def _encode_record(tokenizer, record: dict, block_size: int) -> tuple[list[int], list[int], bool]:
    """(ids, loss_mask, whether anything was cut to fit the block) of one record."""
    if "messages" in record:
        ids, mask = chat.encode_conversation(tokenizer, record["messages"], max_tokens=block_size + 1)
        return ids, mask, len(ids) < len(chat.encode_conversation(tokenizer, record["messages"])[0])
    ids, mask = chat.encode_example(tokenizer, record["prompt"], record["response"], block_size)
    return ids, mask, len(ids) - sum(mask) < len(chat.encode_prompt(tokenizer, record["prompt"]))


def pad_batch(examples, pad_id: int, length: int | None = None, ignore_index: int = IGNORE_INDEX):
    """Right-pad (ids, loss_mask) examples into one batch on the device.

    With a causal model right padding is harmless: position t attends only to positions
    <= t, so a real token never sees the padding that follows it, and the padding's own
    targets are ignore_index, so it adds nothing to the loss or its gradient.

    Args:
        examples: list of (ids, loss_mask) pairs, as `chat.encode_example` returns.
        pad_id: any valid token id (the input at padded positions; never scored).
        length: T, pad to this many positions (default: the longest example's inputs).
    Returns:
        (idx, targets): integer arrays (B, T).
    """
    rows = [shift_targets(ids, mask, ignore_index) for ids, mask in examples]
    T = length or max(len(inputs) for inputs, _ in rows)
    idx = [inputs + [pad_id] * (T - len(inputs)) for inputs, _ in rows]
    targets = [t + [ignore_index] * (T - len(t)) for _, t in rows]
    return backend.asarray(idx).astype("int64"), backend.asarray(targets).astype("int64")  # (B, T)


class SFTBatches:
    """Encoded demonstrations kept on the device, padded once to the longest: batches (x, y).

    Args:
        examples: list of (ids, loss_mask) pairs.
        pad_id: the input id at padded positions.
    """

    def __init__(self, examples, pad_id: int):
        if not examples:
            raise UserError("no demonstrations to train on: every pair was skipped or the file is empty")
        self.idx, self.targets = pad_batch(examples, pad_id)  # (N, T), (N, T)

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, batch_size: int, rng=None):
        """B examples drawn at random (with replacement, like Phase 1's windows): (x, y), each (B, T)."""
        rng = rng or backend.get_rng()
        rows = rng.integers(0, len(self.idx), size=batch_size)
        return self.idx[rows], self.targets[rows]

    def sequential_batches(self, batch_size: int, max_batches: int | None = None):
        """Every example once, in order (for a deterministic validation loss)."""
        for b, start in enumerate(range(0, len(self.idx), batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            yield self.idx[start:start + batch_size], self.targets[start:start + batch_size]
