"""Every differentiable op, gradient-checked in float64 against central differences."""
import numpy
import pytest
from hypothesis import given, settings, strategies as st

import minillm
from minillm import Tensor
from minillm.engine.gradcheck import gradcheck
from minillm.model import functional as F
from minillm.engine.ops import unbroadcast

import composed
from conftest import rand

UNARY = {
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "softplus": lambda x: x.softplus(),
    "abs": lambda x: x.abs(),
    "clip": lambda x: x.clip(-0.5, 0.7),
    "pow3": lambda x: x ** 3,
    "square": lambda x: x ** 2,
    "gelu": F.gelu,
    "gelu_composed": composed.gelu,
    "softmax": lambda x: F.softmax(x, axis=-1),
    "softmax_axis0": lambda x: F.softmax(x, axis=0),
    "softmax_composed": composed.softmax,
    "log_softmax": F.log_softmax,
    "log_softmax_composed": composed.log_softmax,
    "layer_norm_plain": lambda x: F.layer_norm(x),
    "sum_all": lambda x: x.sum(),
    "sum_axis": lambda x: x.sum(axis=1),
    "sum_keepdims": lambda x: x.sum(axis=0, keepdims=True),
    "sum_axes_tuple": lambda x: x.sum(axis=(0, 2)),
    "mean": lambda x: x.mean(axis=-1),
    "mean_all": lambda x: x.mean(),
    "max_axis": lambda x: x.max(axis=1),
    "max_all_keepdims": lambda x: x.max(axis=None, keepdims=True),
    "logsumexp": lambda x: x.logsumexp(axis=-1),
    "logsumexp_keep": lambda x: x.logsumexp(axis=0, keepdims=True),
    "reshape": lambda x: x.reshape(6, -1),
    "transpose": lambda x: x.transpose(2, 0, 1),
    "T": lambda x: x.T,
    "swapaxes": lambda x: x.swapaxes(0, 2),
    "broadcast_to": lambda x: x.reshape(2, 3, 1, 4).broadcast_to((2, 3, 5, 4)),
    "unsqueeze_squeeze": lambda x: x.unsqueeze(1).squeeze(1) * x,
    "getitem_slice": lambda x: x[:, 1:, ::2],
    "getitem_int": lambda x: x[1],
    "getitem_negative_step": lambda x: x[::-1, :, 1],
    "getitem_repeated": lambda x: x[numpy.array([0, 1, 0, 0])],
    "getitem_2d_arrays": lambda x: x[numpy.array([0, 1, 1]), numpy.array([2, 0, 2])],
    "masked_fill": lambda x: x.masked_fill(numpy.arange(4) % 2 == 0, -3.0),
    "split": lambda x: minillm.split(x, [1, 3], axis=2)[1] * 2,
    "split_equal": lambda x: minillm.split(x, 3, axis=1)[2],
    "multi_path": lambda x: x * x.exp() + x.tanh() * x,
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradcheck(name, float64):
    x = rand(2, 3, 4, seed=1)
    assert gradcheck(UNARY[name], [x])


@pytest.mark.parametrize("name", ["log", "sqrt", "pow_half", "pow_neg"])
def test_positive_domain_gradcheck(name, float64):
    fn = {"log": lambda x: x.log(), "sqrt": lambda x: x.sqrt(),
          "pow_half": lambda x: x ** 0.5, "pow_neg": lambda x: x ** -1.5}[name]
    assert gradcheck(fn, [rand(3, 4, positive=True)])


BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 3))]
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": minillm.maximum,
    "minimum": minillm.minimum,
    "where": lambda a, b: minillm.where((a.data + b.data) > 0, a, b),
}


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcast_gradcheck(name, shapes, float64):
    a = rand(*shapes[0], seed=2)
    b = rand(*shapes[1], seed=3, positive=(name == "div"))
    assert gradcheck(BINARY[name], [a, b])


def test_scalar_operands_both_sides(float64):
    x = rand(3, seed=4, positive=True)
    assert gradcheck(lambda x: 2.0 - x + 3 * x / 4.0 - 1.0 / x + x * 0.5, [x])


@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4, 5)), ((3, 4), (4,)),
                                    ((4,), (4,))], ids=str)
