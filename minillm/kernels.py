"""Fused GPU kernels (CuPy ElementwiseKernel) for the elementwise chains of the model.

Lecture: the same formulas as `fused.py`, compiled into one GPU kernel each, so a chain of
a dozen elementwise operations reads and writes memory once instead of a dozen times. The
array-expression versions in `fused.py` stay the twins these kernels are tested against
(tests/test_backends_agree.py). Kernels are built on first use through `backend.xp`, so this
module never imports CuPy itself and costs nothing on the CPU.
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
