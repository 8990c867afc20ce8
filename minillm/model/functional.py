"""Neural-network functions on Tensors: linear, softmax, log_softmax, gelu, layer_norm,
embedding, dropout, cross_entropy.

Lecture: the pieces the transformer and the losses are made of. Each function that has a
fused one-node version (see `fast/fused.py`) keeps its composed-from-primitives twin here,
named `*_composed`, written as the formula reads; the tests prove the pair equal in value
and gradient, so the fast path is never trusted blindly.
"""
from __future__ import annotations

import math

from minillm.engine import backend
from minillm.fast import fused, attention as fused_attention
from minillm.engine.tensor import Tensor, apply, concatenate, maximum, minimum, split, stack, where  # noqa: F401


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """An affine map of the last axis, y = x W + b: x (..., in), W (in, out), b (out,) -> (..., out)."""
    x = _tensor(x)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input (..., in) and weight (in, out) must agree on `in`, got "
                         f"input {x.shape} and weight {weight.shape}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[1]},) to match the weight "
                         f"{weight.shape}, got {bias.shape}")
    return apply(fused.Linear, x, weight, bias)


def linear_composed(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The same affine map as two primitives: a matrix product, then a broadcast add."""
    out = _tensor(x) @ weight
    return out if bias is None else out + bias


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax(x)_i = exp(x_i) / Σ_j exp(x_j): a probability distribution (sums to 1)."""
    return apply(fused.Softmax, _tensor(x), axis=axis)


def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """The same softmax from primitives; the max is subtracted (as a constant) so exp cannot overflow."""
    x = _tensor(x)
    shifted = x - x.data.max(axis=axis, keepdims=True)
    e = shifted.exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x)_i = x_i - log Σ_j exp(x_j), computed without overflow."""
    return apply(fused.LogSoftmax, _tensor(x), axis=axis)


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """The same log-softmax from primitives: x - logsumexp(x)."""
    x = _tensor(x)
    return x - x.logsumexp(axis=axis, keepdims=True)


def gelu(x: Tensor) -> Tensor:
    """GELU, GPT-2's tanh approximation: ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    return apply(fused.Gelu, _tensor(x))


def gelu_composed(x: Tensor) -> Tensor:
    """The same GELU from primitives, term by term."""
    x = _tensor(x)
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1 + inner.tanh())


