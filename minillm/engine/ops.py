"""The differentiable ops: each a forward/backward pair on raw arrays, side by side.

Lecture: the autograd engine behind every phase. A `Function` computes its output from
input arrays in `forward` and, in `backward`, turns the gradient of the loss with respect
to that output into the gradients with respect to each input (the chain rule, one node at a
time). The engine in `engine/tensor.py` wires them into a graph; this module knows nothing of it.

Three kinds, in this order: element-wise ops (the local derivative multiplies the gradient);
reductions and the matrix product (the gradient is broadcast back over the reduced axis, or
multiplied by the other operand transposed); shape ops (the same numbers rearranged, so the
gradient is only moved back to where each number came from). The softmax family on arrays
(`softmax`, `log_softmax`, `logsumexp`) is written once here, beside `LogSumExp`, and every
node and sampler that needs it calls it; the neural-network functions (softmax, layer norm,
attention, ...) are in `model/functional.py`.
Left out: higher-order gradients (backward is not itself differentiable), in-place ops,
views that share gradients with their base.
"""
from __future__ import annotations

import itertools

from minillm.engine.backend import get_array_module


class Function:
    """One node of the graph: `forward(*arrays) -> array`, `backward(grad) -> grads`.

    `needs_grad[i]` tells whether input i wants a gradient, so backward can skip work.
    Non-array inputs (Python scalars, index tuples) get `None` as their gradient.
    """

    needs_grad: tuple = ()

    def forward(self, *args):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the adjoint of NumPy broadcasting.

    Example: an input of shape (3, 1) broadcast to (2, 3, 4) gets its gradient by
    summing the (2, 3, 4) gradient over axis 0 and over axis 2 (keeping that axis).
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _shape(x):
    return getattr(x, "shape", ())


# ----- elementwise, two inputs ---------------------------------------------------------

