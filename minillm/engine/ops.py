"""Primitive differentiable ops: each a forward/backward pair on raw arrays, side by side.

Lecture: the autograd engine behind every phase. A `Function` computes its output from
input arrays in `forward` and, in `backward`, turns the gradient of the loss with respect
to that output into the gradients with respect to each input (the chain rule, one node at a
time). The engine in `engine/tensor.py` wires them into a graph; this module knows nothing of it.

This module holds the base class, `unbroadcast` and the elementwise ops; reductions and the
matrix product are in `engine/reductions.py`, shape ops in `engine/shape_ops.py`. Every other op in
minillm (softmax, layer norm, attention, ...) is composed from these or is a fused op in
`fast/fused.py` whose composed twin is tested against it.
Left out: higher-order gradients (backward is not itself differentiable) and in-place ops.
"""
from __future__ import annotations

import math

import numpy

from minillm.fast import cuda_kernels as kernels
from minillm.engine.backend import get_array_module


class Function:
    """One node of the graph: `forward(*arrays) -> array`, `backward(grad) -> grads`.

    `needs_grad[i]` tells whether input i wants a gradient, so backward can skip work.
    Non-array inputs (Python scalars, index tuples) get `None` as their gradient.
    """

    needs_grad: tuple = ()
    # Set by the engine before backward: per input, an array its gradient may be written into
    # (an optimizer's buffer, see tensor._gradient_buffers), or None for all; ops may ignore it.
    grad_out: tuple | None = None

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
    if extra and grad.size and get_array_module(grad) is not numpy:
        rest = grad.shape[extra:]  # on a GPU the leading axes are summed by one matrix-vector product
        grad = kernels.column_sums(grad.reshape(-1, math.prod(rest))).reshape(rest)  # (N, Π rest) -> rest
    elif extra:
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
