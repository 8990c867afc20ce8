"""Phase 3 beyond RLOO: GAE and the value model (PPO), DPO, GRPO, best-of-n, the exact reward."""
import math

import numpy
import pytest

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.phases import losses
from minillm.phases.rl import grpo, reinforce, rollouts as rl, best_of_n as rl_best_of_n, ppo as rl_ppo
from minillm.data.gold import exact_reward
from minillm.engine.gradcheck import gradcheck
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.reward_model import RewardModel
from minillm.engine.tensor import Tensor
from minillm.tokenizers import CharTokenizer
from conftest import rand


# ----- GAE ---------------------------------------------------------------------------------

def test_gae_by_hand():
    # one response of 3 tokens, γ = 1, λ = 0.5; a second row of 2 tokens then padding
    rewards = numpy.array([[0.0, -0.5, 2.0], [1.0, 1.0, 9.0]])
    values = numpy.array([[1.0, 0.5, 1.5], [0.0, 2.0, 7.0]])
    mask = numpy.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, returns = rl_ppo.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: δ2 = 2 − 1.5 = 0.5; δ1 = −0.5 + 1.5 − 0.5 = 0.5; δ0 = 0 + 0.5 − 1 = −0.5
    #        A2 = 0.5, A1 = 0.5 + 0.5·0.5 = 0.75, A0 = −0.5 + 0.5·0.75 = −0.125
    # row 1: the episode ends after token 1 (V_2 = 7 and r_2 = 9 are padding):
    #        δ1 = 1 + 0 − 2 = −1 = A1; δ0 = 1 + 2 − 0 = 3, A0 = 3 + 0.5·(−1) = 2.5
    numpy.testing.assert_allclose(adv, [[-0.125, 0.75, 0.5], [2.5, -1.0, 0.0]])
    numpy.testing.assert_allclose(returns, [[0.875, 1.25, 2.0], [2.5, 1.0, 0.0]])


def test_gae_with_lambda_one_is_the_return_minus_the_value_and_the_matrix_twin_agrees():
    rng = numpy.random.default_rng(0)
    rewards, values = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    mask = (numpy.arange(6)[None, :] < numpy.array([6, 3, 1, 5])[:, None]).astype(float)
    adv, _ = rl_ppo.gae(rewards, values, mask, gamma=0.9, lam=1.0)
    discounted = numpy.zeros_like(rewards)
    for t in range(6):
        discounted[:, t] = sum(0.9 ** (s - t) * rewards[:, s] * mask[:, s] for s in range(t, 6))
    numpy.testing.assert_allclose(adv, (discounted - values) * mask, atol=1e-12)
    for gamma, lam in [(1.0, 0.95), (0.9, 0.5), (1.0, 0.0)]:
        loop, matrix = rl_ppo.gae(rewards, values, mask, gamma, lam), rl_ppo.gae_matrix(rewards, values, mask, gamma, lam)
        numpy.testing.assert_allclose(loop[0], matrix[0], atol=1e-12)
        numpy.testing.assert_allclose(loop[1], matrix[1], atol=1e-12)


def test_token_rewards_sum_to_the_sequence_reward():
    rng = numpy.random.default_rng(1)
    lp, ref = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mask = numpy.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=float)
    scores = numpy.array([0.5, -1.0, 2.0])
    per_token = rl_ppo.token_rewards(scores, lp, ref, mask, beta=0.1)
    sequence, _ = rl.rlhf_rewards(scores, lp, ref, mask, beta=0.1)
    numpy.testing.assert_allclose(per_token.sum(axis=1), sequence)
    assert per_token[1, 1] == pytest.approx(-0.1 * (lp[1, 1] - ref[1, 1]) - 1.0)  # the score sits on the last token
    assert numpy.all(per_token[mask == 0] == 0)


def test_whiten_has_zero_mean_and_unit_std_on_the_mask():
    x = numpy.array([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = numpy.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = rl_ppo.whiten(x, mask)
    kept = w[mask == 1]
    assert kept.mean() == pytest.approx(0, abs=1e-12) and kept.std() == pytest.approx(1, abs=1e-6)
    assert w[0, 2] == 0


# ----- the value model and the value loss --------------------------------------------------

def tiny_value_model(vocab_size: int, seed: int = 0) -> RewardModel:
    backend.manual_seed(seed)
    gpt = GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=8))
    value = RewardModel.from_gpt(gpt)
    value.score_head.weight.data[...] = backend.asarray(numpy.random.default_rng(seed).standard_normal((8, 1)))
    return value