def test_matmul_gradcheck(shapes, float64):
    assert gradcheck(lambda a, b: a @ b, [rand(*shapes[0], seed=5), rand(*shapes[1], seed=6)])


def test_matmul_transposed_noncontiguous_inputs(float64):
    a = Tensor(numpy.random.default_rng(0).standard_normal((5, 3)).T, requires_grad=True)
    assert not a.data.flags["C_CONTIGUOUS"]
    b = rand(5, 2, seed=1)
    assert gradcheck(lambda a, b: (a @ b).T, [a, b])


def test_concatenate_and_stack_gradcheck(float64):
    a, b, c = rand(2, 3, seed=1), rand(2, 1, seed=2), rand(2, 3, seed=3)
    assert gradcheck(lambda a, b: minillm.concatenate([a, b, a], axis=1), [a, b])
    assert gradcheck(lambda a, c: minillm.stack([a, c, a * c], axis=1), [a, c])


def test_layer_norm_with_weight_and_bias_gradcheck(float64):
    x, w, b = rand(2, 3, 5, seed=1), rand(5, seed=2), rand(5, seed=3)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, w, b), [x, w, b])
    assert gradcheck(lambda x, w, b: composed.layer_norm(x, w, b), [x, w, b])


def test_linear_gradcheck(float64):
    x, w, b = rand(2, 3, 4, seed=1), rand(4, 5, seed=2), rand(5, seed=3)
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    assert gradcheck(lambda x, w: F.linear(x, w), [x, w])


def test_embedding_gradcheck_with_repeated_ids(float64):
    weight = rand(6, 4, seed=1)
    ids = numpy.array([[0, 2, 2], [5, 0, 2]])
    assert gradcheck(lambda w: F.embedding(w, ids), [weight])
    assert gradcheck(lambda w: composed.embedding(w, ids), [weight])


def test_cross_entropy_gradcheck(float64):
    logits = rand(5, 7, seed=1)
    targets = numpy.array([0, 6, -100, 3, 3])
    assert gradcheck(lambda z: F.cross_entropy(z, targets), [logits])
    assert gradcheck(lambda z: F.cross_entropy_composed(z, targets), [logits])
    weights = rand(5, seed=2, requires_grad=False)  # a weighted sum of per-row losses, as SFT's "sequence" mode
    assert gradcheck(lambda z: (F.cross_entropy_composed(z, targets, reduction="none") * weights).sum(), [logits])


def test_dropout_gradcheck_with_fixed_mask(float64):
    x = rand(4, 5, seed=1)
    # The same generator state for every call, so the mask is the same one each time.
    assert gradcheck(lambda x: F.dropout(x, 0.3, True, minillm.make_rng(7)), [x])


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data())
def test_property_broadcast_binary_ops(shape, data):
    """Random shapes with random size-1 axes: every binary op's gradient sums back correctly."""
    minillm.set_default_dtype(numpy.float64)
    other = [data.draw(st.sampled_from([1, n])) for n in shape]
    other = other[data.draw(st.integers(0, len(other) - 1)):]
    name = data.draw(st.sampled_from(["add", "sub", "mul", "div", "maximum"]))
    a, b = rand(*shape, seed=1), rand(*other, seed=2, positive=(name == "div"))
    assert gradcheck(BINARY[name], [a, b])


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data())
def test_property_reductions(shape, data):
    minillm.set_default_dtype(numpy.float64)
    axis = data.draw(st.sampled_from([None, *range(len(shape))]))
    keepdims = data.draw(st.booleans())
    op = data.draw(st.sampled_from(["sum", "mean", "max"]))
    x = rand(*shape, seed=3)
    assert gradcheck(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), [x])


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_property_unbroadcast_is_adjoint_of_broadcast(shape, data):
    """<broadcast(a), g> == <a, unbroadcast(g)> for every a and g."""
    small = [data.draw(st.sampled_from([1, n])) for n in shape]
    small = small[data.draw(st.integers(0, len(small))):]
    rng = numpy.random.default_rng(0)
    a, g = rng.standard_normal(small), rng.standard_normal(shape)
    lhs = (numpy.broadcast_to(a, shape) * g).sum()
    rhs = (a * unbroadcast(g, tuple(small))).sum()
    assert numpy.isclose(lhs, rhs)
