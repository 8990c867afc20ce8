"""Phase 3 RLHF mathematics: the policy-gradient estimator, baselines, PPO's clip, the KL term.

Statistical tests use fixed seeds and compare with the analytic value within 4 standard errors
(the estimate is deterministic for a given seed; 4 SE makes a false alarm from a changed but
correct implementation about a 1-in-15,000 event per component).
"""
import numpy
import pytest

import minillm
from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.phases.rl import grpo, ppo as rl_ppo, reinforce, rollouts as rl
from minillm.model import functional as F
from minillm.model.sampling import response_log_softmax, response_logprobs, sequence_logprobs
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.reward_model import RewardModel
from minillm.engine.tensor import Tensor
from minillm.tokenizers import CharTokenizer


# ----- a toy bandit: one prompt, one-token responses, a softmax policy over 5 actions --------

THETA = numpy.array([0.3, -0.2, 0.8, 0.0, -0.5])
REWARDS = numpy.array([5.0, 5.5, 6.0, 4.0, 5.2])  # a large common offset: baselines matter


def bandit_pi():
    p = numpy.exp(THETA - THETA.max())
    return p / p.sum()


def analytic_gradient():
    """∇_θ J for J(θ) = Σ_a π_a r_a with π = softmax(θ): ∂J/∂θ_k = π_k (r_k − J)."""
    pi = bandit_pi()
    return pi * (REWARDS - pi @ REWARDS)


def estimated_gradients(baseline: str, n: int, batches: int, seed: int = 0) -> numpy.ndarray:
    """One REINFORCE estimate of ∇J per batch of n samples, computed by the library's loss."""
    rng = numpy.random.default_rng(seed)
    estimates = []
    for _ in range(batches):
        actions = rng.choice(len(THETA), size=n, p=bandit_pi())
        theta = Tensor(THETA.copy(), requires_grad=True)
        logprobs = F.log_softmax(theta)[actions].reshape(n, 1)        # (n, 1): one-token responses
        adv = reinforce.advantages(REWARDS[actions], baseline, group_size=n)
        reinforce.reinforce_loss(logprobs, adv, numpy.ones((n, 1))).backward()
        estimates.append(-backend.to_numpy(theta.grad))               # the loss is −J's estimate
    return numpy.array(estimates)                                     # (batches, 5)


def assert_mean_close(estimates, expected):
    mean = estimates.mean(axis=0)
    se = estimates.std(axis=0, ddof=1) / numpy.sqrt(len(estimates))
    assert numpy.all(numpy.abs(mean - expected) <= 4 * se), (mean, expected, se)


def test_reinforce_without_baseline_is_unbiased(float64):
    assert_mean_close(estimated_gradients("none", n=16, batches=400), analytic_gradient())


def test_leave_one_out_baseline_keeps_the_mean_and_cuts_the_variance(float64):
    plain = estimated_gradients("none", n=16, batches=400)
    rloo = estimated_gradients("leave_one_out", n=16, batches=400, seed=1)
    assert_mean_close(rloo, analytic_gradient())
    total_variance = lambda e: e.var(axis=0, ddof=1).sum()  # noqa: E731
    # measured: about 0.02 here; 0.25 leaves room for the ~10% error of a 400-batch variance estimate
    assert total_variance(rloo) < 0.25 * total_variance(plain)


def test_batch_mean_baseline_shrinks_the_gradient_by_one_over_n(float64):
    # b includes the sample's own reward: E[(R_i − b)∇log π] = (1 − 1/N)∇J. With N = 2 that is half.
    n = 2
    shrunk = estimated_gradients("mean", n=n, batches=1500)
    assert_mean_close(shrunk, (1 - 1 / n) * analytic_gradient())
    se = shrunk.std(axis=0, ddof=1) / numpy.sqrt(len(shrunk))
    assert numpy.max(numpy.abs(shrunk.mean(axis=0) - analytic_gradient()) / se) > 10  # clearly not ∇J
    assert_mean_close(estimated_gradients("leave_one_out", n=n, batches=1500, seed=2), analytic_gradient())


def test_leave_one_out_baseline_by_hand_and_per_prompt():
    R = numpy.array([1.0, 2.0, 6.0, 10.0, 10.0, 13.0])                  # 2 prompts × G = 3
    numpy.testing.assert_allclose(reinforce.leave_one_out_baseline(R, 3), [4, 3.5, 1.5, 11.5, 11.5, 10])
    adv = reinforce.advantages(R, "leave_one_out", 3)
    numpy.testing.assert_allclose(adv.reshape(2, 3).sum(axis=1), 0, atol=1e-12)  # zero-mean per prompt
    with pytest.raises(ValueError, match="G >= 2"):
        reinforce.leave_one_out_baseline(R, 1)
    normed = reinforce.advantages(R, "mean", normalize=True)
    assert abs(normed.mean()) < 1e-12 and abs(normed.std() - 1) < 1e-6


# ----- PPO's clipped surrogate ----------------------------------------------------------

def ppo_grad(ratios, adv, eps=0.2):
    old = numpy.log(numpy.full((1, len(ratios)), 0.5))
    logprobs = Tensor(old + numpy.log(numpy.array(ratios))[None, :], requires_grad=True)
    rl_ppo.ppo_clip_loss(logprobs, old, numpy.array([adv]), numpy.ones((1, len(ratios))), eps).backward()
    return logprobs.grad[0]


def test_ppo_gradient_is_zero_past_the_clip_on_the_side_the_advantage_pushes(float64):
    ratios = [1.5, 0.5, 1.1, 0.9]
    g = ppo_grad(ratios, adv=2.0)     # A > 0 pushes ρ up: ρ = 1.5 > 1.2 is done, ρ = 0.5 is not
    assert g[0] == 0 and numpy.all(g[1:] != 0)
    numpy.testing.assert_allclose(g[1:], -2.0 * numpy.array(ratios[1:]))  # d(−ρA)/d log π = −ρA
    g = ppo_grad(ratios, adv=-2.0)    # A < 0 pushes ρ down: ρ = 0.5 < 0.8 is done
    assert g[1] == 0 and numpy.all(g[[0, 2, 3]] != 0)
    adv = numpy.array([2.0])
    lp = numpy.log(numpy.array([[1.5, 0.5, 1.1, 0.9]]))
    assert rl_ppo.clip_fraction(lp, numpy.zeros((1, 4)), adv, numpy.ones((1, 4))) == 0.25


def tiny_model(vocab_size, seed=0, block_size=64):
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16))


def chat_tokenizer():
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?.,", special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tok)
    return tok


def toy_rollouts(policy, reference=None, group_size=3, max_new_tokens=12, seed=1):
    tok = chat_tokenizer()
    prompts = [chat.encode_prompt(tok, p) for p in ["where does anna live?", "add two and two."]]
    return rl.sample_rollouts(policy, reference or policy, prompts, group_size, max_new_tokens,
                              chat.chat_token_ids(tok).end, seed=seed)


def parameter_grads(model, loss):
    for p in model.parameters():
        p.grad = None
    loss.backward()
    return [p.grad.copy() for p in model.parameters()]


def test_ppo_equals_reinforce_at_ratio_one_through_a_model(float64):
    model = tiny_model(chat_tokenizer().vocab_size)
    ro = toy_rollouts(model)
    adv = numpy.linspace(-1, 1, len(ro.prompt_ids))
    lp = lambda: response_logprobs(model, ro.prompt_ids, ro.response_ids)  # noqa: E731
    g_reinforce = parameter_grads(model, reinforce.reinforce_loss(lp(), adv, ro.response_mask))
    g_ppo = parameter_grads(model, rl_ppo.ppo_clip_loss(lp(), ro.logp, adv, ro.response_mask))
    for a, b in zip(g_reinforce, g_ppo):
        numpy.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


# ----- the KL term and the rollouts ------------------------------------------------------

def test_kl_is_zero_for_the_reference_itself_and_positive_for_another_policy(float64):
    tok = chat_tokenizer()
    policy = tiny_model(tok.vocab_size)
    ro = toy_rollouts(policy)
    numpy.testing.assert_allclose(rl.kl_penalty(ro.logp, ro.ref_logp, ro.response_mask), 0, atol=1e-12)
    other = tiny_model(tok.vocab_size, seed=5)
    ro = toy_rollouts(policy, reference=other)
    logp = response_log_softmax(policy, ro.prompt_ids, ro.response_ids)
    same = rl.exact_kl(logp, logp, ro.response_mask)
    different = rl.exact_kl(logp, response_log_softmax(other, ro.prompt_ids, ro.response_ids), ro.response_mask)
    assert numpy.all(same == 0) and numpy.all(different > 0)


def test_sampled_kl_estimates_the_exact_kl(float64):
    # E_{a~p}[log p(a) − log q(a)] = KL(p ‖ q), on the bandit's softmax against a uniform reference
    p, q = bandit_pi(), numpy.full(5, 0.2)
    a = numpy.random.default_rng(0).choice(5, size=20000, p=p)
    samples = rl.kl_penalty(numpy.log(p[a])[:, None], numpy.log(q[a])[:, None], numpy.ones((20000, 1)))
    exact = rl.exact_kl(numpy.log(p)[None, None, :], numpy.log(q)[None, None, :], numpy.ones((1, 1)))[0]
    assert abs(samples.mean() - exact) <= 4 * samples.std() / numpy.sqrt(len(samples))
    assert rl.kl_penalty(numpy.log(p[a])[:2, None], numpy.log(q[a])[:2, None], numpy.ones((2, 1))) \
        == pytest.approx(numpy.log(p[a[:2]]) - numpy.log(q[a[:2]]))


def test_rollout_logprobs_equal_a_fresh_forward_pass_and_padding_never_counts():
    tok = chat_tokenizer()
    end = chat.chat_token_ids(tok).end
    model = tiny_model(tok.vocab_size)
    ro = toy_rollouts(model, group_size=8, max_new_tokens=30, seed=3)
    responses = ro.responses()
    assert any(r[-1] == end for r in responses) and any(len(r) == 30 for r in responses)  # both endings occur
    fresh = sequence_logprobs(model, ro.prompt_ids, responses)
    for row, (lp, r) in enumerate(zip(fresh, responses)):
        n = len(r)
        assert end not in r[:-1] and (n == 30 or r[-1] == end)      # ends at <|end|> (kept) or the limit
        numpy.testing.assert_allclose(ro.logp[row, :n], lp, atol=1e-5)
        assert numpy.all(ro.logp[row, n:] == 0) and numpy.all(ro.response_mask[row, n:] == 0)
    batched = response_logprobs(model, ro.prompt_ids, ro.response_ids).data
    numpy.testing.assert_allclose(batched * ro.response_mask, ro.logp, atol=1e-5)
    # Tokens after the end change nothing: the masked log-probs (hence every loss) stay the same.
    scrambled = ro.response_ids.copy()
    scrambled[ro.response_mask == 0] = 7
    again = response_logprobs(model, ro.prompt_ids, scrambled).data * ro.response_mask
    numpy.testing.assert_allclose(again, batched * ro.response_mask, atol=1e-6)


def test_reward_model_reads_prompt_response_and_end():
    tok = chat_tokenizer()
    end = chat.chat_token_ids(tok).end
    backend.manual_seed(0)
    rm = RewardModel(GPTConfig(vocab_size=tok.vocab_size, block_size=40, n_layer=1, n_head=2, n_embd=16))
    rm.score_head.weight.data[...] = backend.get_rng().standard_normal(rm.score_head.weight.shape)
    prompt = chat.encode_prompt(tok, "where does anna live?")
    cut, ended = tok.encode("in river"), tok.encode("rivertown.") + [end]
    scores = rl.reward_model_scores(rm, [prompt, prompt], [cut, ended], end)
    one = lambda ids: rm([ids], [len(ids)]).data[0]  # noqa: E731
    assert float(scores[0]) == pytest.approx(float(one(prompt + cut + [end])), abs=1e-5)  # <|end|> appended
    assert float(scores[1]) == pytest.approx(float(one(prompt + ended)), abs=1e-5)       # not doubled


def test_rewards_subtract_beta_times_kl_and_the_adaptive_controller_follows_its_formula():
    scores = numpy.array([1.0, 2.0])
    lp, ref, mask = numpy.array([[-1.0, -2.0], [-1.0, 0.0]]), numpy.array([[-2.0, -2.0], [-1.5, -9.0]]), \
        numpy.array([[1.0, 1.0], [1.0, 0.0]])
    R, kl = rl.rlhf_rewards(scores, lp, ref, mask, beta=0.1)
    numpy.testing.assert_allclose(kl, [1.0, 0.5])
    numpy.testing.assert_allclose(R, [0.9, 1.95])
    c = rl.KLController(beta=0.1, target=5.0, horizon=100)
    assert c.update(kl=10.0, n=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))   # error clipped at +0.2
    assert c.update(kl=4.0, n=10) == pytest.approx(0.1 * 1.02 * (1 - 0.2 * 10 / 100))
    assert rl.KLController(beta=0.1).update(kl=99.0, n=10) == 0.1                   # fixed β


# ----- gradient checks ------------------------------------------------------------------

def test_reinforce_and_ppo_losses_gradcheck(float64):
    rng = numpy.random.default_rng(0)
    mask = numpy.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = numpy.array([0.7, -1.3])
    logprobs = Tensor(-rng.uniform(0.5, 2.0, (2, 3)), requires_grad=True)
    minillm.gradcheck(lambda lp: reinforce.reinforce_loss(lp, adv, mask), [logprobs])
    # ratios 0.5, 0.9, 1.1, 1.5 and others: all away from the kinks at 1 ± ε
    old = backend.to_numpy(logprobs.data) - numpy.log(numpy.array([[0.5, 0.9, 1.0], [1.1, 1.5, 0.95]]))
    minillm.gradcheck(lambda lp: rl_ppo.ppo_clip_loss(lp, old, adv, mask), [logprobs])


def test_both_losses_through_the_model_gradcheck(float64):
    model = tiny_model(chat_tokenizer().vocab_size)
    ro = toy_rollouts(model, group_size=2, max_new_tokens=4)
    adv = numpy.array([0.5, -1.0, 2.0, 0.1])
    lp = lambda: response_logprobs(model, ro.prompt_ids, ro.response_ids)  # noqa: E731
    params = [model.ln_f.weight, model.h[1].attn.c_proj.bias]
    minillm.gradcheck(lambda *_: reinforce.reinforce_loss(lp(), adv, ro.response_mask), params)
    old = ro.logp + backend.asarray(0.05 * numpy.sign(adv))[:, None]  # ρ ≈ 0.95 or 1.05: inside the clip range
    minillm.gradcheck(lambda *_: rl_ppo.ppo_clip_loss(lp(), old, adv, ro.response_mask), params)
