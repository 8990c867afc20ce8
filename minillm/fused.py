"""Fused ops: neural-network functions computed in one node with a hand-written backward.

Lecture: the transformer's building blocks. Each of these could be composed from the
primitives in `ops.py` (and `functional.py` keeps that composed twin next to it, tested
for equal values and gradients); fused, each is one node in the graph, which saves memory
and the Python cost of many small nodes, and lets the backward use the closed form.

What this file does beyond the formulas, so nothing here surprises a reader:
- On a GPU, the element-wise and row-wise work of GELU, layer norm, the attention softmax and
  cross entropy runs as compiled CuPy kernels from `kernels.py` (one kernel instead of a
  chain of array expressions). The NumPy expressions below are those kernels' twins: the
  same formula, run on the CPU, and tested against the kernels (tests/test_backends_agree.py).
- In-place updates (`-=`, `*=`, `out=`) appear only on arrays the same function has just
  created and no one else holds, to save a temporary the size of the activations; each one
  is marked with a comment saying which array it overwrites and why that is safe.
"""
from __future__ import annotations

import math

import numpy

from minillm import kernels
from minillm.backend import get_array_module, parallel_rows
from minillm.ops import Function

GELU_C = math.sqrt(2.0 / math.pi)


class Softmax(Function):
    """y = exp(x - max x) / Σ exp(x - max x); backward: dx = y ⊙ (g - Σ g⊙y)."""

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))  # subtract the max: exp never overflows
        self.y, self.axis = e / e.sum(axis=axis, keepdims=True), axis
        return self.y

    def backward(self, grad):
        y = self.y
        return (y * (grad - (grad * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - logsumexp(x); backward: dx = g - softmax(x) · Σ g."""

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.out, self.axis = out, axis
        return out

    def backward(self, grad):
        xp = get_array_module(grad)
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


class Gelu(Function):
    """GPT-2's GELU, tanh approximation: y = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))).

    dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²), with t the tanh above.
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if xp is not numpy:  # on a GPU: the same formula as one compiled kernel
            y, self.t = kernels.gelu_forward(x)
            return y
        self.t = xp.tanh(GELU_C * (x + 0.044715 * x * x * x))
        return 0.5 * x * (1 + self.t)

    def backward(self, grad):
        x, t = self.x, self.t
        if get_array_module(grad) is not numpy:
            return (kernels.gelu_backward(grad, x, t),)
        inner_derivative = GELU_C * (1 + 3 * 0.044715 * x * x)
        return (grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner_derivative),)


def _column_sums(matrix):
    """Σ over axis 0 of (N, C) -> (C,); on a GPU one cuBLAS product (`kernels.column_sums`)."""
    return matrix.sum(axis=0) if get_array_module(matrix) is numpy else kernels.column_sums(matrix)


class LayerNorm(Function):
    """y = (x - μ) / √(σ² + eps) · w + b over the last axis.

    With x̂ the normalised input and ĝ = g ⊙ w, the closed-form backward is
    dx = (ĝ - mean(ĝ) - x̂ ⊙ mean(ĝ ⊙ x̂)) / √(σ² + eps), dw = Σ g ⊙ x̂, db = Σ g.
    """

    def forward(self, x, weight, bias, eps=1e-5):
        xp = get_array_module(x)
        self.weight = weight
        if xp is not numpy:  # on a GPU: one kernel per row for all of it
            y, self.xhat, self.inv_std = kernels.layer_norm_forward(x, weight, bias, eps)
            return y
        mu = x.mean(axis=-1, keepdims=True)
        centered = x - mu
        var = (centered * centered).mean(axis=-1, keepdims=True)
        self.inv_std = 1.0 / xp.sqrt(var + eps)
        self.xhat = centered * self.inv_std
        out = self.xhat if weight is None else self.xhat * weight
        return out if bias is None else out + bias

    def backward(self, grad):
        xhat = self.xhat
        if get_array_module(grad) is not numpy:
            dx = kernels.layer_norm_backward(grad, xhat, self.inv_std, self.weight)
        else:
            ghat = grad if self.weight is None else grad * self.weight
            dx = (ghat - ghat.mean(axis=-1, keepdims=True)
                  - xhat * (ghat * xhat).mean(axis=-1, keepdims=True)) * self.inv_std
        rows = grad.reshape(-1, grad.shape[-1])
        dw = _column_sums(rows * xhat.reshape(rows.shape)) if self.needs_grad[1] else None
        db = _column_sums(rows) if self.needs_grad[2] else None
        return dx, dw, db, None


def scatter_add_rows(num_rows: int, ids, values):
    """out[i] = Σ_{j: ids[j] = i} values[j], for an (N,) id array and (N, C) values.

    NumPy's `add.at` is slow; sorting the ids and summing each run with `add.reduceat`
    gives the same sums several times faster. On a GPU a kernel sums each run in sorted
    order (`kernels.scatter_add_rows`), deterministic where atomic adds would not be.
    """
    xp = get_array_module(values)
    if xp is not numpy:
        return kernels.scatter_add_rows(num_rows, ids, values)
    out = xp.zeros((num_rows, values.shape[-1]), dtype=values.dtype)
    order = numpy.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = numpy.flatnonzero(numpy.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    if len(starts):
        out[sorted_ids[starts]] = numpy.add.reduceat(values[order], starts, axis=0)
    return out


class Embedding(Function):
    """out[..., :] = W[ids[...], :]; backward: dW[i] = Σ of the gradients of the rows that read i."""

    def forward(self, weight, ids):
        self.num_rows, self.ids = weight.shape[0], ids
        return weight[ids]  # (..., ) ids -> (..., C)

    def backward(self, grad):
        flat = grad.reshape(-1, grad.shape[-1])
        return scatter_add_rows(self.num_rows, self.ids.reshape(-1), flat), None


class CrossEntropy(Function):
    """Mean over counted rows of -log softmax(logits)[target]: L = mean(logsumexp(z) - z[y]).

    Rows whose target equals `ignore_index` do not count. dL/dz = (softmax(z) - onehot(y)) / n
    on counted rows, 0 on ignored rows. Logits (N, V), targets (N,).
    """

    def forward(self, logits, targets, ignore_index):
        xp = get_array_module(logits)
        counted = targets != ignore_index
        self.count = xp.maximum(counted.sum(), 1).astype(logits.dtype)
        if xp is not numpy:  # on a GPU: log-sum-exp and the picked logit in one kernel per row
            self.lse, nll = kernels.cross_entropy_forward(logits, targets, ignore_index)
            self.logits, self.targets, self.ignore_index = logits, targets, ignore_index
            return nll.sum() / self.count
        safe_targets = xp.where(counted, targets, 0)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        exp = xp.exp(shifted)
        total = exp.sum(axis=-1, keepdims=True)
        rows = xp.arange(len(targets))
        nll = xp.log(total[:, 0]) - shifted[rows, safe_targets]  # (N,)
        self.probs, self.rows, self.targets, self.counted = exp / total, rows, safe_targets, counted
        return (nll * counted).sum() / self.count

    def backward(self, grad):
        if get_array_module(grad) is not numpy:  # softmax - onehot, scaled, in one kernel
            scale = (grad / self.count).astype(self.logits.dtype)
            return kernels.cross_entropy_backward(self.logits, self.targets, self.lse, scale,
                                                  self.ignore_index), None, None
        d = self.probs.copy()
        d[self.rows, self.targets] -= 1  # softmax - onehot
        d *= (self.counted / self.count)[:, None] * grad
        return d, None, None


_CAUSAL_BIAS: dict = {}


def _causal_bias(xp, T: int, dtype):
    """(T, T) additive mask, 0 on and below the diagonal and -inf above; built once per size.

    Adding it is much faster than assigning -inf through a boolean index every step.
    """
    key = (xp.__name__, T, xp.dtype(dtype).str)
    if key not in _CAUSAL_BIAS:
        _CAUSAL_BIAS[key] = xp.triu(xp.full((T, T), -xp.inf, dtype=dtype), k=1)
    return _CAUSAL_BIAS[key]


class CausalSelfAttention(Function):
    """Multi-head causal self-attention from packed projections, in one node.

    Forward, per head (q, k, v of shape (T, D)):  S = q kᵀ / √D + causal mask,
    P = softmax(S), y = P v.  Backward, with dy given:
        dv = Pᵀ dy,   dP = dy vᵀ,   dS = P ⊙ (dP - Σ_j dP ⊙ P),   dq = dS k / √D,   dk = dSᵀ q / √D.
    Input qkv (B, T, 3C) holds q, k, v side by side; output (B, T, C) has the heads merged.

    On a GPU, P is not kept between forward and backward but recomputed from q and k (one
    more product and one kernel): the (B, H, T, T) probabilities are the largest activation
    of a layer, and device memory is the scarce resource there. On the CPU P is kept.
    """

    def forward(self, qkv, n_head):
        xp = get_array_module(qkv)
        B, T, C3 = qkv.shape
        C = C3 // 3
        D = C // n_head
        # (B, T, 3C) -> (3, B, H, T, D), copied once so every product below reads whole matrices
        heads = xp.ascontiguousarray(qkv.reshape(B, T, 3, n_head, D).transpose(2, 0, 3, 1, 4))
        q, k, v = heads[0], heads[1], heads[2]
        self.scale, self.on_gpu = 1.0 / math.sqrt(D), xp is not numpy
        y = xp.empty_like(q)  # (B, H, T, D)
        self.probs = None if self.on_gpu else xp.empty((B, n_head, T, T), dtype=q.dtype)
        # Each block of sequences attends on its own thread (one call on a GPU), its products on
        # one BLAS thread: they release the interpreter lock, and so does the softmax's array work.
        parallel_rows(self._attend, q, k, v, y, *([] if self.probs is None else [self.probs]), products=True)
        self.q, self.k, self.v, self.shape = q, k, v, (B, T, C, n_head, D)
        return y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, H, T, D) -> (B, T, C)

    def _attend(self, q, k, v, y, probs=None):
        """y = P v, P = softmax(q kᵀ · scale + causal mask), for a block of sequences:
        (b, H, T, D) x 3 -> y (b, H, T, D), written in place; P is kept in `probs` if given."""
        get_array_module(q).matmul(self._probs(q, k, probs), v, out=y)

    def _probs(self, q, k, out=None):
        """P = softmax(q kᵀ · scale + causal mask): (b, H, T, D) x 2 -> (b, H, T, T), into `out` if given."""
        xp = get_array_module(q)
        scores = xp.matmul(q, k.swapaxes(-1, -2), out=out)  # (b, H, T, D) @ (b, H, D, T) -> (b, H, T, T)
        # scores is new, or `out`, and only ours: scale, mask, exponentiate and normalise it in place.
        if self.on_gpu:
            return kernels.causal_softmax_(scores, self.scale)  # all of the below, one kernel
        scores *= self.scale
        scores += _causal_bias(xp, scores.shape[-1], scores.dtype)  # -inf above the diagonal: no looking ahead
        scores -= scores.max(axis=-1, keepdims=True)
        probs = xp.exp(scores, out=scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return probs

    def backward(self, grad):
        xp = get_array_module(grad)
        B, T, C, H, D = self.shape
        dy = xp.ascontiguousarray(grad.reshape(B, T, H, D).transpose(0, 2, 1, 3))  # (B, T, C) -> (B, H, T, D)
        dqkv = xp.empty((3, B, H, T, D), dtype=grad.dtype)  # dq, dk, dv written straight into place
        parallel_rows(self._attend_backward, dy, self.q, self.k, self.v, dqkv[0], dqkv[1], dqkv[2],
                      *([] if self.probs is None else [self.probs]), products=True)
        return dqkv.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * C), None  # (3, B, H, T, D) -> (B, T, 3C)

    def _attend_backward(self, dy, q, k, v, dq, dk, dv, probs=None):
        """dq, dk, dv (b, H, T, D) of a block of sequences from dy (b, H, T, D), written in place;
        P is recomputed from q and k where it was not kept."""
        xp = get_array_module(dy)
        probs = self._probs(q, k) if probs is None else probs
        xp.matmul(probs.swapaxes(-1, -2), dy, out=dv)  # dv = Pᵀ dy
        dprobs = dy @ v.swapaxes(-1, -2)  # (b, H, T, T), a new array only this function holds
        # dS = P ⊙ (dP - Σ_j dP ⊙ P) · scale, written over dP's memory: dP is not read again.
        if self.on_gpu:
            dscores = kernels.softmax_backward_(dprobs, probs, self.scale)  # one kernel
        else:
            row_dot = (dprobs * probs).sum(axis=-1, keepdims=True)  # Σ_j dP ⊙ P, taken while dP is intact
            dscores = dprobs
            dscores -= row_dot
            dscores *= probs
            dscores *= self.scale
        xp.matmul(dscores, k, out=dq)  # dq = dS k (the scale is in dS)
        xp.matmul(dscores.swapaxes(-1, -2), q, out=dk)  # dk = dSᵀ q
