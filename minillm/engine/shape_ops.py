"""Shape ops: the same numbers, arranged differently (reshape, transpose, broadcast, index, join).

Lecture: the autograd engine's bookkeeping ops. None changes a value, so each backward only
moves the gradient back to where the value came from: the inverse reshape or permutation,
a sum over broadcast axes, a scatter-add for indexing, a split for concatenation.
Left out: views that share gradients with their base (every op here returns a new node).
"""
from __future__ import annotations

import itertools

from minillm.engine.backend import get_array_module
from minillm.engine.ops import Function, unbroadcast


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
