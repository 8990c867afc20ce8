"""Gradient checking: compare backprop's gradients with central finite differences.

Lecture: gradients are checked, not trusted. For each input element x_i,
    ∂f/∂x_i ≈ (f(x + eps·e_i) - f(x - eps·e_i)) / (2·eps),
an estimate with error O(eps²), in float64 so rounding does not swamp it. The scalar
checked is f's output contracted with a fixed random vector, so every output element matters.
Left out: complex numbers, checking second derivatives.
"""
from __future__ import annotations

import numpy

from minillm.engine import backend
from minillm.engine.tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _scalar(out: Tensor, projection) -> float:
    return float(backend.to_numpy((out.data * projection).sum()))


def numerical_gradient(fn, inputs, index: int, projection, eps: float):
    """Central-difference gradient of sum(fn(*inputs) * projection) with respect to inputs[index]."""
    x = inputs[index].data
    grad = numpy.zeros(x.shape)
    for i in numpy.ndindex(x.shape):  # element by element, so non-contiguous inputs work too
        original = x[i].item()
        x[i] = original + eps
        plus = _scalar(fn(*inputs), projection)
        x[i] = original - eps
        minus = _scalar(fn(*inputs), projection)
        x[i] = original
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check the analytic gradient of `fn` against central differences, in float64.

    Args:
        fn: a function of Tensors returning a Tensor (any shape).
        inputs: Tensors; those with requires_grad=True are checked. They must be float64.
        eps: the finite-difference step.
        atol, rtol: an element passes when |analytic - numeric| <= atol + rtol·|numeric|.

    Returns:
        True when every element passes. Otherwise raises GradcheckError naming the worst
        element: which input, its index, both values and the relative error.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != numpy.float64:
            raise TypeError(f"gradcheck input {i} is {t.dtype}: use float64 "
                            "(finite differences in float32 are too coarse to check anything)")
        if t.requires_grad and (t._ctx is not None):
            raise ValueError(f"gradcheck input {i} must be a leaf tensor (made directly, not by an op)")
    out = fn(*inputs)
    rng = numpy.random.default_rng(seed)
    projection = backend.asarray(rng.standard_normal(out.shape), numpy.float64)
    for t in inputs:
        t.grad = None
    (out * Tensor._wrap(projection)).sum().backward()
    for index, t in enumerate(inputs):
        if t.requires_grad:
            _compare(index, t, numerical_gradient(fn, inputs, index, projection, eps), atol, rtol)
    return True


def _compare(index: int, t: Tensor, numeric, atol: float, rtol: float) -> None:
    analytic = numpy.zeros(t.shape) if t.grad is None else backend.to_numpy(t.grad).astype(numpy.float64)
    excess = numpy.abs(analytic - numeric) - (atol + rtol * numpy.abs(numeric))
    if excess.size and excess.max() > 0:
        worst = numpy.unravel_index(int(excess.argmax()), excess.shape)
        a, n = analytic[worst], numeric[worst]
        rel = abs(a - n) / max(abs(n), 1e-12)
        raise GradcheckError(
            f"gradient of input {index} (shape {t.shape}) is wrong at index {tuple(map(int, worst))}: "
            f"analytic {a:.8g}, numerical {n:.8g}, relative error {rel:.3g} "
            f"(tolerance atol={atol}, rtol={rtol})")
