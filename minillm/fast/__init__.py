"""The speed wing: everything in minillm that is there for speed, off until `enable()`.

The core (engine/, model/) runs one plain formula per op. `enable()` switches in:
- OpenBLAS's faster matrix kernels on CPUs where that was measured (`blas_kernels`; only
  where NumPy is not loaded yet, so the `minillm` command calls `enable()` first thing),
- glibc's allocator tuned to reuse NumPy's big temporaries (`allocator`),
- a pool of threads that splits a step's row-wise work and products over the cores
  (`cpu_threads`; MINILLM_THREADS sets how many),
- the fast twins of the core's one-node functions, matrix product and AdamW: tiled attention,
  in-place bodies on the threads, CUDA kernels on a GPU (`fused`, `attention`,
  `cuda_kernels`), AdamW on flat buffers (`flat_adamw`).

How: `enable()` rebinds names. Each entry of `_replacements()` is a (namespace, name, fast
object) triple, e.g. (model.functional, "Gelu", fused.Gelu): the core looks those names up
when it runs (`apply(Gelu, x)` in functional.py, `ops.MatMul` in Tensor.__matmul__,
`optim.AdamW(...)` in the trainer), so after the swap it runs the fast object with no branch
of its own. `disable()` puts every plain object back. The two process-wide settings stay as
they are once made (the kernel choice and the allocator): they change speed, never numbers.
Objects made before a switch keep what they were made with (an optimizer built as FlatAdamW
stays one). Fast equals plain in value and gradient, op by op and after training steps, to
float32 rounding (tests/test_fast.py).
"""
from __future__ import annotations

import os

_plain: dict = {}  # (namespace, name) -> the plain object `enable()` replaced


def enabled() -> bool:
    """Whether the fast twins are switched in."""
    return bool(_plain)


def enable() -> None:
    """Switch the speed wing in (see the module's docstring); enabling twice is harmless."""
    if _plain:
        return
    from minillm.fast import allocator, blas_kernels
    blas_kernels.choose_kernels()  # first: it must come before NumPy loads OpenBLAS
    allocator.tune_allocator()
    from minillm.fast import cpu_threads
    cpu_threads.set_threads(cpu_threads.threads_from_environment())
    for namespace, name, fast in _replacements():
        _plain[(namespace, name)] = vars(namespace)[name]
        setattr(namespace, name, fast)


def disable() -> None:
    """Put the plain objects back and run on the calling thread alone (BLAS gets its own
    threads back); the kernel choice and the allocator stay as they are."""
    from minillm.fast import cpu_threads
    for (namespace, name), plain in _plain.items():
        setattr(namespace, name, plain)
    _plain.clear()
    cpu_threads.set_threads(1)


def enable_unless_plain(argv: list[str] | None) -> bool:
    """The command's switch: `enable()` unless MINILLM_PLAIN=1 or `--plain` comes before the
    command's name in `argv`; True when enabled."""
    first_command = next((i for i, a in enumerate(argv or []) if not a.startswith("-")), len(argv or []))
    if os.environ.get("MINILLM_PLAIN", "") not in ("", "0") or "--plain" in (argv or [])[:first_command]:
        return False
    enable()
    return True


def _replacements() -> list:
    """(namespace, name, fast object): what `enable()` rebinds, one line each."""
    from minillm.engine import ops, optim
    from minillm.engine.tensor import Tensor
    from minillm.fast import attention, flat_adamw, fused
    from minillm.model import functional
    return [
        (ops, "unbroadcast", fused.unbroadcast),
        (ops, "MatMul", fused.MatMul),
        (functional, "Linear", fused.Linear),
        (functional, "Gelu", fused.Gelu),
        (functional, "LayerNorm", fused.LayerNorm),
        (functional, "Embedding", fused.Embedding),
        (functional, "CrossEntropy", fused.CrossEntropy),
        (functional, "CausalSelfAttention", attention.CausalSelfAttention),
        (optim, "AdamW", flat_adamw.FlatAdamW),
        (optim, "_gradients", flat_adamw.flat_gradients),
        (optim, "_global_norm", flat_adamw.dot_norm),
        (Tensor, "_propagate", staticmethod(flat_adamw.propagate)),
        (Tensor, "_accumulate", flat_adamw.accumulate),
    ]
