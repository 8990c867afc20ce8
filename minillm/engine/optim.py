"""Optimizers (SGD with momentum, AdamW), gradient clipping and learning-rate schedules.

Lecture: every phase minimises its loss by gradient descent, phi <- phi - lr · update.
Updates are done in place on the parameter arrays, and the optimizer state (moments, step)
can be saved and restored exactly, so a resumed run continues bit for bit. AdamW loops over
the parameters, one formula per line; `minillm.fast` has a subclass that updates them all
at once from one flat buffer (fast/flat_adamw.py).
Left out: second-order methods, learning-rate finders.
"""
from __future__ import annotations

import math

from minillm.engine import backend
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

    def step(self) -> None:
        """One update of every parameter that has a gradient (the others are skipped, as in PyTorch)."""
        self.step_count += 1
        t, xp = self.step_count, backend.xp
        for group, p, state in self._each():
            (beta1, beta2), lr, g = group["betas"], group["lr"], p.grad
            if "m" not in state:
                state["m"], state["v"] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m, v = state["m"], state["v"]
            p.data *= 1 - lr * group["weight_decay"]  # decoupled weight decay
            m[...] = beta1 * m + (1 - beta1) * g  # the moments are updated in place: state holds them
            v[...] = beta2 * v + (1 - beta2) * g * g
            m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)  # bias-corrected
            p.data -= lr * m_hat / (xp.sqrt(v_hat) + group["eps"])


def _gradients(params) -> list:
    """The gradients to clip or measure: one array per parameter that has one."""
    return [p.grad for p in params if p.grad is not None]


def _global_norm(grads):
    """‖g‖ = √(Σ over every gradient of Σ g²), on the device: no per-tensor round trip."""
    return backend.get_array_module(grads[0]).sqrt(sum((g * g).sum() for g in grads))


def grad_norm(params) -> float:
    """The global L2 norm of all gradients, without changing them (0.0 when there are none)."""
    grads = _gradients(params)
    return backend.scalar(_global_norm(grads)) if grads else 0.0


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm.

    Returns the norm before clipping (log it: spikes show instability).
    """
    grads = _gradients(params)
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    total = _global_norm(grads)
    scale = xp.minimum(1.0, max_norm / (total + 1e-6)).astype(grads[0].dtype)
    for g in grads:
        g *= scale  # multiplying by 1 when the norm is small enough avoids a host-side branch
    return backend.scalar(total)  # the one value read back: it is logged


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
