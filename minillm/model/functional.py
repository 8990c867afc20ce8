"""Neural-network functions on Tensors: linear, softmax, log_softmax, gelu, layer_norm,
embedding, dropout, attention, cross_entropy.

Lecture: the pieces the transformer and the losses are made of. The ones a training step runs
most are one node each, a `Function` whose forward is the formula and whose backward is its
closed-form derivative, about ten lines apiece (Linear, Softmax, LogSoftmax, Gelu, LayerNorm,
Embedding, CausalSelfAttention, CrossEntropy); the functions below check their input and
`apply` them. tests/test_functional.py holds each equal to the same formula composed from the
engine's primitives (tests/composed.py); tests/test_ops.py checks each backward by finite
differences.

`minillm.fast.enable()` rebinds the Function names of this module to faster twins (threads,
in-place buffers, GPU kernels; see fast/__init__.py); the code here never asks which runs.
"""
from __future__ import annotations

import math

from minillm.engine import backend, ops
from minillm.engine.backend import get_array_module
from minillm.engine.ops import Function
from minillm.engine.tensor import Tensor, apply, concatenate, maximum, minimum, split, stack, where  # noqa: F401

GELU_C = math.sqrt(2.0 / math.pi)


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _rows_sum(a):
    """Σ over every axis but the last: (..., C) -> (C,), a parameter's gradient from its uses."""
    return a.sum(axis=tuple(range(a.ndim - 1)))


# ----- the one-node functions: forward and closed-form backward ------------------------

class Linear(Function):
    """y = x W + b: x (..., in), W (in, out), b (out,) or None -> (..., out).

    dx = g Wᵀ, dW = xᵀ g, db = Σ_rows g, with x and g flattened to rows (N, in) and (N, out).
    """

    def forward(self, x, weight, bias=None):
        self.rows, self.weight = x.reshape(-1, x.shape[-1]), weight  # (..., in) -> (N, in)
        y = self.rows @ weight  # (N, in) @ (in, out) -> (N, out)
        y = y if bias is None else y + bias
        return y.reshape(*x.shape[:-1], weight.shape[1])

    def backward(self, grad):
        g = grad.reshape(-1, grad.shape[-1])  # (..., out) -> (N, out)
        dx = (g @ self.weight.T).reshape(*grad.shape[:-1], -1) if self.needs_grad[0] else None
        dw = self.rows.T @ g if self.needs_grad[1] else None
        db = g.sum(axis=0) if self.needs_grad[2] else None
        return dx, dw, db


