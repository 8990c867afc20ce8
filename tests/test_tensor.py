"""The autograd engine itself: graph walking, accumulation, memory, and clear errors."""
import gc
import weakref

import numpy
import pytest

import minillm
import minillm.engine.ops
from minillm import Tensor, no_grad
from minillm.engine import backend

from conftest import rand


def test_hand_computed_chain_rule():
    # f = (a*b + a)^2 at a=2, b=3: f = 64, df/da = 2(ab+a)(b+1) = 64, df/db = 2(ab+a)a = 32
    a = Tensor(2.0, requires_grad=True)
    b = Tensor(3.0, requires_grad=True)
    f = (a * b + a) ** 2
    f.backward()
    assert f.item() == 64.0 and a.grad.item() == 64.0 and b.grad.item() == 32.0


def test_gradients_accumulate_across_paths_and_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3 + x * x).sum().backward()      # d/dx = 3 + 2x
    numpy.testing.assert_allclose(x.grad, [5.0, 7.0])
    (x * 1).sum().backward()              # a second backward adds to .grad
    numpy.testing.assert_allclose(x.grad, [6.0, 8.0])


def test_deep_chain_does_not_recurse():
    x = Tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_intermediate_buffers_are_released_after_backward():
    x = rand(50, 50, seed=0)
    y = x.exp()
    saved = weakref.ref(y._ctx)
    z = (y * 2).sum()
    z.backward()
    gc.collect()
    assert saved() is None, "the op's saved arrays should be freed after backward"
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        z.backward()  # a second pass through a freed graph is an error, not a silent no-op


def test_retain_graph_allows_a_second_backward():
    x = Tensor([1.0, -2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    numpy.testing.assert_allclose(x.grad, [4.0, -8.0])


def test_retain_grad_keeps_intermediate_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    numpy.testing.assert_allclose(h.grad, [4.0, 8.0])


def test_no_grad_records_nothing():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y._ctx is None


def test_detach_cuts_the_graph():
    x = Tensor([3.0], requires_grad=True)
    y = x * x.detach()
    y.backward(numpy.ones(1, dtype=numpy.float32))
    assert x.grad[0] == 3.0


def test_comparisons_give_plain_boolean_tensors():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x > 1.5
    assert mask.dtype == bool and not mask.requires_grad
    assert (x == 2.0).numpy().tolist() == [False, True, False]


def test_float32_stays_float32():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * numpy.float64(2.0) + 1.5) / 3 - x.exp() ** 2
    assert x.dtype == numpy.float32 and y.dtype == numpy.float32
    y.sum().backward()
    assert x.grad.dtype == numpy.float32


class RecordGradDtype(minillm.engine.ops.Function):
    """Identity whose backward notes the dtype of the gradient reaching it."""

    seen: list = []

    def forward(self, x):
        return x

    def backward(self, grad):
        RecordGradDtype.seen.append(grad.dtype)
        return (grad,)


def test_no_backward_upcasts_float32_gradients():
    """A float64 gradient inside a float32 graph would silently double the cost of backward
    (the leaf's .grad is cast back, so the check sits inside the graph)."""
    from minillm.engine.tensor import apply
    RecordGradDtype.seen = []
    x = Tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = Tensor([1.0, -1.0, 0.0], requires_grad=True)
    h = apply(RecordGradDtype, x)
    parts = [minillm.minimum(h, y), minillm.maximum(h, 1.0), h.clip(-0.5, 0.5), h.abs(), h.relu(),
             minillm.where(x.data > 0, h, y), h.softplus(), h.sigmoid(), h[[0, 0, 2]], h.max(),
             h * numpy.float64(2.0), h / 3, h ** 2, h.mean(), h.logsumexp()]
    total = parts[0].sum()
    for p in parts[1:]:
        total = total + p.sum()
    total.backward()
    assert RecordGradDtype.seen == [numpy.float32]
    assert {p.dtype for p in parts} == {numpy.dtype(numpy.float32)}


def test_item_numpy_and_repr():
    t = Tensor([[1.5]])
    assert t.item() == 1.5 and isinstance(t.numpy(), numpy.ndarray)
    assert "Tensor(" in repr(Tensor([1.0], requires_grad=True))
    with pytest.raises(ValueError, match="one element"):
        Tensor([1.0, 2.0]).item()


# ----- clear errors --------------------------------------------------------------------

def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        Tensor(numpy.ones((2, 3))) @ Tensor(numpy.ones((4, 5)))


def test_backward_on_non_scalar_needs_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="needs a gradient argument"):
        (x * 2).backward()


def test_backward_gradient_of_wrong_shape():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="expected"):
        (x * 2).backward(numpy.ones(3))


def test_backward_without_grad_is_explained():
    with pytest.raises(RuntimeError, match="does not require gradients"):
        Tensor([1.0]).sum().backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="integer"):
        Tensor([1, 2, 3], requires_grad=True)


def test_tensor_exponent_is_refused():
    with pytest.raises(TypeError, match="constant"):
        Tensor([1.0]) ** Tensor([2.0])


def test_unknown_device_is_refused():
    with pytest.raises(backend.DeviceError, match="unknown device 'tpu'"):
        minillm.use_device("tpu")


def test_cuda_without_cupy_or_gpu_says_what_to_do():
    try:
        import cupy  # noqa: F401
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is present")
    with pytest.raises(backend.DeviceError, match="CuPy|GPU"):
        minillm.use_device("cuda")
    assert backend.device == "cpu"


def test_debug_nan_names_the_op():
    minillm.set_debug_nan(True)
    with pytest.raises(FloatingPointError, match="Log"), numpy.errstate(invalid="ignore"):
        Tensor([-1.0]).log()
    minillm.set_debug_nan(False)
    with numpy.errstate(invalid="ignore"):
        assert numpy.isnan(Tensor([-1.0]).log().item())
