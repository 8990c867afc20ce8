"""Fused ops against their composed twins (values and gradients), and numerical stability."""
import numpy
import pytest

import minillm
from minillm import Tensor
from minillm.engine import ops
from minillm.model import functional as F
from minillm.model.sampling import sampling_probs

import composed
from conftest import rand

PAIRS = {
    "softmax": (F.softmax, composed.softmax),
    "log_softmax": (F.log_softmax, composed.log_softmax),
    "gelu": (F.gelu, composed.gelu),
    "layer_norm": (F.layer_norm, composed.layer_norm),
}


def _value_and_grads(fn, *inputs):
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    weights = numpy.random.default_rng(1).standard_normal(out.shape)
    (out * Tensor(weights, dtype=out.dtype)).sum().backward()
    return out.numpy(), [t.grad.copy() for t in inputs]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_equals_composed(name, float64):
    fused, composed = PAIRS[name]
    x = rand(3, 4, 6, seed=2)
    v1, g1 = _value_and_grads(fused, x)
    v2, g2 = _value_and_grads(composed, x)
    numpy.testing.assert_allclose(v1, v2, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(g1[0], g2[0], rtol=1e-8, atol=1e-10)


def test_layer_norm_affine_fused_equals_composed(float64):
    x, w, b = rand(2, 5, 8, seed=1), rand(8, seed=2), rand(8, seed=3)
    v1, g1 = _value_and_grads(lambda x, w, b: F.layer_norm(x, w, b), x, w, b)
    v2, g2 = _value_and_grads(lambda x, w, b: composed.layer_norm(x, w, b), x, w, b)
    numpy.testing.assert_allclose(v1, v2, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g2):
        numpy.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("x_shape", [(2, 5, 4), (5, 4), (4,)], ids=str)
def test_linear_fused_equals_composed(x_shape, with_bias, float64):
    x, w, b = rand(*x_shape, seed=1), rand(4, 3, seed=2), rand(3, seed=3) if with_bias else None
    inputs = [x, w] + ([b] if with_bias else [])
    v1, g1 = _value_and_grads(lambda *t: F.linear(*t), *inputs)
    v2, g2 = _value_and_grads(lambda *t: composed.linear(*t), *inputs)
    assert v1.shape == x_shape[:-1] + (3,)
    numpy.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-14)
    for a, b in zip(g1, g2):
        numpy.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_linear_refuses_mismatched_shapes():
    x, w = rand(2, 5, 4, seed=1), rand(4, 3, seed=2)
    with pytest.raises(ValueError, match=r"agree on `in`.*\(2, 5, 6\)"):
        F.linear(rand(2, 5, 6, seed=1), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.linear(x, w, rand(4, seed=3))


def test_embedding_fused_equals_indexing(float64):
    w = rand(10, 4, seed=1)
    ids = numpy.array([[1, 1, 9], [0, 1, 3]])
    v1, g1 = _value_and_grads(lambda w: F.embedding(w, ids), w)
    v2, g2 = _value_and_grads(lambda w: composed.embedding(w, ids), w)
    numpy.testing.assert_array_equal(v1, v2)
    numpy.testing.assert_allclose(g1[0], g2[0], rtol=1e-12)


def test_cross_entropy_fused_equals_composed(float64):
    z = rand(6, 9, seed=4)
    targets = numpy.array([1, -100, 8, 0, 0, -100])
    v1, g1 = _value_and_grads(lambda z: F.cross_entropy(z, targets), z)
    v2, g2 = _value_and_grads(lambda z: F.cross_entropy_composed(z, targets), z)
    numpy.testing.assert_allclose(v1, v2, rtol=1e-12)
    numpy.testing.assert_allclose(g1[0], g2[0], rtol=1e-10, atol=1e-14)
    assert numpy.all(g1[0][[1, 5]] == 0), "ignored rows get no gradient"
    per_row = F.cross_entropy_composed(Tensor(z.data), targets, reduction="none").numpy()  # (N,)
    assert per_row.shape == (6,) and numpy.all(per_row[[1, 5]] == 0)
    numpy.testing.assert_allclose(per_row.sum() / 4, v1, rtol=1e-12)  # 4 counted rows
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy_composed(Tensor(z.data), targets, reduction="sum")


@pytest.mark.parametrize("fn", [F.softmax, composed.softmax, F.log_softmax, composed.log_softmax],
                         ids=lambda f: f.__name__)
def test_softmax_family_is_stable_for_huge_inputs(fn):
    x = Tensor(numpy.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=numpy.float32), requires_grad=True)
    with numpy.errstate(over="raise", invalid="raise", divide="raise"):
        out = fn(x)
        out.sum().backward()
    assert numpy.isfinite(out.numpy()).all() and numpy.isfinite(minillm.to_numpy(x.grad)).all()


def test_softmax_sums_to_one():
    p = F.softmax(Tensor(numpy.random.default_rng(0).standard_normal((4, 7))))
    numpy.testing.assert_allclose(p.numpy().sum(-1), 1.0, rtol=1e-6)


def test_the_softmax_family_has_one_definition_on_arrays():
    """The one-node ops, the cross entropy and the sampler all call engine/ops.py's formulas: equal bit for bit."""
    z = numpy.random.default_rng(1).standard_normal((5, 9)).astype(numpy.float32) * 4
    numpy.testing.assert_array_equal(F.softmax(Tensor(z)).numpy(), ops.softmax(z))
    numpy.testing.assert_array_equal(F.log_softmax(Tensor(z), axis=0).numpy(), ops.log_softmax(z, axis=0))
    numpy.testing.assert_array_equal(Tensor(z).logsumexp(axis=-1).numpy(), ops.logsumexp(z))
    targets = numpy.arange(5)
    nll = ops.logsumexp(z) - z[targets, targets]
    numpy.testing.assert_allclose(F.cross_entropy(Tensor(z), targets).item(), nll.mean(), rtol=1e-6)
    numpy.testing.assert_array_equal(sampling_probs(z, 0.5), ops.softmax(z.astype(numpy.float64) / 0.5))


def test_logsumexp_is_stable():
    x = Tensor(numpy.array([1e4, 1e4], dtype=numpy.float32))
    assert abs(x.logsumexp().item() - (1e4 + numpy.log(2))) < 1e-2


def test_dropout_is_seeded_and_train_aware():
    x = Tensor(numpy.ones((200, 50), dtype=numpy.float32))
    a = F.dropout(x, 0.25, True, minillm.make_rng(3)).numpy()
    b = F.dropout(x, 0.25, True, minillm.make_rng(3)).numpy()
    numpy.testing.assert_array_equal(a, b)
    assert abs((a == 0).mean() - 0.25) < 0.02 and abs(a.mean() - 1.0) < 0.05
    assert F.dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        F.dropout(x, 1.0)


def test_embedding_and_cross_entropy_bad_ids():
    w = Tensor(numpy.zeros((5, 2), dtype=numpy.float32), requires_grad=True)
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        F.embedding(w, numpy.array([0, 5]))
    with pytest.raises(TypeError, match="integers"):
        F.embedding(w, numpy.array([0.5]))
    with pytest.raises(ValueError, match=r"logits \(N, V\) and targets \(N,\)"):
        F.cross_entropy(Tensor(numpy.zeros((3, 4))), numpy.array([0, 1]))
    with pytest.raises(IndexError, match="targets must lie"):
        F.cross_entropy(Tensor(numpy.zeros((2, 4))), numpy.array([0, 4]))
