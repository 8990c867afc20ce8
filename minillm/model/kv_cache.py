"""The KV cache: keys and values of past positions, kept so each new token costs one position.

Lecture: sampling asks LLM_phi for one token at a time. Without a cache every step would
recompute attention keys and values for the whole prefix (O(T²) work for T tokens); with it,
a step computes q, k, v for the new token only and attends over the stored keys and values.
Buffers are allocated once at their final size, so appending never copies the past.
Left out: paged or sliding-window caches, evicting old positions.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.engine.tensor import Tensor


class KVCache:
    """Per-layer key/value buffers of shape (B, H, max_len, D), filled left to right.

    Args:
        n_layer, batch, n_head, head_dim, max_len: the buffer sizes.
        key_mask: optional (B, max_len) boolean, False at padding positions (left padding for
            prompts of different lengths), so padding is never attended to.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, head_dim: int, max_len: int,
                 dtype=None, key_mask=None):
        xp = backend.xp
        dtype = dtype or backend.get_default_dtype()
        shape = (batch, n_head, max_len, head_dim)
        self.keys = [xp.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.values = [xp.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.max_len, self.length = max_len, 0
        self.key_mask = None if key_mask is None else backend.asarray(key_mask)

    @classmethod
    def for_model(cls, model, batch: int, max_len: int, key_mask=None) -> "KVCache":
        c = model.config
        return cls(c.n_layer, batch, c.n_head, c.n_embd // c.n_head, max_len,
                   model.wte.weight.dtype, key_mask)

    def append(self, layer: int, k: Tensor, v: Tensor):
        """Store this step's k, v (B, H, T, D) after the cached ones; return all of them so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions; cannot grow to {end}")
        self.keys[layer][:, :, self.length:end] = k.data
        self.values[layer][:, :, self.length:end] = v.data
        return Tensor._wrap(self.keys[layer][:, :, :end]), Tensor._wrap(self.values[layer][:, :, :end])

    def advance(self, steps: int) -> None:
        """Called by the model once every layer has appended `steps` positions."""
        self.length += steps
