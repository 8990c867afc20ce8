"""The fast twins of the core's one-node functions and of its matrix product.

Each class here computes what the class of the same name in `model/functional.py` (or
`engine/ops.py`, for MatMul) computes, and `minillm.fast.enable()` puts it in that one's place;
tests/test_fast.py holds every pair equal in value and gradient. The formulas are the
plain ones; what this file adds, so nothing here surprises a reader:
- On the CPU, the row-wise work runs in blocks of rows on `cpu_threads.parallel_rows`'
  threads, and so do the layers' matrix products (`layer_product`), each block one BLAS call.
- On a GPU, the element-wise and row-wise work of GELU, layer norm and cross entropy runs as
  compiled CuPy kernels from `fast/cuda_kernels.py` (one kernel instead of a
  chain of array expressions). The NumPy expressions below are those kernels' twins: the
  same formula, run on the CPU, and tested against the kernels (tests/test_backends_agree.py).
- In-place updates (`-=`, `*=`, `out=`) appear only on arrays the same function has just
  created and no one else holds, to save a temporary the size of the activations; each one
  is marked with a comment saying which array it overwrites and why that is safe.
- The linear layer writes its weight and bias gradients straight into the flat AdamW's
  buffer where the engine offers it one (`grad_out`, see fast/flat_adamw.py).
Causal self-attention, the largest of them, has its own module: `fast/attention.py`.
"""
from __future__ import annotations

import math

import numpy

from minillm.engine import ops
from minillm.engine.backend import get_array_module
from minillm.engine.ops import Function
from minillm.fast import cuda_kernels as kernels
from minillm.fast.cpu_threads import parallel_rows
from minillm.model.functional import GELU_C


def unbroadcast(grad, shape):
    """`ops.unbroadcast` with the leading axes of a GPU array summed by one matrix-vector
    product (cuBLAS), where CuPy's sum over leading axes is a slow reduction kernel."""
    extra = grad.ndim - len(shape)
    if extra and grad.size and get_array_module(grad) is not numpy:
        rest = grad.shape[extra:]
        grad = kernels.column_sums(grad.reshape(-1, math.prod(rest))).reshape(rest)  # (N, Π rest) -> rest
    return _plain_unbroadcast(grad, shape)


_plain_unbroadcast = ops.unbroadcast  # taken at import, before `enable` puts the function above in its place


def layer_product(a, b, bias=None, out=None):
    """a @ b (+ bias) for (R, K) @ (K, N) -> (R, N), R in blocks of rows on `parallel_rows`'
    threads, each block one BLAS call on one BLAS thread. Each output element is the same sum
    over K however the rows are split, so the blocks give the numbers of one call. A bias (N,)
    is added to each block by the thread that computed it, while its rows are in cache.
    `out`, if given, is the (R, N) array to write into."""
    xp = get_array_module(a)
    if out is None:
        out = xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a.dtype, b.dtype))
    parallel_rows(_product_rows, a, out, b=b, bias=bias, products=True, size=out.size)
    return out


def _product_rows(a, out, b, bias=None) -> None:
    """out = a @ b (+ bias) for a block of a's rows: (r, K) @ (K, N) -> (r, N), written into out."""
    get_array_module(a).matmul(a, b, out=out)
    if bias is not None:
        out += bias  # out was just written by this block's product and is only ours