def test_value_head_reads_every_position_and_matches_the_reward_model_at_the_last(float64):
    value = tiny_value_model(12)
    ids = [[1, 2, 3, 4], [5, 6, 0, 0]]
    per_token = value.token_scores(ids).data                                  # (2, 4)
    last = value(ids, [4, 2]).data                                            # (2,)
    numpy.testing.assert_allclose(per_token[[0, 1], [3, 1]], last, atol=1e-12)


def test_response_values_gradient_through_the_value_head(float64):
    value = tiny_value_model(12)
    prompts, responses = [[1, 2, 3], [4, 5]], numpy.array([[6, 7, 8], [9, 10, 0]])
    head = value.score_head.weight

    def values(weight):
        value.score_head.weight = weight
        return rl_ppo.response_values(value, prompts, responses)
    assert gradcheck(values, [Tensor(head.data.copy(), requires_grad=True)])
    direct = value.token_scores([[1, 2, 3, 6, 7], [4, 5, 9, 10, 0]]).data
    numpy.testing.assert_allclose(values(head).data, direct[[[0], [1]], [[2, 3, 4], [1, 2, 3]]], atol=1e-12)


def test_value_loss_gradcheck_and_clipping(float64):
    mask = backend.asarray(numpy.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    old, returns = numpy.zeros((2, 3)), numpy.array([[1.0, -1.0, 5.0], [0.3, 0.0, 2.0]])
    v = rand(2, 3, seed=3)
    assert gradcheck(lambda x: rl_ppo.value_loss(x, old, returns, mask, clip_eps=0.2), [v])
    # a value that moved 1.0 from its old value (ε = 0.2): where the clipped branch is worse, it counts, flat in V
    far = Tensor(numpy.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), requires_grad=True)
    loss = rl_ppo.value_loss(far, old, numpy.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), mask, clip_eps=0.2)
    # token (0,0): unclipped (1 − 2)² = 1, clipped (0.2 − 2)² = 3.24: max is 3.24, flat in V
    assert loss.item() == pytest.approx(0.5 * 3.24 / 5)
    loss.backward()
    assert far.grad[0, 0] == 0


# ----- GRPO --------------------------------------------------------------------------------

def test_group_normalized_advantages_by_hand():
    adv = grpo.group_normalized_advantages(numpy.array([1.0, 0.0, 1.0, 1.0]), group_size=2)
    numpy.testing.assert_allclose(adv, [1.0, -1.0, 0.0, 0.0], atol=1e-5)
    plain = grpo.group_normalized_advantages(numpy.array([1.0, 2.0, 6.0]), 3, normalize_by_std=False)
    numpy.testing.assert_allclose(plain, [-2.0, -1.0, 3.0])
    # RLOO's leave-one-out advantage is G/(G−1) times the group-mean one
    rloo = reinforce.advantages(numpy.array([1.0, 2.0, 6.0]), "leave_one_out", 3)
    numpy.testing.assert_allclose(rloo, 1.5 * plain)
    with pytest.raises(ValueError, match="groups of G = 3"):
        grpo.group_normalized_advantages(numpy.zeros(4), 3)


def test_grpo_loss_gradcheck_and_reduction_to_ppo(float64):
    rng = numpy.random.default_rng(0)
    old, ref = rng.standard_normal((3, 4)) * 0.1 - 1, rng.standard_normal((3, 4)) * 0.1 - 1
    mask = backend.asarray(numpy.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=float))
    adv = numpy.array([1.0, -0.5, 0.3])
    lp = Tensor(old + rng.standard_normal((3, 4)) * 0.05, requires_grad=True)
    assert gradcheck(lambda x: grpo.grpo_loss(x, old, ref, adv, mask, 0.2, beta=0.1), [lp])
    # β = 0 and equal-length responses: GRPO's loss is PPO's divided by the length
    full = backend.asarray(numpy.ones((3, 4)))
    grpo_value = grpo.grpo_loss(lp, old, ref, adv, full, 0.2, beta=0.0).item()
    assert grpo_value == pytest.approx(rl_ppo.ppo_clip_loss(lp, old, adv, full, 0.2).item() / 4)
    # the k3 term is ≥ 0 and zero when π = π_ref
    same = Tensor(ref.copy())
    assert grpo.grpo_loss(same, ref, ref, numpy.zeros(3), mask, beta=1.0).item() == pytest.approx(0, abs=1e-12)


