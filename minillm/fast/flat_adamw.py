"""AdamW on flat buffers: every parameter of a group updated by a handful of whole-buffer
operations (blocks on the threads; one kernel on a GPU), however many arrays the model has.

`FlatAdamW` is `optim.AdamW` with each parameter group laid out in one flat array per
quantity (parameters, gradients, m, v): each parameter's `data` becomes a view of its slice,
and so do its moments in the optimizer state, so saving and loading the state is unchanged.
Backward writes each gradient straight into the flat gradient: `enable()` gives Tensor the
`accumulate` and `propagate` below, which look for a parameter's `grad_buffer`, and offer
it to the op (`grad_out`) so the linear layer can compute the gradient there. Gradient
clipping then measures and scales the flat arrays (`flat_gradients`, `dot_norm`).
tests/test_fast.py holds the parameters after training steps equal to the plain AdamW's.
"""
from __future__ import annotations

import math

import numpy

from minillm.engine import backend, optim
from minillm.engine.tensor import Tensor
from minillm.fast import cuda_kernels as kernels
from minillm.fast.cpu_threads import parallel_rows


class FlatGroup:
    """One parameter group laid out in flat arrays: data, grad, m and v, each (total size,).

    Each parameter's `data` becomes a view of its slice of `self.data`, and its `grad_buffer`
    (where backward writes its gradient, see `accumulate`) a view of `self.grad`, so an update
    of the flat arrays updates every parameter at once. The moments m, v are views too, kept
    in the optimizer's per-parameter state.
    """

    def __init__(self, params: list, states: list[dict]):
        xp = backend.xp
        self.params = params
        self.data = xp.concatenate([p.data.ravel() for p in params])  # (total,)
        self.grad = xp.zeros_like(self.data)
        moments = {k: xp.concatenate([(s[k] if k in s else xp.zeros_like(p.data)).ravel()
                                      for p, s in zip(params, states)]) for k in ("m", "v")}
        self.m, self.v = moments["m"], moments["v"]
        self.data_views, self.grad_views = self._views(self.data), self._views(self.grad)
        for p, s, data, grad, m, v in zip(params, states, self.data_views, self.grad_views,
                                          self._views(self.m), self._views(self.v)):
            p.data, p.grad_buffer, s["m"], s["v"] = data, grad, m, v
            if p.grad is not None:
                grad[...] = p.grad
                p.grad = grad

    def _views(self, flat):
        """flat (total,) -> one view per parameter, in that parameter's shape."""
        views, start = [], 0
        for p in self.params:
            views.append(flat[start:start + p.data.size].reshape(p.data.shape))
            start += p.data.size
        return views

    def bound(self) -> bool:
        """True while every parameter still reads its data from this buffer (nothing rebound
        `p.data`) and writes its gradient there."""
        return all(p.data is d and getattr(p, "grad_buffer", None) is g
                   for p, d, g in zip(self.params, self.data_views, self.grad_views))

    def has_all_grads(self) -> bool:
        """True when every parameter's gradient of this step is in the flat gradient."""
        return all(p.grad is g for p, g in zip(self.params, self.grad_views))


class FlatAdamW(optim.AdamW):
    """`optim.AdamW`'s update on each group's flat buffers, in a handful of whole-buffer
    operations; when some parameter has no gradient this step, the same update parameter by
    parameter on the views, skipping that one (as PyTorch does).

    The bias corrections are folded into the step size and eps, which is the same formula:
    m̂ / (√v̂ + eps) = √(1-β2^t)/(1-β1^t) · m / (√v + eps·√(1-β2^t)).
    """

    def __init__(self, params, *args, **kwargs):
        super().__init__(params, *args, **kwargs)
        self._lay_out_flat()

    def _lay_out_flat(self) -> None:
        """Move every group into flat buffers now, before any backward, so every gradient
        lands there and every step (the first, and the first after a resume) is laid out
        the same way: gradient clipping then sums the same arrays in the same order."""
        self._flat, start = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            self._flat.append(FlatGroup(group["params"], self.state[start:start + count]))
            start += count

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._lay_out_flat()

    def step(self) -> None:
        if not all(f.bound() for f in self._flat):  # a parameter's array was replaced
            self._lay_out_flat()
        self.step_count += 1
        if all(f.has_all_grads() for f in self._flat):
            for group, flat in zip(self.param_groups, self._flat):
                self._update(group, flat.data, flat.grad, flat.m, flat.v)
        else:
            for group, p, state in self._each():
                self._update(group, p.data, p.grad, state["m"], state["v"])

    def _update(self, group: dict, p, g, m, v) -> None:
        """The update in place on the arrays p, m, v (a flat buffer or one parameter's views)."""
        t, (beta1, beta2) = self.step_count, group["betas"]
        decay = 1 - group["lr"] * group["weight_decay"]
        step_size = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        eps = group["eps"] * math.sqrt(1 - beta2 ** t)
        if backend.get_array_module(p) is not numpy:
            kernels.adamw_(p, g, m, v, decay, beta1, beta2, step_size, eps)
        else:  # blocks of the buffers on the threads: the formula is element by element
            parallel_rows(_adamw_rows, p, g, m, v, decay=decay if group["weight_decay"] else None,
                          beta1=beta1, beta2=beta2, step_size=step_size, eps=eps)


