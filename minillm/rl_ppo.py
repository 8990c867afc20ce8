"""PPO's clipped surrogate: reuse one batch of rollouts for several gradient steps, safely.

Lecture 5 §Phase 3 (Schulman et al. 2017; Ouyang et al. 2022 used it for InstructGPT):
REINFORCE may take one step per batch of samples, because after the step the samples come
from an older policy π_old. PPO reweights each token by ρ = π(y_t)/π_old(y_t) and clips ρ to
[1−ε, 1+ε], so the loss stops pulling once a token's probability has moved far enough in the
direction its advantage asks for. rl.py has the rollouts, rewards and baselines.
Left out: the value head and GAE (advantages are per sequence, shared by its tokens), value
clipping, early stopping on approximate KL.
"""
from __future__ import annotations

from minillm import backend
from minillm.rl import masked_mean, masked_sum
from minillm.tensor import Tensor, minimum


def ppo_clip_loss(logprobs: Tensor, old_logprobs, adv, mask, clip_eps: float = 0.2) -> Tensor:
    """L = −(1/N) Σ_i Σ_t m_it · min(ρ_it·A_i, clip(ρ_it, 1−ε, 1+ε)·A_i),  ρ_it = π(y_it)/π_old(y_it).

    Summed over a response's tokens and averaged over responses, like `reinforce_loss`, so at
    ρ = 1 (before the first step) the two gradients are equal: ∇ρ = ρ·∇log π = ∇log π.
    A token with A > 0 and ρ > 1+ε (or A < 0 and ρ < 1−ε) gets zero gradient: the min picks
    the clipped term, which is flat in θ.

    Args:
        logprobs: (N, T) Tensor, log π(y_t) under the current weights (differentiable).
        old_logprobs: (N, T) log π_old(y_t) of the policy that sampled (a constant).
        adv: (N,) advantages. mask: (N, T) response mask. clip_eps: ε.
    """
    N = logprobs.shape[0]
    ratio = (logprobs - backend.asarray(old_logprobs)).exp()                 # (N, T) ρ
    A = backend.asarray(adv)[:, None]                                         # (N,) -> (N, 1)
    surrogate = minimum(ratio * A, ratio.clip(1.0 - clip_eps, 1.0 + clip_eps) * A)
    return -masked_sum(surrogate, mask, axis=None) * (1.0 / N)


def clip_fraction(logprobs, old_logprobs, adv, mask, clip_eps: float = 0.2) -> float:
    """The share of response tokens whose gradient the clip switched off (ρ past 1±ε on A's side)."""
    logprobs = logprobs.data if isinstance(logprobs, Tensor) else logprobs
    xp = backend.get_array_module(logprobs)
    ratio = xp.exp(logprobs - xp.asarray(old_logprobs))                       # (N, T)
    A = xp.asarray(adv)[:, None]                                              # (N, 1)
    mask = xp.asarray(mask)
    clipped = ((A > 0) & (ratio > 1 + clip_eps)) | ((A < 0) & (ratio < 1 - clip_eps))
    return float(backend.scalar(masked_mean(clipped.astype(mask.dtype), mask)))


def approx_kl(logprobs, old_logprobs, mask) -> float:
    """How far this update moved the policy: mean over tokens of (ρ − 1) − log ρ (≥ 0, k3 estimator)."""
    logprobs = logprobs.data if isinstance(logprobs, Tensor) else logprobs
    xp = backend.get_array_module(logprobs)
    log_ratio = logprobs - xp.asarray(old_logprobs)                           # (N, T)
    return float(backend.scalar(masked_mean(xp.exp(log_ratio) - 1 - log_ratio, xp.asarray(mask))))


def minibatches(n: int, minibatch_size: int, rng) -> list:
    """A random split of rows 0..n-1 into minibatches of (at most) minibatch_size index arrays."""
    order = rng.permutation(n)
    return [order[i:i + minibatch_size] for i in range(0, n, minibatch_size)]