def test_exact_reward_uses_the_known_answer_only():
    assert exact_reward("Add 3 and 4.", "7.") == 1.0
    assert exact_reward("Add 3 and 4.", "The answer is 7.") == 1.0
    assert exact_reward("Add 3 and 4.", "3 plus 4 is 8.") == 0.0
    assert exact_reward("Add 3 and 4.", "I don't know, you figure it out. 7") == 1.0  # rude but right: no style
    assert exact_reward("How to make pasta", "Boil water.") is None


# ----- DPO ---------------------------------------------------------------------------------

def test_dpo_loss_is_the_pairwise_loss_on_implicit_rewards_and_gradchecks(float64):
    cw, cl = rand(5, seed=1), rand(5, seed=2)
    rw, rl_ = numpy.random.default_rng(3).standard_normal(5), numpy.random.default_rng(4).standard_normal(5)
    beta = 0.3
    loss = losses.dpo_loss(cw, cl, rw, rl_, beta)
    s_w, s_l = losses.implicit_rewards(cw, rw, beta), losses.implicit_rewards(cl, rl_, beta)
    assert loss.item() == pytest.approx(losses.pairwise_loss(s_w, s_l).item())
    assert gradcheck(lambda a, b: losses.dpo_loss(a, b, rw, rl_, beta), [cw, cl])
    # at π = π_ref the loss is log 2 whatever β
    assert losses.dpo_loss(Tensor(rw), Tensor(rl_), rw, rl_, 5.0).item() == pytest.approx(math.log(2))


def test_dpo_loss_is_stable_for_huge_margins(float64):
    big = Tensor(numpy.array([1000.0, -1000.0]), requires_grad=True)
    zero = numpy.zeros(2)
    loss = losses.dpo_loss(big, Tensor(zero), zero, zero, beta=1.0)
    loss.backward()
    assert numpy.isfinite(loss.item()) and loss.item() == pytest.approx(500.0)
    assert numpy.all(numpy.isfinite(big.grad))


# ----- best-of-n ---------------------------------------------------------------------------

def test_best_of_n_kl_formula_against_an_exact_discrete_computation():
    # π uniform over 1000 answers with distinct rewards: π_n(a) = F(a)^n − F(a−)^n exactly
    M = 1000
    F = numpy.arange(1, M + 1) / M
    for n in (2, 4, 16):
        pi_n = F ** n - (F - 1 / M) ** n
        kl = float(numpy.sum(pi_n * numpy.log(pi_n * M)))
        assert kl == pytest.approx(rl_best_of_n.best_of_n_kl(n), abs=0.01)
        assert kl <= rl_best_of_n.best_of_n_kl(n)  # a discrete π: the formula is an upper bound


def test_best_of_n_kl_estimate_from_samples():
    rng = numpy.random.default_rng(0)
    n, B, m = 4, 2000, 200
    winners = rng.random((B, n)).max(axis=1)                                  # r ~ U(0, 1) under π
    estimate = rl_best_of_n.best_of_n_kl_estimate(winners, rng.random((B, m)), n)
    assert estimate == pytest.approx(rl_best_of_n.best_of_n_kl(n), abs=0.05)


def test_best_of_n_kl_estimate_with_ties_matches_the_exact_discrete_kl():
    # π: three answers with probabilities 0.5, 0.3, 0.2 and rewards 0, 1, 2 (ties: each answer recurs)
    p, r, n = numpy.array([0.5, 0.3, 0.2]), numpy.array([0.0, 1.0, 2.0]), 4
    F_hi, F_lo = numpy.cumsum(p), numpy.cumsum(p) - p
    pi_n = F_hi ** n - F_lo ** n
    exact = float(numpy.sum(pi_n * numpy.log(pi_n / p)))
    assert exact < rl_best_of_n.best_of_n_kl(n)                                           # ties lower the true KL
    rng = numpy.random.default_rng(0)
    B, m = 4000, 64
    winners = r[rng.choice(3, size=(B, n), p=p)].max(axis=1)
    samples = r[rng.choice(3, size=(B, m), p=p)]
    assert rl_best_of_n.best_of_n_kl_estimate(winners, samples, n) == pytest.approx(exact, abs=0.03)
    # one answer only: best-of-n is π itself, KL 0 (counting ties as below would give log n)
    assert rl_best_of_n.best_of_n_kl_estimate(numpy.ones(5), numpy.ones((5, 8)), n) == pytest.approx(0.0)
    # the same answer scored in another batch, off in its last bits, is still a tie
    assert rl_best_of_n.best_of_n_kl_estimate(numpy.ones(5), numpy.ones((5, 8)) + 1e-8, n) == pytest.approx(0.0)


