"""Phase 1 training data: a sequence of n tokens holds n-1 training points.

Lecture: from x = (x_1..x_n) come the samples (x_1) -> x_2, (x_1, x_2) -> x_3, ...,
(x_1..x_{n-1}) -> x_n. `next_token_samples` lists them literally. The trainer uses the
batched form: random windows of block_size + 1 tokens, the inputs are the first block_size
and the targets the same window shifted by one, so one window of T inputs holds exactly the
T samples (x_1..x_t) -> x_{t+1} for t = 1..T (the model is causal, so position t sees only
x_1..x_t). `window_samples` spells that out, and the tests prove the two agree.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.errors import UserError


def next_token_samples(ids) -> list[tuple[list[int], int]]:
    """The slide's training points: [(x_1..x_t), x_{t+1}] for t = 1..n-1.

    Example: [5, 7, 9] -> [([5], 7), ([5, 7], 9)]
    """
    ids = [int(i) for i in ids]
    return [(ids[:t], ids[t]) for t in range(1, len(ids))]


def window_samples(inputs, targets) -> list[tuple[list[int], int]]:
    """The samples one (inputs, targets) window holds: position t predicts targets[t] from inputs[:t+1]."""
    inputs = [int(i) for i in inputs]
    return [(inputs[: t + 1], int(targets[t])) for t in range(len(inputs))]


def split_train_val(ids, val_fraction: float = 0.1):
    """Split a token sequence by position: the first (1 - val_fraction) trains, the rest validates."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(ids) * (1.0 - val_fraction))
    return ids[:cut], ids[cut:]


class TokenWindows:
    """Random windows of a token sequence kept on the device: batches (x, y) of shape (B, T).

    Args:
        ids: the token sequence (any integer array-like).
        block_size: T, the context length of the model.
    """

    def __init__(self, ids, block_size: int):
        self.tokens = backend.asarray(ids).astype("int64")
        if self.tokens.ndim != 1:
            raise UserError(f"expected a 1-D token sequence, got shape {self.tokens.shape}")
        if len(self.tokens) < block_size + 1:
            raise UserError(f"the text has {len(self.tokens)} tokens, fewer than one block of "
                             f"block_size + 1 = {block_size + 1}: use a longer text or a smaller block")
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, batch_size: int, rng=None):
        """B random windows: x = tokens[s : s+T], y = tokens[s+1 : s+T+1]; both (B, T)."""
        xp = backend.xp
        rng = rng or backend.get_rng()
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=batch_size)
        index = starts[:, None] + xp.arange(self.block_size + 1)[None, :]  # (B, T+1)
        window = self.tokens[index]
        return window[:, :-1], window[:, 1:]

    def sequential_batches(self, batch_size: int, max_batches: int | None = None):
        """Non-overlapping windows in order (for a deterministic validation loss)."""
        xp, T = backend.xp, self.block_size
        count = (len(self.tokens) - 1) // T
        starts = xp.arange(count) * T
        for b, i in enumerate(range(0, count, batch_size)):
            if max_batches is not None and b >= max_batches:
                return
            index = starts[i:i + batch_size, None] + xp.arange(T + 1)[None, :]
            window = self.tokens[index]
            yield window[:, :-1], window[:, 1:]
