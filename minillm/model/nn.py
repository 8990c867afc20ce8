"""Layers: Module, Parameter, Linear, Embedding, LayerNorm, Dropout, ModuleList.

Lecture: an LLM is a function with parameters phi; a Module holds some of them and knows
how to compute its output. Parameters are found by walking the module's attributes in the
order they were set, so names such as `h.0.attn.c_attn.weight` (the GPT's first block) are stable and a
state dict can be saved and loaded by name.
Left out: hooks, buffers other than parameters, automatic device moves.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterator

from minillm.engine import backend
from minillm.model import functional as F
from minillm.engine.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad is always on)."""

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)


def _init_array(sampler, shape, rng):
    """Draw an initial array with the module's generator, in the default dtype."""
    rng = rng or backend.get_rng()
    dtype = backend.get_default_dtype()
    return sampler(rng, shape).astype(dtype, copy=False)


class Module:
    """Base class: subclasses set Parameters and sub-Modules as attributes and define forward."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield from value.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) in a stable order; a parameter shared by two modules is listed once."""
        seen = set()
        for prefix, module in self.named_modules():
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield prefix + name, value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def state_dict(self) -> "OrderedDict[str, object]":
        """name -> array for every parameter (the arrays themselves, not copies)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into the parameters; refuse missing, unexpected or wrongly shaped entries."""
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(f"state dict does not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
        for name, p in own.items():
            value = state[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"state dict entry {name!r} has shape {tuple(value.shape)}, "
                                 f"the model expects {tuple(p.shape)}")
            p.data[...] = backend.asarray(value, p.dtype)


class ModuleList(Module):
    """A list of modules whose parameters are named `0.…`, `1.…`, …"""

    def __init__(self, modules=()):
        self._items = []
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._items)), module)
        self._items.append(module)

    def __getitem__(self, i):
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)


class Linear(Module):
    """y = x @ W + b with W of shape (in_features, out_features).

    W is stored input-major (as GPT-2's checkpoints store it), so the forward needs no
    transpose. Initialised uniformly in ±1/√in_features.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_init_array(
            lambda r, s: r.uniform(-bound, bound, s), (in_features, out_features), rng))
        self.bias = Parameter(backend.xp.zeros(out_features, dtype=backend.get_default_dtype())) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out)


class Embedding(Module):
    """A table of vectors, one row per id: (num_embeddings, embedding_dim), N(0, 1) initially."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None):
        self.weight = Parameter(_init_array(
            lambda r, s: r.standard_normal(s), (num_embeddings, embedding_dim), rng))

    def forward(self, ids) -> Tensor:
        return F.embedding(self.weight, ids)  # (B, T) -> (B, T, C)


class LayerNorm(Module):
    """Normalise the last axis to mean 0, variance 1, then scale by w and shift by b."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        dtype = backend.get_default_dtype()
        self.eps = eps
        self.weight = Parameter(backend.xp.ones(dim, dtype=dtype))
        self.bias = Parameter(backend.xp.zeros(dim, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Dropout with probability p while training; the identity in eval mode."""

    def __init__(self, p: float = 0.0, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)
