"""Fused GPU kernels (CuPy ElementwiseKernel) for the elementwise chains of the model.

Lecture: the same formulas as `fused.py`, compiled into one GPU kernel each, so a chain of
a dozen elementwise operations reads and writes memory once instead of a dozen times. The
array-expression versions in `fused.py` stay the twins these kernels are tested against
(tests/test_backends_agree.py). Kernels are built on first use through `backend.xp`, so this
module never imports CuPy itself and costs nothing on the CPU.
Also here: a deterministic scatter-add (the embedding's backward) that sums in a fixed
order, so training on a GPU is reproducible bit for bit, as on the CPU.
Left out: reductions (layer norm, softmax) as custom kernels; CuPy's own reductions are used.
"""
from __future__ import annotations

from minillm import backend

_KERNELS: dict = {}

# y = ½ x (1 + t), t = tanh(√(2/π) (x + 0.044715 x³))
_GELU_FORWARD = """
    t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
    y = 0.5 * x * (1 + t);
"""
# dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)
_GELU_BACKWARD = """
    T inner = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
    dx = g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner);
"""


# y[s, c] = Σ_{j in segment s} values[order[j], c], summed in sorted order: the same order
# every run, unlike atomic adds, so a GPU run is reproducible bit for bit.
_SEGMENT_SUM = """
    const long long s = i / C, c = i % C;
    T acc = 0;
    for (long long j = starts[s]; j < ends[s]; ++j) acc += values[order[j] * C + c];
    y = acc;
"""


def _kernel(name: str, in_params: str, out_params: str, body: str):
    if name not in _KERNELS:
        _KERNELS[name] = backend.xp.ElementwiseKernel(in_params, out_params, body, f"minillm_{name}")
    return _KERNELS[name]


def gelu_forward(x):
    """(y, t) for GELU in one kernel: t is kept for the backward."""
    return _kernel("gelu_forward", "T x", "T y, T t", _GELU_FORWARD)(x)


def gelu_backward(grad, x, t):
    """dL/dx for GELU in one kernel."""
    return _kernel("gelu_backward", "T g, T x, T t", "T dx", _GELU_BACKWARD)(grad, x, t)


def scatter_add_rows(num_rows: int, ids, values):
    """out[i] = Σ_{j: ids[j] = i} values[j] on the GPU, deterministically.

    The ids are sorted once; one kernel thread per (distinct id, channel) sums that id's rows
    in sorted order. CuPy's `add.at` would use atomic adds, whose order (and so the float
    rounding) changes from run to run. ids (N,), values (N, C) -> (num_rows, C).
    """
    xp = backend.xp
    values = xp.ascontiguousarray(values)
    order = xp.argsort(ids)
    sorted_ids = ids[order]
    is_start = xp.concatenate([xp.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1]])
    starts = xp.flatnonzero(is_start)
    ends = xp.concatenate([starts[1:], xp.asarray([len(ids)], dtype=starts.dtype)])
    sums = xp.empty((len(starts), values.shape[1]), dtype=values.dtype)
    kernel = _kernel("segment_sum", "raw T values, raw int64 order, raw int64 starts, raw int64 ends, int64 C",
                     "T y", _SEGMENT_SUM)
    kernel(values, order.astype(xp.int64), starts.astype(xp.int64), ends.astype(xp.int64),
           values.shape[1], sums)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    out[sorted_ids[starts]] = sums
    return out
