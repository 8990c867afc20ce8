"""The gradient checker catches wrong gradients and explains where."""
import numpy
import pytest

from minillm import Tensor, GradcheckError
from minillm.engine.gradcheck import gradcheck
from minillm.engine.ops import Function
from minillm.engine.tensor import apply

from conftest import rand


class WrongSquare(Function):
    """x² with a deliberately wrong derivative (x instead of 2x)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * self.x,)


def test_gradcheck_catches_a_wrong_backward(float64):
    x = rand(2, 3, seed=0)
    with pytest.raises(GradcheckError, match=r"input 0 .* index \(\d, \d\): analytic .* numerical .* relative error"):
        gradcheck(lambda x: apply(WrongSquare, x), [x])


def test_gradcheck_passes_a_right_backward(float64):
    assert gradcheck(lambda x: x * x, [rand(2, 3, seed=0)])


def test_gradcheck_refuses_float32():
    x = Tensor(numpy.ones(3, dtype=numpy.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x * 2, [x])


def test_gradcheck_skips_inputs_without_grad(float64):
    x, c = rand(3, seed=1), rand(3, seed=2, requires_grad=False)
    assert gradcheck(lambda x, c: x * c, [x, c])