class MatMul(ops.MatMul):
    """`ops.MatMul` with a layer's (..., K) @ (K, N) product in blocks of rows on the threads."""

    def forward(self, a, b):
        if a.ndim > 2 and b.ndim == 2 and a.shape[-1] == b.shape[0]:
            self.a, self.b = a, b
            return layer_product(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[1])
        return super().forward(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        if not (a.ndim > 2 and b.ndim == 2):
            return super().backward(grad)
        rows, g2 = a.reshape(-1, a.shape[-1]), grad.reshape(-1, grad.shape[-1])
        ga = layer_product(g2, b.T).reshape(a.shape) if self.needs_grad[0] else None
        # dB = Aᵀ G, computed as (Gᵀ A)ᵀ so that its blocks are blocks of output rows
        gb = layer_product(g2.T, rows).T if self.needs_grad[1] else None
        return ga, gb


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
        y, self.t = xp.empty_like(x), xp.empty_like(x)
        parallel_rows(_gelu_rows, x, y, self.t)
        return y

    def backward(self, grad):
        x, t = self.x, self.t
        xp = get_array_module(grad)
        if xp is not numpy:
            return (kernels.gelu_backward(grad, x, t),)
        dx = xp.empty_like(grad)
        parallel_rows(_gelu_backward_rows, grad, x, t, dx)
        return (dx,)


def _gelu_rows(x, y, t) -> None:
    """Into y and t, for a block of rows: t = tanh(√(2/π) (x + 0.044715 x³)), y = ½ x (1 + t)."""
    xp = get_array_module(x)
    # Each step below writes over an array the caller made for this (t, then y).
    xp.multiply(x, x, out=t)
    t *= GELU_C * 0.044715
    t += GELU_C
    t *= x  # √(2/π) x + √(2/π) 0.044715 x³
    xp.tanh(t, out=t)
    xp.add(t, 1, out=y)
    y *= x
    y *= 0.5


def _gelu_backward_rows(grad, x, t, dx) -> None:
    """Into dx, for a block of rows: g · ½ (1 + t) (1 + x (1 - t) √(2/π) (1 + 3·0.044715 x²)),
    which is g · (½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)) with 1 - t² = (1 - t)(1 + t)
    factored out: fewer passes over the arrays."""
    xp = get_array_module(x)
    inner = xp.multiply(x, x, out=dx)  # dx holds x √(2/π)(1 + 3·0.044715 x²) (1 - t) + 1 first
    inner *= GELU_C * 3 * 0.044715
    inner += GELU_C
    inner *= x
    one_minus_t = xp.subtract(1, t)
    inner *= one_minus_t
    inner += 1
    half_one_plus_t = xp.multiply(t, 0.5, out=one_minus_t)  # 1 - t was read: reuse its memory
    half_one_plus_t += 0.5
    dx *= half_one_plus_t
    dx *= grad


class Linear(Function):
    """y = x W + b: x (..., in), W (in, out), b (out,) or None -> (..., out).

    With x and g flattened to rows (N, in) and (N, out): dx = g Wᵀ, dW = xᵀ g, db = Σ_rows g.
    One node where the composed x @ W + b is two: the bias is added to each block of the
    product's rows by the thread that computed it, with no (N, out) temporary for the sum.
    """

    def forward(self, x, weight, bias=None):
        rows = x.reshape(-1, x.shape[-1])  # (..., in) -> (N, in)
        self.rows, self.weight, self.lead = rows, weight, x.shape[:-1]
        return layer_product(rows, weight, bias).reshape(*self.lead, weight.shape[1])  # -> (..., out)

    def backward(self, grad):
        g = grad.reshape(-1, grad.shape[-1])  # (..., out) -> (N, out)
        dx = layer_product(g, self.weight.T).reshape(*self.lead, -1) if self.needs_grad[0] else None
        out_w, out_b = _gradient_outputs(getattr(self, "grad_out", None), g.dtype)  # the optimizer's buffers, if free
        dw = layer_product(self.rows.T, g, out=out_w) if self.needs_grad[1] else None  # (in, N) @ (N, out)
        db = _column_sums(g, out=out_b) if self.needs_grad[2] else None
        return dx, dw, db


def _gradient_outputs(grad_out, dtype) -> tuple:
    """(weight's, bias's) array to write the gradient into, from the engine's `grad_out`:
    the optimizer's buffers where given and of the gradient's dtype, else None."""
    if grad_out is None:
        return None, None
    return tuple(b if b is not None and b.dtype == dtype else None for b in grad_out[1:3])


def _column_sums(matrix, out=None):
    """Σ over axis 0 of (N, C) -> (C,), into `out` if given, as one matrix-vector product
    1ᵀ M (BLAS on the CPU; cuBLAS through `kernels.column_sums` on a GPU): several times
    faster than NumPy's axis-0 sum, and no less accurate (BLAS sums in blocks, with fused
    multiply-adds). Not split over threads: it takes tens of microseconds, about what
    handing a block to another thread costs."""
    xp = get_array_module(matrix)
    if xp is not numpy:
        sums = kernels.column_sums(matrix)
        return sums if out is None else _copy_into(out, sums)
    return xp.matmul(xp.ones(matrix.shape[0], dtype=matrix.dtype), matrix, out=out)


def _copy_into(out, values):
    out[...] = values
    return out


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
        rows = x.reshape(-1, x.shape[-1])  # (..., C) -> (N, C): blocks of rows go to threads
        y, xhat, inv_std = xp.empty_like(rows), xp.empty_like(rows), xp.empty((len(rows), 1), dtype=x.dtype)
        parallel_rows(_layer_norm_rows, rows, y, xhat, inv_std, weight=weight, bias=bias, eps=eps)
        self.xhat, self.inv_std = xhat.reshape(x.shape), inv_std.reshape(x.shape[:-1] + (1,))
        return y.reshape(x.shape)

    def backward(self, grad):
        xhat, xp, C = self.xhat, get_array_module(grad), grad.shape[-1]
        if xp is not numpy:
            dx = kernels.layer_norm_backward(grad, xhat, self.inv_std, self.weight)
            gx = grad * xhat if self.needs_grad[1] else None
        else:
            rows = grad.reshape(-1, C)  # (..., C) -> (N, C)
            dx, gx = xp.empty_like(rows), xp.empty_like(rows) if self.needs_grad[1] else None
            parallel_rows(_layer_norm_backward_rows, rows, xhat.reshape(rows.shape),
                          self.inv_std.reshape(-1, 1), dx, *([] if gx is None else [gx]), weight=self.weight)
            dx = dx.reshape(grad.shape)
        dw = _column_sums(gx.reshape(-1, C)) if self.needs_grad[1] else None
        db = _column_sums(grad.reshape(-1, C)) if self.needs_grad[2] else None
        return dx, dw, db, None


def _layer_norm_rows(x, y, xhat, inv_std, weight, bias, eps) -> None:
    """Into y, x̂ and 1/√(σ² + eps), for a block of rows:
    x̂ = (x - μ) / √(σ² + eps), y = x̂ · w + b."""
    xp = get_array_module(x)
    xp.subtract(x, _row_means(x)[:, None], out=xhat)  # x - μ, normalised in place below
    variance = xp.einsum("rc,rc->r", xhat, xhat) / xhat.dtype.type(x.shape[-1])  # mean of (x - μ)²
    xp.divide(1.0, xp.sqrt(variance + eps), out=inv_std[:, 0])
    xhat *= inv_std
    if weight is None:
        y[...] = xhat
    else:
        xp.multiply(xhat, weight, out=y)
    if bias is not None:
        y += bias


def _layer_norm_backward_rows(grad, xhat, inv_std, dx, gx=None, weight=None) -> None:
    """Into dx, for a block of rows: dx = (ĝ - mean(ĝ) - x̂ ⊙ mean(ĝ ⊙ x̂)) / √(σ² + eps),
    ĝ = g ⊙ w; and g ⊙ x̂ into gx where given (its column sums are dw)."""
    xp = get_array_module(grad)
    ghat = grad if weight is None else xp.multiply(grad, weight, out=dx)  # dx holds ĝ until the end
    if gx is not None:  # mean(ĝ ⊙ x̂) = mean((g ⊙ x̂) ⊙ w): from gx, which dw needs anyway
        mean_ghat_xhat = _row_means(xp.multiply(grad, xhat, out=gx), weight)
    else:
        mean_ghat_xhat = _row_means(ghat * xhat)
    correction = xhat * mean_ghat_xhat[:, None]  # x̂ ⊙ mean(ĝ ⊙ x̂) + mean(ĝ), then subtracted
    correction += _row_means(ghat)[:, None]
    dx = xp.subtract(ghat, correction, out=dx)
    dx *= inv_std


def _row_means(rows, weight=None):
    """(r, C) -> (r,): Σ_c rows[:, c] · w_c / C for each row (w = 1: the row's mean), in one
    pass with no temporary, several times faster than NumPy's mean over short rows.

    Through `einsum`, not a BLAS matrix-vector product (faster still): BLAS rounds a row's
    sum differently depending on where the row sits in its block, and splitting the rows
    over threads must not change the numbers."""
    xp = get_array_module(rows)
    C = rows.shape[-1]
    scale = xp.full(C, 1.0 / C, dtype=rows.dtype) if weight is None else weight * rows.dtype.type(1.0 / C)
    return xp.einsum("rc,c->r", rows, scale)


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
        self.probs, nll = xp.empty_like(logits), xp.empty(len(targets), dtype=logits.dtype)
        parallel_rows(_cross_entropy_rows, logits, safe_targets, self.probs, nll)
        self.targets, self.counted = safe_targets, counted
        return (nll * counted).sum() / self.count

    def backward(self, grad):
        if get_array_module(grad) is not numpy:  # softmax - onehot, scaled, in one kernel
            scale = (grad / self.count).astype(self.logits.dtype)
            return kernels.cross_entropy_backward(self.logits, self.targets, self.lse, scale,
                                                  self.ignore_index), None, None
        d = get_array_module(grad).empty_like(self.probs)
        weights = (self.counted / self.count)[:, None] * grad  # (N, 1): 1/n on counted rows, 0 on ignored
        parallel_rows(_cross_entropy_backward_rows, self.probs, self.targets, weights, d)
        return d, None, None


def _cross_entropy_rows(logits, targets, probs, nll) -> None:
    """Into probs and nll, for a block of rows: softmax(z) and logsumexp(z) - z[y] (max-shifted)."""
    xp = get_array_module(logits)
    shifted = xp.subtract(logits, logits.max(axis=-1, keepdims=True), out=probs)  # exponentiated below
    picked = shifted[xp.arange(len(targets)), targets]  # (n,)
    exp = xp.exp(shifted, out=probs)
    total = exp.sum(axis=-1, keepdims=True)
    xp.subtract(xp.log(total[:, 0]), picked, out=nll)
    probs /= total


def _cross_entropy_backward_rows(probs, targets, weights, d) -> None:
    """Into d, for a block of rows: (softmax(z) - onehot(y)) · weight of the row."""
    d[...] = probs
    d[get_array_module(d).arange(len(targets)), targets] -= 1  # softmax - onehot
    d *= weights
