"""Best-of-n: the Phase 3 baseline that trains nothing, it only samples and picks.

Lecture 5 §Phase 3 asks for responses the reward model scores high; best-of-n gets them
without moving a weight: sample n responses from the SFT model π, keep the one r(x, y) scores
highest. Its price is n times the sampling, and its distance from π is known in closed form,
KL = log n − (n−1)/n nats without reward ties (`best_of_n_kl`), checked on samples by
`best_of_n_kl_estimate`. Any score can pick (`pick_best`): the gold labeler's gives the
oracle, the ceiling a perfect reward model would reach on the same samples. phases/rl/rollouts.py has the
rollouts and the reward model's scores it builds on.
Left out: rejection sampling finetuning (training on the winners), which is SFT on them.
"""
from __future__ import annotations

import math
from typing import Any

from minillm.engine import backend
from minillm.phases.rl.rollouts import reward_model_scores, sample_rollouts


def best_of_n(policy, reward_model, prompt_ids: list, n: int, max_new_tokens: int, end_id: int,
              temperature: float = 1.0, seed: int | None = None) -> tuple[list[list[int]], Any]:
    """Sample n responses to each prompt, keep the one the reward model scores highest.

    The baseline every RL method must beat: it moves no weight, it only spends n times the
    sampling. Its distribution π_n(y) is π's reweighted toward high reward, and when rewards
    do not tie, KL(π_n ‖ π) = log n − (n − 1)/n (`best_of_n_kl`) whatever π and r are. π is the
    distribution that was sampled: at a temperature τ ≠ 1 that is softmax(z/τ), not the model's own.

    Args:
        prompt_ids: B lists of chat-formatted prompt ids. n: samples per prompt (>= 1).
    Returns:
        (B lists of response ids (the winners, <|end|> kept), (B, n) reward-model scores of all).
    """
    responses, scores = best_of_n_candidates(policy, reward_model, prompt_ids, n, max_new_tokens, end_id,
                                             temperature, seed)
    return pick_best(responses, scores), scores


def best_of_n_candidates(policy, reward_model, prompt_ids: list, n: int, max_new_tokens: int, end_id: int,
                         temperature: float = 1.0, seed: int | None = None) -> tuple[list[list[int]], Any]:
    """The n sampled responses to each prompt that best-of-n chooses from, with their rewards.

    Returns (B·n response id lists, row i answering prompt i // n; (B, n) reward-model scores).
    """
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1 samples per prompt, got {n}")
    ro = sample_rollouts(policy, None, prompt_ids, n, max_new_tokens, end_id, temperature, seed)
    responses = ro.responses()
    scores = reward_model_scores(reward_model, ro.prompt_ids, responses, end_id).reshape(-1, n)  # (B, n)
    return responses, scores


def pick_best(candidates: list, scores) -> list:
    """The highest-scored of each prompt's n candidates: B·n items and (B, n) scores -> B items.

    Any score picks: the reward model's (best-of-n) or the gold labeler's (an oracle, the
    ceiling a perfect reward model would reach on the same samples). A tie goes to the first.
    """
    n = scores.shape[1]
    if len(candidates) != scores.shape[0] * n:
        raise ValueError(f"{len(candidates)} candidates do not match scores of shape {tuple(scores.shape)}")
    best = backend.to_numpy(scores.argmax(axis=1)).tolist()
    return [candidates[i * n + j] for i, j in enumerate(best)]


def best_of_n_kl(n: int) -> float:
    """KL(π_n ‖ π) = log n − (n − 1)/n nats: the closed form for best-of-n without reward ties.

    Derivation: with F the CDF of r(y) under π, π_n(y) = n·F(r(y))^(n−1)·π(y), so
    KL = E_{y~π_n}[log n + (n−1)·log F] and F(r(y)) for y ~ π_n is distributed as U^(1/n),
    whose log has mean −1/n. Ties only lower it (it is an upper bound then).
    """
    return math.log(n) - (n - 1) / n


def best_of_n_kl_estimate(winner_scores, sample_scores, n: int, rtol: float = 1e-5, atol: float = 1e-6) -> float:
    """KL(π_n ‖ π) measured by sampling: the mean over prompts of log π_n(y_best)/π(y_best).

    At a reward r, π_n/π = (F(r)^n − F(r⁻)^n) / (F(r) − F(r⁻)) with F(r) = P(reward ≤ r) and
    F(r⁻) = P(reward < r): n·F(r)^(n−1) where no other answer scores r (then KL = log n +
    (n−1)·E[log F], `best_of_n_kl`), and less where answers tie, down to 1 (KL 0) when every
    sample is the same answer. A sharp π (a low temperature) samples the same answer often, so
    ties matter there. F̂ and the tied share come from m other samples of π to the same prompts:
    winner_scores (B,) the rewards of the best-of-n winners, sample_scores (B, m); scores within
    rtol/atol count as tied (one answer scored in two batches can differ in its last bits), and
    F̂ is floored at 1/m. Checks `best_of_n_kl` on data.
    """
    xp = backend.get_array_module(sample_scores)
    winners = xp.asarray(winner_scores)[:, None]                                 # (B,) -> (B, 1)
    tied = xp.isclose(sample_scores, winners, rtol=rtol, atol=atol)              # (B, m)
    below = ((sample_scores < winners) & ~tied).mean(axis=1)                     # F̂(r⁻), (B,)
    share = tied.mean(axis=1)                                                    # F̂(r) − F̂(r⁻), (B,)
    cdf = xp.maximum(below + share, 1.0 / sample_scores.shape[1])                # F̂(r), (B,)
    ratio = xp.where(share > 0, (cdf ** n - below ** n) / xp.maximum(share, 1e-300), n * cdf ** (n - 1))
    return float(backend.scalar(xp.log(ratio).mean()))
