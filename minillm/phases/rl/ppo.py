"""PPO, the InstructGPT way: per-token rewards, a value model, GAE and the clipped surrogate.

Lecture 5 §Phase 3 (Schulman et al. 2017; Ouyang et al. 2022 used it for InstructGPT):
REINFORCE may take one step per batch of samples, because after the step the samples come
from an older policy π_old. PPO reweights each token by ρ = π(y_t)/π_old(y_t) and clips ρ to
[1−ε, 1+ε], so the loss stops pulling once a token's probability has moved far enough in the
direction its advantage asks for. InstructGPT's PPO also treats every response token as an
action with its own reward r_t = −β·(log π(y_t) − log π_ref(y_t)) (+ the reward model's score
at the last token), learns a value model V_ψ(state) that predicts the return, and turns
rewards and values into per-token advantages by GAE. `ppo-seq` is the clipped surrogate alone,
on RLOO's per-response advantages (phases/rl/reinforce.py). phases/rl/rollouts.py has the
rollouts and rewards; GRPO (phases/rl/grpo.py) reuses the clipped surrogate.
Left out: early stopping on approximate KL, a value head sharing the policy's trunk.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.model.sampling import response_inputs
from minillm.phases.rl.rollouts import masked_mean, masked_sum
from minillm.engine.tensor import Tensor, maximum, minimum, no_grad


# ----- per-token rewards, values and GAE ------------------------------------------------

def token_rewards(scores, logp, ref_logp, mask, beta: float):
    """r_t = −β·(log π(y_t) − log π_ref(y_t)) at every response token, + r(x, y) at the last one.

    The per-token form of `rl.rlhf_rewards`: summed over t it is the same R = r − β·KL, but the
    KL is charged at the token that spent it. scores (N,), the rest (N, T) -> rewards (N, T).
    """
    xp = backend.get_array_module(logp)
    rewards = -beta * (logp - ref_logp) * mask                                  # (N, T)
    last = xp.maximum(mask.sum(axis=1).astype(xp.int64) - 1, 0)                 # (N,) index of y's last token
    rewards[xp.arange(mask.shape[0]), last] += xp.asarray(scores, dtype=rewards.dtype)
    return rewards


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation, by the recursion from the last token back:

        δ_t = r_t + γ·V_{t+1} − V_t,        A_t = δ_t + γλ·A_{t+1},        returns_t = A_t + V_t

    with V_{t+1} = A_{t+1} = 0 past a response's last token (the episode ends at <|end|> or
    at the length limit). λ = 1 gives the Monte-Carlo advantage Σ_{s≥t} γ^(s−t) r_s − V_t
    (unbiased, noisy); λ = 0 the one-step δ_t (biased by V's errors, quiet).

    Args:
        rewards, values: (N, T) per-token rewards and values V(state before y_t). mask: (N, T).
    Returns:
        (advantages (N, T), returns (N, T)), 0 on padding.
    """
    xp = backend.get_array_module(rewards)
    T = rewards.shape[1]
    advantages = xp.zeros_like(rewards)
    next_value = xp.zeros_like(rewards[:, 0])                                   # (N,)
    next_adv = xp.zeros_like(rewards[:, 0])
    for t in range(T - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_adv) * mask[:, t]
        next_value, next_adv = values[:, t] * mask[:, t], advantages[:, t]
    return advantages, (advantages + values) * mask