def _adamw_rows(p, g, m, v, decay, beta1, beta2, step_size, eps) -> None:
    """AdamW's update in place on p, m, v (a block of them): p <- p·decay (skipped when None),
    m <- β1·m + (1-β1)·g, v <- β2·v + (1-β2)·g², p <- p - step_size · m / (√v + eps)."""
    xp = backend.get_array_module(p)
    if decay is not None:
        p *= decay
    scratch = xp.multiply(g, 1 - beta1)
    m *= beta1
    m += scratch
    xp.multiply(g, g, out=scratch)
    scratch *= 1 - beta2
    v *= beta2
    v += scratch
    xp.sqrt(v, out=scratch)
    scratch += eps
    xp.divide(m, scratch, out=scratch)  # m / (√v + eps), then times the step size
    scratch *= step_size
    p -= scratch


# ----- what `enable()` gives the engine -------------------------------------------------

def _gradient_buffers(inputs, grads: dict) -> tuple | None:
    """For each input of an op about to run backward: the flat buffer for that input's
    gradient where the op may write the gradient straight into it, else None (None for all:
    no such input). Allowed only for the parameter's first gradient of this backward
    (nothing in `grads` yet, no `.grad` from an earlier one to add to), and at one input
    position per op."""
    buffers, seen = None, set()
    for i, x in enumerate(inputs):
        buffer = getattr(x, "grad_buffer", None)
        if buffer is None or x.grad is not None or id(x) in grads or id(x) in seen:
            continue
        seen.add(id(x))
        buffers = buffers or [None] * len(inputs)
        buffers[i] = buffer
    return None if buffers is None else tuple(buffers)


_plain_propagate = Tensor._propagate  # taken at import, before `enable` puts `propagate` in its place
_plain_accumulate = Tensor._accumulate


def propagate(node: Tensor, g, grads: dict) -> None:
    """Tensor._propagate, after telling the op which gradients it may write into flat buffers."""
    node._ctx.grad_out = _gradient_buffers(node._ctx.inputs, grads)
    _plain_propagate(node, g, grads)


def accumulate(self: Tensor, g) -> None:
    """Tensor._accumulate, into the parameter's flat gradient buffer where it has one."""
    buffer = getattr(self, "grad_buffer", None)
    if buffer is not None and (g is buffer or self.grad is None):
        if g is not buffer:  # the op did not write it there already
            buffer[...] = g
        self.grad = buffer
    else:
        _plain_accumulate(self, g)


def flat_gradients(params) -> list:
    """The gradients to clip or measure: the flat buffers they are views of, when together
    they cover them exactly (a few large arrays instead of many small ones), else one array
    per parameter, as in `optim._gradients`."""
    grads, bases = [p.grad for p in params if p.grad is not None], {}
    for g in grads:
        root = g
        while root.base is not None:  # a view of a view: up to the array that owns the memory
            root = root.base
        if root is g or root.ndim != 1:
            return grads
        bases[id(root)] = root
    if sum(b.size for b in bases.values()) != sum(g.size for g in grads):
        return grads
    return list(bases.values())


def dot_norm(grads):
    """`optim._global_norm` with each Σ g² as a dot product g·g (BLAS): one pass, no temporary."""
    xp = backend.get_array_module(grads[0])
    return xp.sqrt(sum(xp.vdot(g, g) for g in grads))
