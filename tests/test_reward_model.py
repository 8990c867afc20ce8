"""Phase 3's reward model: the pairwise loss as written and in its stable form, the score
read at the last real token whatever the padding, and the metrics."""
import math

import numpy
import pytest

import minillm
from minillm import Tensor
from minillm.engine import backend
from minillm.engine.gradcheck import gradcheck
from minillm.phases.losses import mean_margin, pairwise_accuracy, pairwise_loss, pairwise_loss_stable
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.reward_model import RewardModel

from conftest import rand

CONFIG = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)


def test_equal_scores_give_log_2():
    s = Tensor([0.3, -1.2])
    assert pairwise_loss(s, s).item() == pytest.approx(math.log(2), rel=1e-6)
    assert pairwise_loss_stable(s, s).item() == pytest.approx(math.log(2), rel=1e-6)


def test_literal_and_stable_forms_agree_for_moderate_margins(float64):
    a1, b1 = rand(20, seed=1), rand(20, seed=2)
    a2, b2 = rand(20, seed=1), rand(20, seed=2)
    l1, l2 = pairwise_loss(a1, b1), pairwise_loss_stable(a2, b2)
    l1.backward()
    l2.backward()
    assert l1.item() == pytest.approx(l2.item(), rel=1e-12)
    numpy.testing.assert_allclose(a1.grad, a2.grad, rtol=1e-10)
    numpy.testing.assert_allclose(b1.grad, b2.grad, rtol=1e-10)


def test_both_forms_gradcheck(float64):
    assert gradcheck(pairwise_loss, [rand(5, seed=3), rand(5, seed=4)])
    assert gradcheck(pairwise_loss_stable, [rand(5, seed=3), rand(5, seed=4)])


def test_literal_form_breaks_at_large_margins_and_stable_does_not():
    w, l = Tensor([-50.0], requires_grad=True), Tensor([50.0], requires_grad=True)  # margin -100
    with numpy.errstate(all="ignore"):
        literal = pairwise_loss(w, l)
        literal.backward()
    assert math.isinf(literal.item())              # e^100 overflows float32: σ = 0, log 0 = -inf
    assert not numpy.isfinite(backend.scalar(w.grad[0]))  # and the gradient is NaN: training would stop
    w2, l2 = Tensor([-50.0], requires_grad=True), Tensor([50.0], requires_grad=True)
    stable = pairwise_loss_stable(w2, l2)
    stable.backward()
    assert stable.item() == pytest.approx(100.0, rel=1e-6)
    assert float(w2.grad[0]) == pytest.approx(-1.0)  # still pushes the winner up at full strength

    high = (Tensor([150.0]), Tensor([50.0]))        # margin +100
    assert pairwise_loss(*high).item() == 0.0      # σ rounds to 1: the loss is exactly 0
    if backend.device == "cpu":  # GPUs flush float32 subnormals such as e^-100 to zero
        assert 0.0 < pairwise_loss_stable(*high).item() < 1e-40   # the true value, e^-100


def test_metrics():
    s_w, s_l = numpy.array([2.0, 0.0, 1.0, -1.0]), numpy.array([1.0, 1.0, 0.0, -3.0])
    assert pairwise_accuracy(s_w, s_l) == 0.75
    assert pairwise_accuracy(numpy.zeros(4), numpy.zeros(4)) == 0.5      # no preference: chance, not 0
    assert pairwise_accuracy(numpy.array([1.0, 2.0]), numpy.array([1.0, 3.0])) == 0.25   # a tie and a miss
    assert mean_margin(s_w, s_l) == pytest.approx((1 - 1 + 1 + 2) / 4)


def test_score_is_read_at_the_last_real_token_whatever_the_padding():
    minillm.manual_seed(0)
    rm = RewardModel(GPTConfig(**CONFIG))
    rm.score_head.weight.data[...] = backend.asarray(numpy.random.default_rng(0).standard_normal((8, 1)), numpy.float32)
    text = [3, 1, 4, 1, 5]
    alone = rm(numpy.array([text]), numpy.array([5])).numpy()[0]
    padded = numpy.array([text + [0, 0, 0], [2, 7, 1, 8, 2, 8, 1, 8]])
    scores = rm(padded, numpy.array([5, 8])).numpy()
    assert scores[0] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    other_padding = numpy.array([text + [9, 9, 9], [2, 7, 1, 8, 2, 8, 1, 8]])
    assert rm(other_padding, numpy.array([5, 8])).numpy()[0] == pytest.approx(alone, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="lengths"):
        rm(padded, numpy.array([0, 8]))


def test_reward_model_gradcheck_and_init_from_gpt(float64):
    minillm.manual_seed(1)
    gpt = GPT(GPTConfig(**CONFIG))
    rm = RewardModel.from_gpt(gpt)
    numpy.testing.assert_array_equal(rm.transformer.wte.weight.numpy(), gpt.wte.weight.numpy())
    assert rm.transformer.lm_head is None and rm(numpy.array([[1, 2]]), numpy.array([2])).numpy()[0] == 0.0
    rm.score_head.weight.data[...] = backend.asarray(numpy.random.default_rng(2).standard_normal((8, 1)))
    ids, lengths = numpy.array([[1, 2, 3, 0], [4, 5, 6, 7]]), numpy.array([3, 4])
    chosen, rejected = numpy.array([[1, 2, 3, 0]]), numpy.array([[1, 2, 9, 9]])

    def loss(*_):
        both = rm(numpy.concatenate([chosen, rejected]), numpy.array([3, 4]))  # one batched pass
        return pairwise_loss_stable(both[:1], both[1:])

    assert gradcheck(loss, rm.parameters(), atol=1e-6, rtol=1e-5)
    assert rm(ids, lengths).shape == (2,)
