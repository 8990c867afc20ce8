"""GRPO (Shao et al. 2024): a group baseline, no value model, the KL to π_ref in the loss.

Each prompt gets G sampled responses; a response's advantage is its reward measured against
its own group, A_i = (R_i − mean_g R) / (std_g R + ε), shared by all its tokens. The loss is
PPO's clipped surrogate per token (phases/rl/ppo.py) minus β times the k3 estimate of the KL
to π_ref, averaged over each response's tokens. The reward here is the score alone: the KL
is charged in the loss, not subtracted from the reward.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.phases.rl.ppo import clipped_surrogate
from minillm.phases.rl.rollouts import masked_sum
from minillm.engine.tensor import Tensor


def group_normalized_advantages(rewards, group_size: int, eps: float = 1e-6, normalize_by_std: bool = True):
    """GRPO's advantages: A_i = (R_i − mean_g R) / (std_g R + ε) within each prompt's group of G.

    The group mean is the baseline (RLOO's leave-one-out mean is the same idea without the
    response's own reward: A_rloo = G/(G−1)·(R_i − mean_g R), so the two differ only by a
    scale G/(G−1) before the division by the std). Dividing by the group's std (population,
    ddof 0) gives every prompt the same step size, easy or hard; a group whose rewards are all
    equal gets A = 0: nothing to learn from it. normalize_by_std=False keeps R − mean_g R.
    Example (G = 2): R = [1, 0, 1, 1] -> A ≈ [1, −1, 0, 0].
    """
    if group_size < 2:
        raise ValueError(f"group-normalised advantages need G >= 2 samples per prompt, got {group_size}")
    if rewards.shape[0] % group_size:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of G = {group_size}")
    grouped = rewards.reshape(-1, group_size)                                   # (N,) -> (B, G)
    centred = grouped - grouped.mean(axis=1, keepdims=True)
    if normalize_by_std:
        centred = centred / (grouped.std(axis=1, keepdims=True) + eps)
    return centred.reshape(-1)                                                  # (B, G) -> (N,)


def grpo_loss(logp: Tensor, old_logp, ref_logp, adv, mask, clip_eps: float = 0.2,
              beta: float = 0.04) -> Tensor:
    """GRPO (Shao et al. 2024): L = −(1/N) Σ_i (1/|y_i|) Σ_t [min(ρA_i, clip(ρ)A_i) − β·k3_it].

    A_i are group-normalised advantages (`group_normalized_advantages`), one per response.
    The KL to π_ref is in the loss, not in the reward, estimated per token by k3:
    k3 = π_ref/π − log(π_ref/π) − 1 = e^d − d − 1 with d = log π_ref(y_t) − log π(y_t),
    ≥ 0 for every sample and unbiased for KL(π ‖ π_ref) under y ~ π. Each response's tokens
    are averaged (1/|y_i|), so long and short answers weigh the same.
    """
    d = backend.asarray(ref_logp) - logp                                     # (N, T)
    k3 = d.exp() - d - 1.0
    per_token = clipped_surrogate(logp, old_logp, adv, clip_eps) - k3 * beta
    xp = backend.get_array_module(mask)
    lengths = xp.maximum(mask.sum(axis=1), 1.0)                               # (N,)
    per_response = masked_sum(per_token, mask, axis=-1) * (1.0 / lengths)     # (N, T) -> (N,)
    return -per_response.sum() * (1.0 / logp.shape[0])


# ----- what the RL loop calls (phases/rl/rlhf.py's table) -------------------------------

def grpo_targets(models, ro, scored: dict, cfg, beta: float) -> dict:
    """GRPO's advantages from the scores alone (its KL is in the loss): (N,) per response."""
    return {"adv": group_normalized_advantages(scored["scores"], cfg.group_size)}


def policy_loss(logp: Tensor, mb, adv, cfg, beta: float) -> Tensor:
    """`grpo_loss` of a minibatch of rollouts `mb`: logp (N, T), adv (N,)."""
    return grpo_loss(logp, mb.logp, mb.ref_logp, adv, mb.response_mask, cfg.clip_eps, beta)