def layer_norm(x: Tensor, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """LayerNorm(x) = (x - μ) / √(σ² + eps) · w + b, μ and σ² over the last axis (C)."""
    return apply(fused.LayerNorm, _tensor(x), weight, bias, eps=eps)


def layer_norm_composed(x: Tensor, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """The same layer norm from primitives, as the formula reads."""
    x = _tensor(x)
    mu = x.mean(axis=-1, keepdims=True)
    centered = x - mu
    var = (centered * centered).mean(axis=-1, keepdims=True)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def _check_ids(ids, num_rows: int):
    ids = backend.as_checkable(ids.data if isinstance(ids, Tensor) else ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}")
    bad = backend.out_of_range(ids, 0, num_rows)
    if bad:
        raise IndexError(f"embedding ids must lie in [0, {num_rows}), got values from {bad[0]} to {bad[1]}")
    return backend.asarray(ids)


def embedding(weight: Tensor, ids) -> Tensor:
    """Look up rows: out[b, t] = W[ids[b, t]]. ids (B, T) integers -> (B, T, C)."""
    return apply(fused.Embedding, weight, _check_ids(ids, weight.shape[0]))


def embedding_composed(weight: Tensor, ids) -> Tensor:
    """The same lookup as integer-array indexing (whose backward is a scatter-add)."""
    return weight[_check_ids(ids, weight.shape[0])]


def dropout(x: Tensor, p: float, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability p and scale the survivors by 1/(1-p), so the
    expected value is unchanged. Identity when not training or p == 0.

    Args:
        rng: an xp Generator (from `backend.make_rng(seed)`); the global one by default.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    rng = rng or backend.get_rng()
    keep = rng.random(x.shape, dtype=x.dtype) >= p
    return x * (keep * x.dtype.type(1.0 / (1.0 - p)))


def attention(q: Tensor, k: Tensor, v: Tensor, mask=None, dropout=None) -> Tensor:
    """Scaled dot-product attention: softmax(q kᵀ / √D + mask) v, the formula as written.

    Args:
        q: (B, H, Tq, D) queries; k, v: (B, H, Tk, D) keys and values.
        mask: boolean, broadcastable to (B, H, Tq, Tk): True where a query may look at a key.
            Masked scores become -inf, so they get exactly zero attention weight.
        dropout: optional function applied to the attention weights before they mix the
            values (the model passes its attention dropout layer here while training).
    Returns:
        (B, H, Tq, D)
    """
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, Tq, D) -> (B, H, Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = softmax(scores, axis=-1)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v  # (B, H, Tq, Tk) @ (B, H, Tk, D) -> (B, H, Tq, D)


def causal_mask(T: int, offset: int = 0):
    """(T, offset + T) boolean: query i (at position offset + i) may look at keys 0..offset + i."""
    xp = backend.xp
    return xp.arange(offset + T)[None, :] <= (offset + xp.arange(T))[:, None]


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, C) -> (B, H, T, D): each head sees its own D = C / H channels."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(y: Tensor) -> Tensor:
    """(B, H, T, D) -> (B, T, C): the heads side by side again."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def causal_self_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal multi-head self-attention from packed q, k, v (B, T, 3C) -> (B, T, C), one fused node."""
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"attention expects packed q, k, v of shape (B, T, 3C) with C divisible by "
                         f"n_head={n_head}, got {qkv.shape}")
    return apply(fused_attention.CausalSelfAttention, qkv, n_head=n_head)


def causal_self_attention_composed(qkv: Tensor, n_head: int, dropout=None) -> Tensor:
    """The same attention step by step: split q, k, v and the heads, attend with the causal mask, merge.

    `dropout`, if given, is applied to the attention weights (see `attention`); the fused
    node has no such hook, which is why the model trains with attention dropout on this path.
    """
    q, k, v = (split_heads(part, n_head) for part in split(qkv, 3, axis=2))  # 3 x (B, H, T, D)
    return merge_heads(attention(q, k, v, causal_mask(qkv.shape[1]), dropout))  # -> (B, T, C)


def _check_targets(logits: Tensor, targets):
    targets = backend.as_checkable(targets.data if isinstance(targets, Tensor) else targets)
    if logits.ndim != 2 or targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"cross entropy expects logits (N, V) and targets (N,), got "
                         f"{logits.shape} and {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class ids, got dtype {targets.dtype}")
    return targets


def cross_entropy(logits: Tensor, targets, ignore_index: int = backend.IGNORE_INDEX) -> Tensor:
    """Mean over counted rows of -log softmax(logits)[target]; one fused, stable node.

    Args:
        logits: (N, V) unnormalised scores.
        targets: (N,) integer ids; rows equal to `ignore_index` are left out of the mean.
    """
    targets = _check_targets(logits, targets)
    xp = backend.get_array_module(targets)
    # The masked copy exists only for the check, which is off for GPU arrays by default.
    bad = backend.checks_values(targets) and backend.out_of_range(
        xp.where(targets == ignore_index, 0, targets), 0, logits.shape[1])
    if bad:
        raise IndexError(f"targets must lie in [0, {logits.shape[1]}) or equal ignore_index "
                         f"({ignore_index}), got values from {bad[0]} to {bad[1]}")
    targets = backend.asarray(targets)
    return apply(fused.CrossEntropy, logits, targets, ignore_index=ignore_index)


def cross_entropy_composed(logits: Tensor, targets, ignore_index: int = backend.IGNORE_INDEX,
                           reduction: str = "mean") -> Tensor:
    """The same cross entropy from primitives: CE_n = -log_softmax(z_n)[y_n] on counted rows.

    reduction "mean": Σ_counted CE_n / n_counted, the fused `cross_entropy`'s value.
    reduction "none": the (N,) losses CE_n, 0 on ignored rows (for weighted sums of them).
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}: expected 'mean' or 'none'")
    targets = backend.asarray(_check_targets(logits, targets))
    xp = backend.get_array_module(targets)
    counted = targets != ignore_index
    rows = xp.arange(len(targets))
    picked = log_softmax_composed(logits)[rows, xp.where(counted, targets, 0)]  # (N,)
    per_row = -picked * counted.astype(logits.dtype)                            # (N,), 0 where ignored
    if reduction == "none":
        return per_row
    n = xp.maximum(counted.sum(), 1).astype(logits.dtype)  # stays on the device
    return per_row.sum() / Tensor._wrap(n)
