"""Every loss of the lecture: the slide's form, and the efficient twin the trainers use.

Lecture, Phase 1: the loss is the cross entropy between the model's distribution
LLM(x) = (y_1..y_|V|) and the one-hot ground truth P(x_t):
    CE = -Σ_k P(x_t)[k] · log LLM(x)[k] = -log ȳ_t,
averaged over the training samples. `one_hot_cross_entropy` computes exactly that sum;
`cross_entropy` is the fused, numerically stable log-softmax form (one graph node), and the
tests prove the two equal in value and gradient. Later phases add their losses here.
"""
from __future__ import annotations

from minillm import backend
from minillm import functional as F
from minillm.tensor import Tensor


def one_hot(targets, num_classes: int, dtype=None):
    """P(x_t) as rows: (N,) integer ids -> (N, V) with a single 1 per row. Example: [2, 0], V=3 -> [[0,0,1],[1,0,0]]."""
    xp = backend.xp
    targets = backend.asarray(targets)
    out = xp.zeros((targets.shape[0], num_classes), dtype=dtype or backend.get_default_dtype())
    out[xp.arange(targets.shape[0]), targets] = 1
    return out


def one_hot_cross_entropy(logits: Tensor, targets) -> Tensor:
    """The slide's cross entropy, term by term: mean over samples of -Σ_k P(x_t)[k] · log LLM(x)[k].

    Args:
        logits: (N, V) scores; LLM(x) = softmax(logits) is the model's distribution.
        targets: (N,) the true next tokens x_t.
    Returns:
        A scalar Tensor. Only for teaching: log(softmax) can underflow to log 0 for extreme
        logits, which is why training uses `cross_entropy`.
    """
    targets = backend.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, V) and targets (N,), got {logits.shape} and {targets.shape}")
    llm_x = F.softmax(logits, axis=-1)                                   # (N, V), rows sum to 1
    p = Tensor._wrap(one_hot(targets, logits.shape[1], logits.dtype))   # (N, V) one-hot
    per_sample = -(p * llm_x.log()).sum(axis=-1)                        # (N,) = -log ȳ_t
    return per_sample.mean()


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean over counted targets of -log softmax(logits)[target], fused and stable.

    Args:
        logits: (N, V) scores.
        targets: (N,) integer ids; positions equal to `ignore_index` count neither in the
            sum nor in the mean (SFT uses this to score response tokens only).
    """
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


def sequence_cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """cross_entropy for sequences: logits (B, T, V), targets (B, T) -> the mean over counted tokens."""
    B, T, V = logits.shape
    targets = backend.asarray(targets)
    return cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index)
