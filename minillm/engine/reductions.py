"""Reductions and contractions: ops whose output sums (or picks) over an axis of the input.

Lecture: the autograd engine's other half. sum, mean, max and logsumexp reduce an axis;
the matrix product contracts one. Their backward passes broadcast the output's gradient back
over the reduced axis (times the local derivative: 1, 1/n, the argmax indicator, softmax)
or, for the product, multiply by the other operand transposed.
Left out: argmax/argmin (not differentiable), einsum.
"""
from __future__ import annotations

from minillm.engine.backend import get_array_module
from minillm.fast.cpu_threads import parallel_rows
from minillm.engine.ops import Function, unbroadcast


# ----- reductions ----------------------------------------------------------------------

def _expand_reduced(grad, shape, axis, keepdims):
    """Reshape a reduced gradient so it broadcasts back over the reduced axes."""
    if axis is None:
        return grad.reshape((1,) * len(shape)) if not keepdims else grad
    if keepdims:
        return grad
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % len(shape) for a in axes)
    return get_array_module(grad).expand_dims(grad, axes)


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        # d(sum a)/da_i = 1: every input element receives the output's gradient
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return (get_array_module(grad).broadcast_to(grad, self.shape),)


class Mean(Sum):
    def forward(self, a, axis=None, keepdims=False):
        out = super().forward(a, axis, keepdims)
        self.count = a.size // max(out.size, 1) if a.size else 1
        return out / a.dtype.type(self.count)

    def backward(self, grad):
        return super().backward(grad / grad.dtype.type(self.count))  # d mean/da_i = 1/n


class Max(Function):
    def forward(self, a, axis=None, keepdims=False):
        out = a.max(axis=axis, keepdims=True)
        hits = a == out
        # Ties share the gradient evenly (the mean of the subgradients).
        self.share = (hits / hits.sum(axis=axis, keepdims=True)).astype(a.dtype)  # bool/int would be float64
        self.axis, self.keepdims, self.shape = axis, keepdims, a.shape
        return out if keepdims else (out.reshape(()) if axis is None else out.squeeze(axis=axis))

    def backward(self, grad):
        return (_expand_reduced(grad, self.shape, self.axis, self.keepdims) * self.share,)


class LogSumExp(Function):
    """log Σ exp(a) along an axis, computed as m + log Σ exp(a - m) with m = max(a) so it never overflows."""

    def forward(self, a, axis=-1, keepdims=False):
        xp = get_array_module(a)
        m = a.max(axis=axis, keepdims=True)
        shifted = xp.exp(a - m)
        total = shifted.sum(axis=axis, keepdims=True)
        out = m + xp.log(total)
        self.softmax = shifted / total  # d lse/da = softmax(a)
        self.axis, self.keepdims, self.shape = axis, keepdims, a.shape
        return out if keepdims else out.squeeze(axis=axis)

    def backward(self, grad):
        return (_expand_reduced(grad, self.shape, self.axis, self.keepdims) * self.softmax,)


# ----- matrix product ------------------------------------------------------------------

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


class MatMul(Function):
    """a @ b with NumPy's batching and broadcasting: dA = G @ Bᵀ, dB = Aᵀ @ G."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul needs arrays of at least 1 dimension, got shapes {a.shape} and {b.shape}")
        inner_a, inner_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
        if inner_a != inner_b:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape}: the last axis of the left "
                f"({inner_a}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} axis "
                f"of the right ({inner_b})")
        self.a, self.b = a, b
        if a.ndim > 2 and b.ndim == 2:
            # (..., K) @ (K, N) as one (rows, K) @ (K, N) product: one large BLAS call
            # instead of one per leading index (in blocks of rows on several cores).
            return layer_product(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[1])
        return a @ b

    def backward(self, grad):
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # a dot product: d(a·b)/da = b, d(a·b)/db = a
            return grad * b, grad * a
        if a.ndim > 2 and b.ndim == 2:  # a layer's weight: flatten the rows, as in forward
            rows, g2 = a.reshape(-1, a.shape[-1]), grad.reshape(-1, grad.shape[-1])
            ga = layer_product(g2, b.T).reshape(a.shape) if self.needs_grad[0] else None
            # dB = Aᵀ G, computed as (Gᵀ A)ᵀ so that its blocks are blocks of output rows
            gb = layer_product(g2.T, rows).T if self.needs_grad[1] else None
            return ga, gb
        # Treat vectors as matrices so one rule covers every case.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if a.ndim == 1:
            g2 = g2[..., None, :]
        if b.ndim == 1:
            g2 = g2[..., None]
        ga = gb = None
        if self.needs_grad[0]:
            ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_grad[1]:
            gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb
