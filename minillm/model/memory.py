"""Memory: the bytes a transformer needs to answer (inference) and to learn (finetuning).

Lecture, "When do we consider a model large?": running large models for inference or
fine-tuning may require significant memory. This module counts that memory from the model's
shape alone, one readable formula per part, so a lesson can put the class model and GPT-3
175B side by side and a test can hold each formula against the arrays minillm allocates.

    weights      N · b_w                  every parameter, stored once
    gradients    N · b_w                  one gradient per parameter (finetuning only)
    AdamW        2 · N · b_m              first and second moments m, v (finetuning only)
    master copy  N · b_m if b_w < b_m     the float32 weights that mixed precision updates
    KV cache     2 · L · C · T · B · b_w  a key and a value of width C per layer, position
                                          and sequence (inference only)

N parameters, L layers, C model width (n_embd = heads × head width), T context positions
held, B sequences decoded at once, b_w bytes per weight value (4 in float32, 2 in float16 or
bfloat16), b_m bytes per optimizer value (4: moments are kept in float32).
Left out: activations kept for the backward pass (they depend on batch, sequence length and
recomputation, and can rival the rest), temporary buffers, framework overhead, fragmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

from minillm.errors import UserError

MODES = ("inference", "finetuning")


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes of each part; the parts a mode does not need are 0."""

    weights: int
    gradients: int
    adamw_moments: int
    master_weights: int
    kv_cache: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.adamw_moments + self.master_weights + self.kv_cache

    def parts(self) -> dict[str, int]:
        """{part name: bytes}, in the order of the module docstring."""
        return {"weights": self.weights, "gradients": self.gradients, "AdamW moments": self.adamw_moments,
                "master weights": self.master_weights, "KV cache": self.kv_cache}


def kv_cache_bytes(n_layer: int, n_embd: int, context: int, batch: int = 1, bytes_per_value: int = 4) -> int:
    """KV cache = 2 · L · C · T · B · b_w bytes.

    Each layer keeps a key and a value vector (hence the 2) of width C = heads × head width
    for every position t ≤ T of every sequence in the batch.
    Example: the class model (L = 4, C = 128) at T = 128, B = 1, float32: 2·4·128·128·1·4 = 524,288 bytes.
    """
    _check_positive(n_layer=n_layer, n_embd=n_embd, context=context, batch=batch, bytes_per_value=bytes_per_value)
    return 2 * n_layer * n_embd * context * batch * bytes_per_value


def memory_budget(n_params: int, n_layer: int, n_embd: int, context: int, mode: str = "inference",
                  batch: int = 1, bytes_per_value: int = 4, optimizer_bytes: int = 4) -> MemoryBudget:
    """The bytes of weights, gradients, AdamW moments, master weights and KV cache for one mode.

    inference:  weights N·b_w + KV cache 2·L·C·T·B·b_w
    finetuning: weights N·b_w + gradients N·b_w + AdamW 2·N·b_m
                + master copy N·b_m when the weights are kept in fewer bytes than the optimizer's
                (mixed precision); no KV cache (training reads whole sequences at once).

    With float32 everywhere (b_w = b_m = 4) finetuning costs 4 + 4 + 8 = 16 bytes per parameter;
    with float16 weights and gradients and a float32 master copy, 2 + 2 + 8 + 4 = 16 as well.

    Args:
        n_params: N. n_layer: L. n_embd: C. context: T, positions kept in the KV cache.
        mode: "inference" or "finetuning". batch: B, sequences decoded at once (inference).
        bytes_per_value: b_w, bytes per weight and gradient value. optimizer_bytes: b_m.
    """
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_positive(n_params=n_params, optimizer_bytes=optimizer_bytes)
    weights = n_params * bytes_per_value
    if mode == "inference":
        kv = kv_cache_bytes(n_layer, n_embd, context, batch, bytes_per_value)
        return MemoryBudget(weights=weights, gradients=0, adamw_moments=0, master_weights=0, kv_cache=kv)
    _check_positive(bytes_per_value=bytes_per_value)
    master = n_params * optimizer_bytes if bytes_per_value < optimizer_bytes else 0
    return MemoryBudget(weights=weights, gradients=n_params * bytes_per_value,
                        adamw_moments=2 * n_params * optimizer_bytes, master_weights=master, kv_cache=0)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value!r}")