class Add(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = _shape(a), _shape(b)
        return a + b

    def backward(self, grad):
        # d(a+b)/da = 1, d(a+b)/db = 1
        ga = unbroadcast(grad, self.a_shape) if self.needs_grad[0] else None
        gb = unbroadcast(grad, self.b_shape) if self.needs_grad[1] else None
        return ga, gb


class Sub(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = _shape(a), _shape(b)
        return a - b

    def backward(self, grad):
        # d(a-b)/da = 1, d(a-b)/db = -1
        ga = unbroadcast(grad, self.a_shape) if self.needs_grad[0] else None
        gb = unbroadcast(-grad, self.b_shape) if self.needs_grad[1] else None
        return ga, gb


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        # d(ab)/da = b, d(ab)/db = a
        ga = unbroadcast(grad * self.b, _shape(self.a)) if self.needs_grad[0] else None
        gb = unbroadcast(grad * self.a, _shape(self.b)) if self.needs_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        ga = unbroadcast(grad / self.b, _shape(self.a)) if self.needs_grad[0] else None
        gb = unbroadcast(-grad * self.a / (self.b * self.b), _shape(self.b)) if self.needs_grad[1] else None
        return ga, gb


class Maximum(Function):
    """max(a, b) elementwise: the gradient goes to whichever input was larger."""

    def forward(self, a, b):
        out = get_array_module(a, b).maximum(a, b)
        return self._route(a, b, a > b, out)

    def _route(self, a, b, a_wins, out):
        self.a_shape, self.b_shape = _shape(a), _shape(b)
        # Where a == b the gradient is split evenly, as the subgradient's midpoint. The share
        # takes the output's dtype: a float64 share would silently upcast every gradient.
        self.share_a = (a_wins + 0.5 * (a == b)).astype(out.dtype)
        return out

    def backward(self, grad):
        ga = unbroadcast(grad * self.share_a, self.a_shape) if self.needs_grad[0] else None
        gb = unbroadcast(grad * (1 - self.share_a), self.b_shape) if self.needs_grad[1] else None
        return ga, gb


class Minimum(Maximum):
    """min(a, b) elementwise: the gradient goes to whichever input was smaller."""

    def forward(self, a, b):
        out = get_array_module(a, b).minimum(a, b)
        return self._route(a, b, a < b, out)


class Where(Function):
    """where(condition, a, b): a where the condition holds, b elsewhere. condition gets no gradient."""

    def forward(self, condition, a, b):
        xp = get_array_module(a, b)
        self.condition, self.a_shape, self.b_shape = condition, _shape(a), _shape(b)
        return xp.where(condition, a, b)

    def backward(self, grad):
        zero = grad.dtype.type(0)
        xp = get_array_module(grad)
        ga = unbroadcast(xp.where(self.condition, grad, zero), self.a_shape) if self.needs_grad[1] else None
        gb = unbroadcast(xp.where(self.condition, zero, grad), self.b_shape) if self.needs_grad[2] else None
        return None, ga, gb


# ----- elementwise, one input ----------------------------------------------------------

class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return (-grad,)  # d(-a)/da = -1


class Pow(Function):
    """a ** p for a constant exponent p."""

    def forward(self, a, p):
        self.a, self.p = a, p
        return a ** p

    def backward(self, grad):
        return grad * self.p * self.a ** (self.p - 1), None  # d(a^p)/da = p a^(p-1)


class Exp(Function):
    def forward(self, a):
        self.out = get_array_module(a).exp(a)
        return self.out

    def backward(self, grad):
        return (grad * self.out,)  # d exp(a)/da = exp(a)


class Log(Function):
    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, grad):
        return (grad / self.a,)  # d log(a)/da = 1/a


class Sqrt(Function):
    def forward(self, a):
        self.out = get_array_module(a).sqrt(a)
        return self.out

    def backward(self, grad):
        return (grad / (2 * self.out),)  # d sqrt(a)/da = 1 / (2 sqrt(a))


class Tanh(Function):
    def forward(self, a):
        self.out = get_array_module(a).tanh(a)
        return self.out

    def backward(self, grad):
        return (grad * (1 - self.out * self.out),)  # d tanh(a)/da = 1 - tanh(a)^2


def stable_sigmoid(a):
    """σ(a) = 1/(1+e^-a) written as exp(-log(1 + e^-a)) = exp(-logaddexp(0, -a)).

    The textbook form overflows e^-a for very negative a, and the tanh form rounds σ(-100) to
    exactly 0 in float32; this one returns the tiny true value for any a.
    """
    xp = get_array_module(a)
    return xp.exp(-xp.logaddexp(0, -a))


class Sigmoid(Function):
    def forward(self, a):
        self.out = stable_sigmoid(a)
        return self.out

    def backward(self, grad):
        return (grad * self.out * (1 - self.out),)  # dσ/da = σ(1-σ)


class Softplus(Function):
    """softplus(a) = log(1 + e^a), computed as logaddexp(0, a) so it never overflows."""

    def forward(self, a):
        self.a = a
        return get_array_module(a).logaddexp(0, a)

    def backward(self, grad):
        return (grad * stable_sigmoid(self.a),)  # d softplus/da = σ(a)


class Relu(Function):
    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    def backward(self, grad):
        return (grad * self.positive,)  # d relu(a)/da = 1 if a > 0 else 0


class Abs(Function):
    def forward(self, a):
        xp = get_array_module(a)
        self.sign = xp.sign(a)
        return xp.abs(a)

    def backward(self, grad):
        return (grad * self.sign,)  # d|a|/da = sign(a) (0 at 0)


class Clip(Function):
    """clip(a, low, high): the gradient flows only where low <= a <= high."""

    def forward(self, a, low, high):
        xp = get_array_module(a)
        self.inside = (a >= low) & (a <= high)
        return xp.clip(a, low, high)

    def backward(self, grad):
        return grad * self.inside, None, None


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


# ----- the softmax family on arrays: the one definition every op and sampler calls ---------

def softmax(a, axis: int = -1):
    """softmax(a)_i = exp(a_i) / Σ_j exp(a_j), computed as exp(a_i − m) / Σ_j exp(a_j − m) with
    m = max_j a_j: the same value, and no exp can overflow (every exponent is ≤ 0)."""
    e = get_array_module(a).exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(a, axis: int = -1):
    """log softmax(a)_i = a_i − log Σ_j exp(a_j) = (a_i − m) − log Σ_j exp(a_j − m), m = max_j a_j."""
    xp = get_array_module(a)
    shifted = a - a.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def logsumexp(a, axis: int = -1, keepdims: bool = False):
    """log Σ_j exp(a_j) = m + log Σ_j exp(a_j − m) with m = max_j a_j, so it never overflows."""
    xp = get_array_module(a)
    m = a.max(axis=axis, keepdims=True)
    out = m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))
    return out if keepdims else out.squeeze(axis=axis)