def gae_matrix(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """GAE without the loop: A = δ @ Dᵀ with D_ts = (γλ)^(s−t) for s ≥ t, else 0.

    The closed form of `gae`'s recursion, A_t = Σ_{s≥t} (γλ)^(s−t)·δ_s; padding has δ = 0 and
    V = 0, so the sum stops at each response's end by itself. Same result, one matrix product.
    """
    xp = backend.get_array_module(rewards)
    T = rewards.shape[1]
    next_values = xp.concatenate([values[:, 1:] * mask[:, 1:], xp.zeros_like(values[:, :1])], axis=1)
    delta = (rewards + gamma * next_values - values) * mask                     # (N, T)
    steps = xp.arange(T)
    power = steps[None, :] - steps[:, None]                                     # (T, T): s − t
    discount = xp.where(power >= 0, (gamma * lam) ** xp.maximum(power, 0), 0.0).astype(rewards.dtype)
    advantages = delta @ discount.T                                             # (N, T) @ (T, T)
    return advantages * mask, (advantages + values) * mask


def whiten(x, mask, eps: float = 1e-8):
    """(x − mean) / (std + ε) over the masked entries of the batch; 0 on padding."""
    xp = backend.get_array_module(x)
    mean = masked_mean(x, mask)
    std = xp.sqrt(masked_mean((x - mean) ** 2, mask))
    return (x - mean) / (std + eps) * mask


def response_values(value_model, prompt_ids: list, response_ids) -> Tensor:
    """V_ψ(x, y_<t) for every response token t, (N, T), in one forward pass.

    The value model is a `RewardModel` (initialised from the trained reward model) whose
    score head is read at every position instead of the last one: the state that predicts
    y_t is the one whose value is V_t.
    """
    inputs, rows, positions = response_inputs(prompt_ids, response_ids, value_model.config.block_size)
    return value_model.token_scores(inputs)[rows, positions]                    # (N, L-1) -> (N, T)


def value_loss(values: Tensor, old_values, returns, mask, clip_eps: float = 0.2) -> Tensor:
    """L_V = ½·mean_t max((V_t − G_t)², (clip(V_t, V_old,t ± ε) − G_t)²) over response tokens.

    G_t are GAE's returns (constants). The clipped branch stops a value from moving more than
    ε from the one that computed the advantages in one batch, PPO's trust region for V.
    """
    old = backend.asarray(old_values)
    target = backend.asarray(returns)
    clipped = old + (values - old).clip(-clip_eps, clip_eps)
    worst = maximum((values - target) ** 2, (clipped - target) ** 2)            # (N, T)
    return masked_sum(worst, mask, axis=None) * (0.5 / max(float(backend.scalar(mask.sum())), 1.0))


# ----- the clipped surrogate -------------------------------------------------------------

def clipped_surrogate(logp: Tensor, old_logp, adv, clip_eps: float) -> Tensor:
    """min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) per token, ρ = π(y_t)/π_old(y_t); adv (N,) or (N, T) -> (N, T)."""
    ratio = (logp - backend.asarray(old_logp)).exp()                         # (N, T) ρ
    A = backend.asarray(adv)
    A = A[:, None] if A.ndim == 1 else A                                      # (N,) -> (N, 1)
    return minimum(ratio * A, ratio.clip(1.0 - clip_eps, 1.0 + clip_eps) * A)


def ppo_clip_loss(logp: Tensor, old_logp, adv, mask, clip_eps: float = 0.2) -> Tensor:
    """L = −(1/N) Σ_i Σ_t m_it · min(ρ_it·A_it, clip(ρ_it, 1−ε, 1+ε)·A_it),  ρ_it = π(y_it)/π_old(y_it).

    Summed over a response's tokens and averaged over responses, like `reinforce_loss`, so at
    ρ = 1 (before the first step) the two gradients are equal: ∇ρ = ρ·∇log π = ∇log π.
    A token with A > 0 and ρ > 1+ε (or A < 0 and ρ < 1−ε) gets zero gradient: the min picks
    the clipped term, which is flat in θ. A is per sequence (N,), shared by its tokens
    (`ppo-seq`), or per token (N, T) from GAE (`ppo`).

    Args:
        logp: (N, T) Tensor, log π(y_t) under the current weights (differentiable).
        old_logp: (N, T) log π_old(y_t) of the policy that sampled (a constant).
        adv: (N,) or (N, T) advantages. mask: (N, T) response mask. clip_eps: ε.
    """
    N = logp.shape[0]
    surrogate = clipped_surrogate(logp, old_logp, adv, clip_eps)
    return -masked_sum(surrogate, mask, axis=None) * (1.0 / N)


def clip_fraction(logp, old_logp, adv, mask, clip_eps: float = 0.2) -> float:
    """The share of response tokens whose gradient the clip switched off (ρ past 1±ε on A's side)."""
    logp = logp.data if isinstance(logp, Tensor) else logp
    xp = backend.get_array_module(logp)
    ratio = xp.exp(logp - xp.asarray(old_logp))                               # (N, T)
    A = xp.asarray(adv)
    A = A[:, None] if A.ndim == 1 else A                                      # (N,) -> (N, 1)
    mask = xp.asarray(mask)
    clipped = ((A > 0) & (ratio > 1 + clip_eps)) | ((A < 0) & (ratio < 1 - clip_eps))
    return float(backend.scalar(masked_mean(clipped.astype(mask.dtype), mask)))


def approx_kl(logp, old_logp, mask) -> float:
    """How far this update moved the policy: mean over tokens of (ρ − 1) − log ρ (≥ 0, k3 estimator)."""
    logp = logp.data if isinstance(logp, Tensor) else logp
    xp = backend.get_array_module(logp)
    log_ratio = logp - xp.asarray(old_logp)                                   # (N, T)
    return float(backend.scalar(masked_mean(xp.exp(log_ratio) - 1 - log_ratio, xp.asarray(mask))))


def minibatches(n: int, minibatch_size: int, rng) -> list:
    """A random split of rows 0..n-1 into minibatches of (at most) minibatch_size index arrays."""
    order = rng.permutation(n)
    return [order[i:i + minibatch_size] for i in range(0, n, minibatch_size)]


# ----- what the RL loop calls (phases/rl/rlhf.py's table) -------------------------------

def ppo_targets(models, ro, scored: dict, cfg, beta: float) -> dict:
    """InstructGPT's advantages: per-token rewards, V_ψ's values, GAE, whitened over the batch.

    Returns {"adv": (N, T), "returns": (N, T), "values": (N, T)}, all constants: the value
    model's targets beside the policy's.
    """
    with no_grad():
        values = response_values(models.value, ro.prompt_ids, ro.response_ids).data * ro.response_mask
    rewards = token_rewards(scored["scores"], ro.logp, ro.ref_logp, ro.response_mask, beta)
    adv, returns = gae(rewards, values, ro.response_mask, cfg.gamma, cfg.lam)
    return {"adv": whiten(adv, ro.response_mask), "returns": returns, "values": values}


def policy_loss(logp: Tensor, mb, adv, cfg, beta: float) -> Tensor:
    """`ppo_clip_loss` of a minibatch of rollouts `mb`: logp (N, T), adv (N,) or (N, T)."""
    return ppo_clip_loss(logp, mb.logp, adv, mb.response_mask, cfg.clip_eps)
