"""Tensor: an array that remembers the op that made it, so gradients can flow back.

Lecture: training every phase is gradient descent, and gradients come from reverse-mode
automatic differentiation. A `Tensor` holds `data` (an xp array), `grad`, and `_ctx`, the
`Function` (see `engine/ops.py`) that produced it from its inputs. `backward()` sorts the graph
topologically with an explicit stack (no recursion, so a chain of 100,000 ops is fine), then
walks it from the output back to the leaves, applying each op's backward: the chain rule.

Left out: higher-order gradients, in-place ops on tensors that need gradients, views that
share gradients. Gradients are kept on leaves (and on tensors marked with `retain_grad`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy

from minillm.engine import backend, ops

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block ops record no graph: for evaluation and sampling."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def _check_nan(out, fn) -> None:
    xp = backend.get_array_module(out)
    if out.dtype.kind == "f" and bool(xp.isnan(out).any()):
        raise FloatingPointError(f"NaN produced in the forward pass of {type(fn).__name__} (debug_nan is on)")


def apply(fn_cls, *inputs, **kwargs) -> "Tensor":
    """Run one op forward and, if any input needs a gradient, record it in the graph."""
    fn = fn_cls()
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    track = _grad_enabled and any(isinstance(x, Tensor) and x.requires_grad for x in inputs)
    if track:
        fn.needs_grad = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
    out = fn.forward(*arrays, **kwargs)
    if isinstance(out, numpy.generic):  # NumPy reductions return scalars; keep arrays throughout
        out = numpy.asarray(out)
    if backend.debug_nan_enabled():
        _check_nan(out, fn)
    result = Tensor._wrap(out, track)
    if track:
        result._ctx = fn
        fn.inputs = inputs
    return result


def _topological_order(root: "Tensor") -> list:
    """Every tensor reachable from `root` that needs a gradient, inputs before outputs."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    Args:
        data: an array, nested lists or a number. Python floats become the default dtype
            (float32 unless changed); arrays keep their dtype.
        requires_grad: record ops on this tensor so `backward()` can fill `grad`.
        dtype: convert the data to this dtype.
    """

    __array_priority__ = 1000  # so `array + tensor` calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = backend.asarray(data, dtype)
        self.grad = None
        self._ctx = None
        self._retain = self._freed = False
        self._set_requires_grad(requires_grad)

    @classmethod
    def _wrap(cls, array, requires_grad: bool = False) -> "Tensor":
        """A tensor around an existing array, without any conversion (the ops' fast path)."""
        t = cls.__new__(cls)
        t.data, t.grad, t._ctx, t.requires_grad = array, None, None, requires_grad
        t._retain = t._freed = False
        return t

    def _set_requires_grad(self, flag: bool) -> None:
        if flag and self.data.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, this one is {self.data.dtype}: "
                "integer tensors (token ids, indices) are not differentiable")
        self.requires_grad = bool(flag)

    # ----- array-like properties -------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({backend.to_numpy(self.data)!r}{grad})"

    def item(self) -> float:
        """The value of a one-element tensor as a Python number (a host transfer on a GPU)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return backend.to_numpy(self.data).item()

    def numpy(self) -> numpy.ndarray:
        """A NumPy copy of the data (a host transfer on a GPU)."""
        return backend.to_numpy(self.data)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def retain_grad(self) -> "Tensor":
        """Keep `grad` on this intermediate tensor after backward (for lessons and debugging)."""
        self._retain = True
        return self

    # ----- backward --------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Fill `.grad` of every leaf that needs it with d(self)/d(leaf), by the chain rule.

        Args:
            grad: the gradient of the final objective with respect to this tensor; may be
                left out only when this tensor holds a single number (a loss).
            retain_graph: keep the graph's saved buffers so backward can run again.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require gradients "
                               "(no input had requires_grad=True, or it was made under no_grad())")
        grads = {id(self): self._seed_grad(grad)}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._freed:
                raise RuntimeError(
                    "backward() reached a part of the graph that an earlier backward already freed; "
                    "pass retain_graph=True to the first backward() to run it twice")
            if node._ctx is None or node._retain:
                node._accumulate(g)
            if node._ctx is not None:
                self._propagate(node, g, grads)
                if not retain_graph:
                    node._ctx, node._freed = None, True  # free the op's saved arrays

    def _seed_grad(self, grad):
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {self.shape} needs a gradient argument of "
                    "the same shape; without one it only works on a single number such as a loss")
            return backend.get_array_module(self.data).ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad, self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward() gradient has shape {grad.shape}, expected {self.shape}")
        return grad

    @staticmethod
    def _propagate(node: "Tensor", g, grads: dict) -> None:
        input_grads = node._ctx.backward(g)
        for parent, pg in zip(node._ctx.inputs, input_grads):
            if pg is None or not isinstance(parent, Tensor) or not parent.requires_grad:
                continue
            key = id(parent)
            # A tensor used by several ops receives the sum of their gradients.
            grads[key] = grads[key] + pg if key in grads else pg

    def _accumulate(self, g) -> None:
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self.grad is None:
            self.grad = g.copy()  # own it: g may be a broadcast view or shared with another tensor
        else:
            self.grad += g

    # ----- arithmetic ------------------------------------------------------------------
    def _lift(self, other):
        """Turn the other operand of a binary op into something the op accepts."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (numpy.generic,)):
            return other.item()  # a NumPy scalar would upcast float32 to float64
        if hasattr(other, "shape"):
            array = backend.asarray(other)
            if array.dtype.kind == "f" and array.dtype != self.dtype:
                array = array.astype(self.dtype)
            return Tensor._wrap(array)
        return other

    def __add__(self, other): return apply(ops.Add, self, self._lift(other))
    def __radd__(self, other): return apply(ops.Add, self._lift(other), self)
    def __sub__(self, other): return apply(ops.Sub, self, self._lift(other))
    def __rsub__(self, other): return apply(ops.Sub, self._lift(other), self)
    def __mul__(self, other): return apply(ops.Mul, self, self._lift(other))
    def __rmul__(self, other): return apply(ops.Mul, self._lift(other), self)
    def __truediv__(self, other): return apply(ops.Div, self, self._lift(other))
    def __rtruediv__(self, other): return apply(ops.Div, self._lift(other), self)
    def __neg__(self): return apply(ops.Neg, self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or hasattr(exponent, "shape"):
            raise TypeError("pow takes a constant (Python number) exponent; for a tensor exponent "
                            "write (b * x.log()).exp()")
        return apply(ops.Pow, self, exponent)

    def __matmul__(self, other): return apply(ops.MatMul, self, self._lift(other))
    def __rmatmul__(self, other): return apply(ops.MatMul, self._lift(other), self)

    # Comparisons give plain boolean tensors: they are not differentiable.
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, other))

    def __lt__(self, other): return self._compare(other, lambda a, b: a < b)
    def __le__(self, other): return self._compare(other, lambda a, b: a <= b)
    def __gt__(self, other): return self._compare(other, lambda a, b: a > b)
    def __ge__(self, other): return self._compare(other, lambda a, b: a >= b)
    def __eq__(self, other): return self._compare(other, lambda a, b: a == b)
    def __ne__(self, other): return self._compare(other, lambda a, b: a != b)
    __hash__ = object.__hash__

    # ----- elementwise functions -------------------------------------------------------
    def exp(self): return apply(ops.Exp, self)
    def log(self): return apply(ops.Log, self)
    def sqrt(self): return apply(ops.Sqrt, self)
    def tanh(self): return apply(ops.Tanh, self)
    def sigmoid(self): return apply(ops.Sigmoid, self)
    def relu(self): return apply(ops.Relu, self)
    def softplus(self): return apply(ops.Softplus, self)
    def abs(self): return apply(ops.Abs, self)
    def clip(self, low, high): return apply(ops.Clip, self, low, high)

    def masked_fill(self, mask, value) -> "Tensor":
        """A copy with `value` wherever the boolean `mask` (broadcastable) is True."""
        mask = mask.data if isinstance(mask, Tensor) else backend.asarray(mask)
        return apply(ops.Where, mask, value, self)

    # ----- reductions ------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False): return apply(ops.Sum, self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return apply(ops.Mean, self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return apply(ops.Max, self, axis=axis, keepdims=keepdims)

    def logsumexp(self, axis=-1, keepdims=False):
        return apply(ops.LogSumExp, self, axis=axis, keepdims=keepdims)

    # ----- shapes ----------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return apply(ops.Reshape, self, tuple(shape))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return apply(ops.Transpose, self, tuple(axes) or tuple(reversed(range(self.ndim))))

    permute = transpose

    def swapaxes(self, axis1: int, axis2: int):
        axes = list(range(self.ndim))
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
        return self.transpose(axes)

    def broadcast_to(self, shape):
        return apply(ops.BroadcastTo, self, tuple(shape))

    expand = broadcast_to

    def squeeze(self, axis=None):
        xp = backend.get_array_module(self.data)
        return self.reshape(xp.squeeze(self.data, axis=axis).shape)

    def unsqueeze(self, axis: int):
        xp = backend.get_array_module(self.data)
        return self.reshape(xp.expand_dims(self.data, axis).shape)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return apply(ops.GetItem, self, index)


# ----- functions of several tensors ----------------------------------------------------

def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into the pieces."""
    return apply(ops.Concatenate, *[_as_tensor(t) for t in tensors], axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return apply(ops.Stack, *[_as_tensor(t) for t in tensors], axis=axis)


def split(tensor: Tensor, sections, axis: int = 0) -> list:
    """Split into equal `sections` (an int) or at the given indices (a list), like numpy.split."""
    n = tensor.shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"cannot split an axis of length {n} into {sections} equal sections")
        bounds = list(range(0, n + 1, n // sections))
    else:
        bounds = [0, *sections, n]
    prefix = (slice(None),) * (axis % tensor.ndim)
    return [tensor[prefix + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:])]


def where(condition, a, b) -> Tensor:
    """a where the condition holds, b elsewhere (broadcasting); condition is not differentiable."""
    condition = condition.data if isinstance(condition, Tensor) else backend.asarray(condition)
    return apply(ops.Where, condition, a, b)


def maximum(a, b) -> Tensor:
    """Elementwise maximum; at ties each side receives half the gradient."""
    return apply(ops.Maximum, a, b)


def minimum(a, b) -> Tensor:
    """Elementwise minimum; at ties each side receives half the gradient."""
    return apply(ops.Minimum, a, b)