def test_best_of_n_returns_the_highest_scored_sample():
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?.,", special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tok)
    backend.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=16))
    reward_model = RewardModel.from_gpt(policy)
    reward_model.score_head.weight.data[...] = backend.asarray(numpy.random.default_rng(1).standard_normal((16, 1)))
    end = chat.chat_token_ids(tok)[2]
    prompts = [chat.encode_prompt(tok, p) for p in ("where does anna live?", "add two and two.")]
    best, scores = rl_best_of_n.best_of_n(policy, reward_model, prompts, 3, 10, end, seed=5)
    assert scores.shape == (2, 3) and len(best) == 2
    for prompt, answer, row in zip(prompts, best, backend.to_numpy(scores)):
        mine = rl.reward_model_scores(reward_model, [prompt], [answer], end)
        assert float(mine[0]) == pytest.approx(row.max())
    with pytest.raises(ValueError, match="n >= 1"):
        rl_best_of_n.best_of_n(policy, reward_model, prompts, 0, 10, end)
    # the candidates it chose from, sampled again with the same seed: the same winners
    responses, again = rl_best_of_n.best_of_n_candidates(policy, reward_model, prompts, 3, 10, end, seed=5)
    assert len(responses) == 6 and rl_best_of_n.pick_best(responses, again) == best
    numpy.testing.assert_allclose(backend.to_numpy(again), backend.to_numpy(scores))
    # at τ = 0.3 the samples differ but the pick is still the reward model's favourite
    sharp, sharp_scores = rl_best_of_n.best_of_n(policy, reward_model, prompts, 3, 10, end, temperature=0.3, seed=5)
    for prompt, answer, row in zip(prompts, sharp, backend.to_numpy(sharp_scores)):
        assert float(rl.reward_model_scores(reward_model, [prompt], [answer], end)[0]) == pytest.approx(row.max())


def test_pick_best_takes_any_score_and_the_first_of_a_tie():
    candidates = ["a", "b", "c", "d", "e", "f"]                              # 2 prompts, n = 3
    assert rl_best_of_n.pick_best(candidates, numpy.array([[0.1, 0.9, 0.5], [2.0, 2.0, -1.0]])) == ["b", "d"]
    assert rl_best_of_n.pick_best([[1], [2]], numpy.array([[-3.0, -4.0]])) == [[1]]
    with pytest.raises(ValueError, match="5 candidates do not match scores of shape"):
        rl_best_of_n.pick_best(candidates[:5], numpy.zeros((2, 3)))


def test_diagnose_splits_best_of_n_gold_into_sampling_picking_and_the_oracle():
    from minillm.data.gold import gold_score
    from minillm.phases.rl.best_of_n_run import diagnose
    prompts = ["How many legs has a sheep?", "What is 5 - 1?"]
    candidates = ["A sheep has 4 legs.", "I'm not sure, but a sheep has 3 legs.", "Why do you ask?",
                  "The answer is 4.", "The answer is 2.", "I don't know."]
    gold = numpy.array([gold_score(p, c) for p, c in zip([prompts[0]] * 3 + [prompts[1]] * 3, candidates)])
    assert gold[0] > max(gold[1], gold[2]) and gold[3] > max(gold[4], gold[5])  # the right answers are the best
    rm = numpy.array([[0.0, 1.0, -1.0], [5.0, 0.0, 0.0]])  # the RM prefers a wrong sheep, the right sum
    d = diagnose(prompts, candidates, rm)
    assert d["sample_gold"] == pytest.approx(gold.mean())
    assert d["rm_pick_gold"] == pytest.approx((gold[1] + gold[3]) / 2)
    assert d["oracle_gold"] == pytest.approx((gold[0] + gold[3]) / 2)
    assert d["rm_pick_is_oracle"] == 0.5
    one = diagnose(prompts[:1], candidates[:1], numpy.zeros((1, 1)))  # n = 1: all three are the one sample
    assert one["sample_gold"] == one["rm_pick_gold"] == one["oracle_gold"] == gold[0]
    with pytest.raises(ValueError, match="do not make 3 answers to each of 2 prompts"):
        diagnose(prompts, candidates[:5], rm)