class LogSumExp(Function):
    """log Σ exp(a) along an axis (`logsumexp`); backward: d lse/da = softmax(a)."""

    def forward(self, a, axis=-1, keepdims=False):
        self.softmax = softmax(a, axis)
        self.axis, self.keepdims, self.shape = axis, keepdims, a.shape
        return logsumexp(a, axis, keepdims)

    def backward(self, grad):
        return (_expand_reduced(grad, self.shape, self.axis, self.keepdims) * self.softmax,)


# ----- matrix product ------------------------------------------------------------------

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
            # instead of one per leading index.
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[1])
        return a @ b

    def backward(self, grad):
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # a dot product: d(a·b)/da = b, d(a·b)/db = a
            return grad * b, grad * a
        if a.ndim > 2 and b.ndim == 2:  # a layer's weight: flatten the rows, as in forward
            rows, g2 = a.reshape(-1, a.shape[-1]), grad.reshape(-1, grad.shape[-1])
            ga = (g2 @ b.T).reshape(a.shape) if self.needs_grad[0] else None
            gb = rows.T @ g2 if self.needs_grad[1] else None
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


# ----- shapes --------------------------------------------------------------------------

class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape), None


class Transpose(Function):
    """Permute axes; the gradient is permuted back with the inverse permutation."""

    def forward(self, a, axes):
        self.axes = tuple(axes)
        return a.transpose(self.axes)

    def backward(self, grad):
        inverse = tuple(sorted(range(len(self.axes)), key=self.axes.__getitem__))
        return grad.transpose(inverse), None


class BroadcastTo(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return get_array_module(a).broadcast_to(a, shape)

    def backward(self, grad):
        return unbroadcast(grad, self.shape), None


def _is_advanced(index) -> bool:
    """True when an index holds integer arrays or lists (NumPy's advanced indexing)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") and p.ndim > 0 or isinstance(p, list) for p in parts)


class GetItem(Function):
    """a[index] for slices and integer arrays; backward scatters the gradient back, adding
    where an index repeats (so a row picked twice gets both gradients)."""

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, grad):
        xp = get_array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_advanced(self.index):
            xp.add.at(full, self.index, grad)  # scatter-add: repeated indices accumulate
        else:
            full[self.index] = grad
        return full, None


class Concatenate(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.bounds = list(itertools.accumulate(a.shape[axis] for a in arrays))[:-1]
        return get_array_module(*arrays).concatenate(arrays, axis=axis)

    def backward(self, grad):
        return tuple(get_array_module(grad).split(grad, self.bounds, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis=0):
        self.axis = axis
        return get_array_module(*arrays).stack(arrays, axis=axis)

    def backward(self, grad):
        xp = get_array_module(grad)
        return tuple(xp.squeeze(g, axis=self.axis) for g in xp.split(grad, grad.shape[self.axis], axis=self.axis))
