"""Optimizers (SGD with momentum, AdamW), gradient clipping and learning-rate schedules.

Lecture: every phase minimises its loss by gradient descent, phi <- phi - lr · update.
Updates are done in place on the parameter arrays, and the optimizer state (moments, step)
can be saved and restored exactly, so a resumed run continues bit for bit.
AdamW keeps each parameter group in one flat buffer (parameters, gradients and moments are
views into it), so its update is a handful of whole-buffer operations, or one kernel on a
GPU, however many parameter arrays the model has; the per-parameter loop stays as its
explicit twin (`AdamW.step_each`), tested equal.
Left out: second-order methods, learning-rate finders.
"""
from __future__ import annotations

import math

import numpy

from minillm.engine import backend
from minillm.fast import cuda_kernels as kernels
from minillm.fast.cpu_threads import parallel_rows
from minillm.errors import UserError


def _groups(params, defaults: dict) -> list[dict]:
    """Accept a list of parameters or a list of {"params": [...], option: value} groups."""
    params = list(params)
    if not params:
        raise ValueError("the optimizer got an empty parameter list")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    return [{**defaults, **g, "params": list(g["params"])} for g in groups]


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.param_groups = _groups(params, defaults)
        self.step_count = 0
        self.state: list[dict] = [{} for g in self.param_groups for _ in g["params"]]

    def _each(self):
        """(group, parameter, its state) for every parameter with a gradient."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield group, p, self.state[i]
                i += 1

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        """Step, hyperparameters and per-parameter state arrays, by position."""
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"step": self.step_count, "groups": hyper, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        if len(state["state"]) != len(self.state):
            raise ValueError(f"optimizer state holds {len(state['state'])} parameters, "
                             f"this optimizer has {len(self.state)}")
        self.step_count = int(state["step"])
        for group, hyper in zip(self.param_groups, state["groups"]):
            group.update(hyper)
        self.state = [{k: backend.asarray(v) for k, v in s.items()} for s in state["state"]]


class SGD(Optimizer):
    """v <- μ·v + g;  p <- p - lr·v   (plain SGD when momentum μ = 0)."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def step(self) -> None:
        self.step_count += 1
        for group, p, state in self._each():
            g = p.grad
            if group["weight_decay"]:
                g = g + group["weight_decay"] * p.data
            if group["momentum"]:
                if "velocity" not in state:
                    state["velocity"] = backend.xp.zeros_like(p.data)
                v = state["velocity"]
                v *= group["momentum"]
                v += g
                g = v
            p.data -= group["lr"] * g


class FlatGroup:
    """One parameter group laid out in flat arrays: data, grad, m and v, each (total size,).

    Each parameter's `data` becomes a view of its slice of `self.data`, and its `grad_buffer`
    (where backward writes its gradient, see `Tensor._accumulate`) a view of `self.grad`, so
    an update of the flat arrays updates every parameter at once. The moments m, v are views
    too, kept in the optimizer's per-parameter state, so saving and loading it is unchanged.
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
        return all(p.data is d and p.grad_buffer is g
                   for p, d, g in zip(self.params, self.data_views, self.grad_views))

    def has_all_grads(self) -> bool:
        """True when every parameter's gradient of this step is in the flat gradient."""
        return all(p.grad is g for p, g in zip(self.params, self.grad_views))


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019):

        p <- p - lr·λ·p
        m <- β1·m + (1-β1)·g          v <- β2·v + (1-β2)·g²
        m̂ = m / (1-β1^t)              v̂ = v / (1-β2^t)
        p <- p - lr · m̂ / (√v̂ + eps)

    Put biases, norms and embeddings in a group with weight_decay=0 to exclude them.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self._lay_out_flat()

    def _lay_out_flat(self) -> None:
        """Move every group into flat buffers now, before any backward, so every gradient
        lands there and every step (the first, and the first after a resume) is laid out
        the same way: gradient clipping then sums the same arrays in the same order."""
        self._flat = [FlatGroup(g["params"], self._group_states(i)) for i, g in enumerate(self.param_groups)]

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._lay_out_flat()

    def step(self) -> None:
        """One update of every parameter: on the flat buffers when every parameter has a
        gradient there, else (a parameter without a gradient, a rebound array) the
        per-parameter twin, which skips parameters without a gradient as PyTorch does."""
        if not all(f.bound() for f in self._flat):  # a parameter's array was replaced
            self._lay_out_flat()
        if all(f.has_all_grads() for f in self._flat):
            self.step_count += 1
            for group, flat in zip(self.param_groups, self._flat):
                self._update(group, flat.data, flat.grad, flat.m, flat.v)
        else:
            self.step_each()

    def _group_states(self, index: int) -> list[dict]:
        start = sum(len(g["params"]) for g in self.param_groups[:index])
        return self.state[start:start + len(self.param_groups[index]["params"])]

    def step_each(self) -> None:
        """The same update, one parameter at a time (the explicit twin of the flat step)."""
        self.step_count += 1
        xp = backend.xp
        for group, p, state in self._each():
            if "m" not in state:
                state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            self._update(group, p.data, p.grad, state["m"], state["v"])

    def _update(self, group: dict, p, g, m, v) -> None:
        """The AdamW formulas above, in place on the arrays p, m, v."""
        t = self.step_count
        beta1, beta2 = group["betas"]
        lr, decay = group["lr"], 1 - group["lr"] * group["weight_decay"]
        # Fold both bias corrections into the step size: lr·√(1-β2^t)/(1-β1^t) · m / (√v + eps').
        step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        eps = group["eps"] * math.sqrt(1 - beta2 ** t)
        if backend.get_array_module(p) is not numpy:
            return kernels.adamw_(p, g, m, v, decay, beta1, beta2, step_size, eps)
        # Blocks of the flat buffer on several threads; the formula is element by element.
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