class Softmax(Function):
    """y = softmax(x); backward: dx = y ⊙ (g - Σ g⊙y)."""

    def forward(self, x, axis=-1):
        self.y, self.axis = ops.softmax(x, axis), axis
        return self.y

    def backward(self, grad):
        y = self.y
        return (y * (grad - (grad * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - logsumexp(x); backward: dx = g - softmax(x) · Σ g."""

    def forward(self, x, axis=-1):
        self.out, self.axis = ops.log_softmax(x, axis), axis
        return self.out

    def backward(self, grad):
        xp = get_array_module(grad)
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


class Gelu(Function):
    """GPT-2's GELU, tanh approximation: y = ½ x (1 + t), t = tanh(√(2/π) (x + 0.044715 x³)).

    dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²).
    """

    def forward(self, x):
        self.x, self.t = x, get_array_module(x).tanh(GELU_C * (x + 0.044715 * x ** 3))
        return 0.5 * x * (1 + self.t)

    def backward(self, grad):
        x, t = self.x, self.t
        return (grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x)),)


class LayerNorm(Function):
    """y = x̂ · w + b, x̂ = (x - μ) / √(σ² + eps), μ and σ² over the last axis.

    With ĝ = g ⊙ w: dx = (ĝ - mean(ĝ) - x̂ ⊙ mean(ĝ ⊙ x̂)) / √(σ² + eps), dw = Σ g ⊙ x̂, db = Σ g.
    """

    def forward(self, x, weight, bias, eps=1e-5):
        xp = get_array_module(x)
        centered = x - x.mean(axis=-1, keepdims=True)
        self.inv_std = 1 / xp.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
        self.xhat, self.weight = centered * self.inv_std, weight
        y = self.xhat if weight is None else self.xhat * weight
        return y if bias is None else y + bias

    def backward(self, grad):
        xhat = self.xhat
        ghat = grad if self.weight is None else grad * self.weight
        dx = (ghat - ghat.mean(axis=-1, keepdims=True)
              - xhat * (ghat * xhat).mean(axis=-1, keepdims=True)) * self.inv_std
        dw = _rows_sum(grad * xhat) if self.needs_grad[1] else None
        db = _rows_sum(grad) if self.needs_grad[2] else None
        return dx, dw, db, None


class Embedding(Function):
    """out[..., :] = W[ids[...], :]; backward: dW[i] = Σ of the gradients of the rows that read i."""

    def forward(self, weight, ids):
        self.shape, self.ids = weight.shape, ids
        return weight[ids]  # (...) ids -> (..., C)

    def backward(self, grad):
        dw = get_array_module(grad).zeros(self.shape, dtype=grad.dtype)
        get_array_module(grad).add.at(dw, self.ids, grad)  # scatter-add: a repeated id gets every gradient
        return dw, None


class CausalSelfAttention(Function):
    """Multi-head causal self-attention from packed q, k, v: (B, T, 3C) -> (B, T, C), heads merged.

    Per head, q, k, v of shape (T, D):  S = q kᵀ / √D + causal mask,  P = softmax(S),  y = P v.
    Backward, dy given:  dv = Pᵀ dy,  dP = dy vᵀ,  dS = P ⊙ (dP - Σ_j dP ⊙ P),
    dq = dS k / √D,  dk = dSᵀ q / √D.
    """

    def forward(self, qkv, n_head):
        xp = get_array_module(qkv)
        B, T, C3 = qkv.shape
        q, k, v = qkv.reshape(B, T, 3, n_head, C3 // 3 // n_head).transpose(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        self.scale = 1.0 / math.sqrt(q.shape[-1])
        ahead = xp.triu(xp.full((T, T), -xp.inf, dtype=qkv.dtype), k=1)  # -inf after each query
        self.p = ops.softmax(q @ k.swapaxes(-1, -2) * self.scale + ahead)  # (B, H, T, T)
        self.q, self.k, self.v = q, k, v
        return (self.p @ v).transpose(0, 2, 1, 3).reshape(B, T, C3 // 3)  # (B, H, T, D) -> (B, T, C)

    def backward(self, grad):
        B, H, T, D = self.q.shape
        p, dy = self.p, grad.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, T, C) -> (B, H, T, D)
        dv = p.swapaxes(-1, -2) @ dy
        dp = dy @ self.v.swapaxes(-1, -2)  # (B, H, T, T)
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * self.scale  # the 1/√D of S, too
        dq, dk = ds @ self.k, ds.swapaxes(-1, -2) @ self.q
        dqkv = get_array_module(grad).stack([dq, dk, dv], axis=2)  # (B, H, 3, T, D)
        return dqkv.transpose(0, 3, 2, 1, 4).reshape(B, T, 3 * H * D), None  # -> (B, T, 3C)


class CrossEntropy(Function):
    """L = Σ_counted (logsumexp(z_n) - z_n[y_n]) / n_counted, rows whose target is
    `ignore_index` left out. dL/dz = (softmax(z) - onehot(y)) / n_counted on counted rows, 0
    on ignored rows. Logits (N, V), targets (N,).
    """

    def forward(self, logits, targets, ignore_index):
        xp = get_array_module(logits)
        rows, counted = xp.arange(len(targets)), targets != ignore_index
        self.targets = xp.where(counted, targets, 0)  # (N,), any valid id on ignored rows
        self.weight = counted.astype(logits.dtype) / xp.maximum(counted.sum(), 1).astype(logits.dtype)  # 1/n or 0
        self.probs = ops.softmax(logits)
        nll = -ops.log_softmax(logits)[rows, self.targets]  # (N,) logsumexp(z_n) - z_n[y_n]
        return (nll * self.weight).sum()

    def backward(self, grad):
        d = self.probs.copy()
        d[get_array_module(d).arange(len(d)), self.targets] -= 1  # softmax - onehot
        return d * (self.weight * grad)[:, None], None, None


# ----- the functions: check the input, apply the node ----------------------------------

def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """An affine map of the last axis, y = x W + b: x (..., in), W (in, out), b (out,) -> (..., out)."""
    x = _tensor(x)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input (..., in) and weight (in, out) must agree on `in`, got "
                         f"input {x.shape} and weight {weight.shape}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[1]},) to match the weight "
                         f"{weight.shape}, got {bias.shape}")
    return apply(Linear, x, weight, bias)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax(x)_i = exp(x_i) / Σ_j exp(x_j): a probability distribution (sums to 1)."""
    return apply(Softmax, _tensor(x), axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x)_i = x_i - log Σ_j exp(x_j), computed without overflow."""
    return apply(LogSoftmax, _tensor(x), axis=axis)


def gelu(x: Tensor) -> Tensor:
    """GELU, GPT-2's tanh approximation: ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    return apply(Gelu, _tensor(x))


def layer_norm(x: Tensor, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """LayerNorm(x) = (x - μ) / √(σ² + eps) · w + b, μ and σ² over the last axis (C)."""
    return apply(LayerNorm, _tensor(x), weight, bias, eps=eps)


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
    return apply(Embedding, weight, _check_ids(ids, weight.shape[0]))


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
    """Causal multi-head self-attention from packed q, k, v (B, T, 3C) -> (B, T, C), one node."""
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"attention expects packed q, k, v of shape (B, T, 3C) with C divisible by "
                         f"n_head={n_head}, got {qkv.shape}")
    return apply(CausalSelfAttention, qkv, n_head=n_head)


def causal_self_attention_composed(qkv: Tensor, n_head: int, dropout=None) -> Tensor:
    """The same attention step by step: split q, k, v and the heads, attend with the causal mask, merge.

    `dropout`, if given, is applied to the attention weights (see `attention`); the one-node
    `causal_self_attention` has no such hook, so the model trains with attention dropout here.
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
    """Mean over counted rows of -log softmax(logits)[target]; one stable node.

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
    return apply(CrossEntropy, logits, targets, ignore_index=ignore_index)


def cross_entropy_composed(logits: Tensor, targets, ignore_index: int = backend.IGNORE_INDEX,
                           reduction: str = "mean") -> Tensor:
    """The same cross entropy from primitives: CE_n = -log_softmax(z_n)[y_n] on counted rows.

    reduction "mean": Σ_counted CE_n / n_counted, `cross_entropy`'s value.
    reduction "none": the (N,) losses CE_n, 0 on ignored rows (for weighted sums of them).
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"unknown reduction {reduction!r}: expected 'mean' or 'none'")
    targets = backend.asarray(_check_targets(logits, targets))
    xp = backend.get_array_module(targets)
    counted = targets != ignore_index
    rows = xp.arange(len(targets))
    picked = log_softmax(logits)[rows, xp.where(counted, targets, 0)]  # (N,)
    per_row = -picked * counted.astype(logits.dtype)                            # (N,), 0 where ignored
    if reduction == "none":
        return per_row
    n = xp.maximum(counted.sum(), 1).astype(logits.dtype)  # stays on the device
    return per_row.sum() / Tensor._wrap(n)
