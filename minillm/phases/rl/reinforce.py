"""REINFORCE and RLOO: the score-function gradient with a baseline, one step per batch.

Lecture 5 §Phase 3: sample responses y ~ π, form the rewards R = r − β·KL
(phases/rl/rollouts.py), subtract a baseline b that does not depend on the response, and
descend L = −(1/N) Σ_i (R_i − b_i)·log π(y_i | x_i). `reinforce` takes b as the batch mean,
`rloo` as the mean of the same prompt's other samples (leave-one-out). PPO's `ppo-seq`
reuses RLOO's advantages with the clipped surrogate (phases/rl/ppo.py).
"""
from __future__ import annotations

from minillm.phases.rl.rollouts import masked_sum
from minillm.engine.tensor import Tensor


# ----- baselines and advantages ---------------------------------------------------------

def batch_mean_baseline(rewards):
    """b = (1/N) Σ_j R_j for every row, (N,) -> (N,).

    Because b includes the row's own reward, E[(R_i − b)·∇log π(y_i)] = (1 − 1/N)·∇J: the
    estimator is shrunk by 1/N (harmless for large N). `leave_one_out_baseline` removes that.
    """
    return rewards * 0 + rewards.mean()


def leave_one_out_baseline(rewards, group_size: int):
    """RLOO: b_i = (1/(G−1)) Σ_{j≠i, same prompt} R_j, (N,) -> (N,) with N = B·G.

    b_i does not depend on y_i, so E[(R_i − b_i)·∇log π(y_i)] = ∇J exactly (no bias), and it
    is a baseline per prompt: an easy prompt's high rewards do not count as good actions.
    Example (G = 3): R = [1, 2, 6] -> b = [4, 3.5, 1.5].
    """
    if group_size < 2:
        raise ValueError(f"the leave-one-out baseline needs G >= 2 samples per prompt, got {group_size}")
    grouped = rewards.reshape(-1, group_size)                                   # (N,) -> (B, G)
    others = grouped.sum(axis=1, keepdims=True) - grouped
    return (others / (group_size - 1)).reshape(-1)                             # (B, G) -> (N,)


def advantages(rewards, baseline: str, group_size: int = 1, normalize: bool = False):
    """A = R − b, with b from `batch_mean_baseline` ("mean"), `leave_one_out_baseline`
    ("leave_one_out") or no baseline ("none": plain REINFORCE, which lesson 09's bandit compares
    with the other two, and the unbiasedness test checks); normalize: A ← (A − mean A) / (std A + 1e-8),
    which fixes the step size whatever the reward scale (and biases the estimator slightly)."""
    if baseline == "mean":
        adv = rewards - batch_mean_baseline(rewards)
    elif baseline == "leave_one_out":
        adv = rewards - leave_one_out_baseline(rewards, group_size)
    elif baseline == "none":
        adv = rewards * 1.0
    else:
        raise ValueError(f"unknown baseline {baseline!r}: expected mean, leave_one_out or none")
    if normalize:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv


# ----- the policy-gradient loss ---------------------------------------------------------

def reinforce_loss(logp: Tensor, adv, mask) -> Tensor:
    """L = −(1/N) Σ_i A_i · Σ_t m_it · log π(y_it | x_i, y_i<t): REINFORCE with a baseline.

    Its gradient, −(1/N) Σ_i A_i ∇log π(y_i | x_i), is the score-function estimate of −∇J:
    descending it raises the probability of responses that beat their baseline (A > 0) and
    lowers the rest. A is a constant here (no gradient flows into the rewards).

    Args:
        logp: (N, T) Tensor of log π(y_t), differentiable.
        adv: (N,) advantages. mask: (N, T) response mask.
    """
    N = logp.shape[0]
    sequence_logp = masked_sum(logp, mask, axis=-1)                           # (N, T) -> (N,)
    return -(sequence_logp * adv).sum() * (1.0 / N)


# ----- what the RL loop calls (phases/rl/rlhf.py's table) -------------------------------

def reinforce_targets(models, ro, scored: dict, cfg, beta: float) -> dict:
    """REINFORCE's advantages: A = R − mean(R) over the batch (normalised when cfg.normalize_adv)."""
    return {"adv": advantages(scored["rewards"], "mean", cfg.group_size, cfg.normalize_adv)}


def rloo_targets(models, ro, scored: dict, cfg, beta: float) -> dict:
    """RLOO's advantages: A = R − the mean of the prompt's other samples (the batch mean when G = 1)."""
    baseline = "leave_one_out" if cfg.group_size >= 2 else "mean"
    return {"adv": advantages(scored["rewards"], baseline, cfg.group_size, cfg.normalize_adv)}


def policy_loss(logp: Tensor, mb, adv, cfg, beta: float) -> Tensor:
    """`reinforce_loss` of a batch of rollouts `mb`: logp (N, T), adv (N,)."""
    return reinforce_loss(logp, adv, mb.response_mask)