def _global_norm(grads):
    """‖g‖ = √(Σ over every gradient of Σ g²), on the device: no per-tensor round trip.
    Each Σ g² is a dot product g·g (BLAS): one pass and no temporary of g's size."""
    xp = backend.get_array_module(grads[0])
    return xp.sqrt(sum(xp.vdot(g, g) for g in grads))


def grad_norm(params) -> float:
    """The global L2 norm of all gradients, without changing them (0.0 when there are none)."""
    grads = [p.grad for p in params if p.grad is not None]
    return backend.scalar(_global_norm(_flat_buffers(grads) or grads)) if grads else 0.0


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm.

    Returns the norm before clipping (log it: spikes show instability).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    grads = _flat_buffers(grads) or grads  # AdamW's flat buffers: a few large arrays, not many small
    total = _global_norm(grads)
    scale = xp.minimum(1.0, max_norm / (total + 1e-6)).astype(grads[0].dtype)
    for g in grads:
        g *= scale  # multiplying by 1 when the norm is small enough avoids a host-side branch
    return backend.scalar(total)  # the one value read back: it is logged


def _flat_buffers(grads) -> list | None:
    """The flat arrays these gradients are views of, when together they cover them exactly
    (AdamW's flat buffers); None otherwise."""
    bases = {}
    for g in grads:
        root = g
        while root.base is not None:  # a view of a view: up to the array that owns the memory
            root = root.base
        if root is g or root.ndim != 1:
            return None
        bases[id(root)] = root
    if sum(b.size for b in bases.values()) != sum(g.size for g in grads):
        return None
    return list(bases.values())


class ConstantSchedule:
    """lr(step) = lr."""

    def __init__(self, lr: float):
        self.lr = lr

    def __call__(self, step: int) -> float:
        return self.lr


class WarmupCosineSchedule:
    """Linear warmup from 0 to max_lr over warmup_steps, then cosine decay to min_lr at total_steps.

        lr(s) = max_lr · (s+1)/warmup                                      for s < warmup
        lr(s) = min_lr + ½ (max_lr - min_lr)(1 + cos(π·(s-warmup)/(total-warmup)))   after
    and min_lr past total_steps.
    """

    def __init__(self, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if total_steps < warmup_steps:
            raise UserError(f"total_steps ({total_steps}) must be at least warmup_steps ({warmup_steps})")
        self.max_lr, self.warmup, self.total, self.min_lr = max_lr, warmup_steps, total_steps, min_lr

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.max_lr * (step + 1) / self.warmup
        if step >= self.total:
            return self.min_lr
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
