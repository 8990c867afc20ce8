"""Phase 3, RLHF: move the language model toward responses the reward model scores high.

Lecture 5 §Phase 3: "the original language model is then optimized to generate responses
that receive high scores from the reward model". One update: sample G responses per prompt
from the policy π (rollouts), score each with the reward model r(x, y), subtract a KL penalty
β·Σ_t (log π(y_t) − log π_ref(y_t)) that keeps π near the frozen SFT model π_ref, turn the
rewards into advantages, and step along A·∇ Σ_t log π(y_t). This module holds what every
algorithm shares: sampling, response log-probabilities, masks, the KL and its controller.
Each algorithm's advantages and loss live in its own module: REINFORCE/RLOO in
phases/rl/reinforce.py, PPO in phases/rl/ppo.py, GRPO in phases/rl/grpo.py; best-of-n
(sampling only, no training) in phases/rl/best_of_n.py.
Left out: reward whitening across steps, separate rollout workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minillm.engine import backend
from minillm.errors import UserError
from minillm.model.sampling import generate, response_logprobs
from minillm.engine.tensor import Tensor, no_grad

# ----- rollouts: sampled responses and their log-probabilities --------------------------

@dataclass
class Rollouts:
    """G sampled responses to each of B prompts; row i is prompt i // G, sample i % G (N = B·G).

    Prompt tokens never count: every array below covers the response only. T is the longest
    response; a shorter one is padded after its end, and `response_mask` is 0 there.
    """

    prompt_ids: list            # (N,) lists of chat-formatted prompt ids (each prompt G times)
    response_ids: Any           # (N, T) int, 0 after the end
    response_mask: Any          # (N, T) 1.0 on response tokens (<|end|> included), 0.0 on padding
    logp: Any                   # (N, T) log π_old(y_t): the policy that sampled, 0 on padding
    ref_logp: Any               # (N, T) log π_ref(y_t): the frozen SFT model, 0 on padding; None without one

    def responses(self) -> list[list[int]]:
        """The real tokens of each response (padding dropped), N lists of ints."""
        lengths = backend.to_numpy(self.response_mask.sum(axis=1)).astype(int).tolist()
        ids = backend.to_numpy(self.response_ids).tolist()
        return [row[:n] for row, n in zip(ids, lengths)]

    def select(self, rows) -> "Rollouts":
        """The rollouts of some rows only (a PPO minibatch)."""
        index = backend.to_numpy(rows).tolist()
        return Rollouts([self.prompt_ids[i] for i in index], self.response_ids[rows], self.response_mask[rows],
                        self.logp[rows], None if self.ref_logp is None else self.ref_logp[rows])


def pad_responses(responses: list[list[int]], dtype=None) -> tuple[Any, Any]:
    """N token lists of different lengths -> ids (N, T) padded with 0, response_mask (N, T).

    Example: [[5, 9], [7]] -> ids [[5, 9], [7, 0]], mask [[1, 1], [1, 0]].
    """
    xp = backend.xp
    T = max(1, max(len(r) for r in responses))
    ids = xp.asarray([r + [0] * (T - len(r)) for r in responses], dtype=xp.int64)  # (N, T)
    mask = xp.asarray([[1.0] * len(r) + [0.0] * (T - len(r)) for r in responses],
                      dtype=dtype or backend.get_default_dtype())                     # (N, T)
    return ids, mask


def sample_rollouts(policy, reference, prompt_ids: list, group_size: int, max_new_tokens: int,
                    end_id: int, temperature: float = 1.0, seed: int | None = None) -> Rollouts:
    """Sample G responses to each prompt from the policy; keep π_old's and π_ref's log-probs.

    Sampling is batched (all B·G rows at once, left-padded prompts, KV cache). A response ends
    at <|end|> (kept: choosing to stop is an action too) or after max_new_tokens, cut further
    so that prompt + response fits the block. At τ = 1, `generate`'s log-probs are π_old's;
    at another τ the policy is softmax(z/τ), so both models are re-scored at that τ.

    Args:
        reference: π_ref, or None where nothing compares with it (best-of-n only samples):
            then no reference forward pass is paid and `ref_logp` is None.
        prompt_ids: B lists of chat-formatted prompt ids (`chat.encode_prompt`).
        group_size: G >= 1 responses per prompt.
    """
    rows = [list(p) for p in prompt_ids for _ in range(group_size)]
    room = min(max_new_tokens, policy.config.block_size - max(len(r) for r in rows))
    if room < 1:
        raise UserError(f"a prompt of {max(len(r) for r in rows)} tokens leaves no room for a response "
                         f"in the block of {policy.config.block_size}; shorten the prompts")
    out, sampled = generate(policy, rows, room, temperature=temperature, stop_ids=[end_id], seed=seed,
                            return_logprobs=True)
    ids, mask = pad_responses([o[len(r):] for o, r in zip(out, rows)])
    with no_grad():
        if temperature == 1.0:
            T = ids.shape[1]
            logp = backend.xp.asarray([row + [0.0] * (T - len(row)) for row in sampled], dtype=mask.dtype)
        else:
            logp = response_logprobs(policy, rows, ids, temperature).data * mask
        ref_logp = None if reference is None else response_logprobs(reference, rows, ids, temperature).data * mask
    return Rollouts(rows, ids, mask, logp, ref_logp)


def reward_model_scores(reward_model, prompt_ids: list, responses: list[list[int]], end_id: int) -> Any:
    """r(x, y) for each row: the RM reads prompt + response + <|end|> and scores its last token.

    The text is laid out as the RM was trained (`chat.format_example`): <|end|> is appended when
    the response was cut before it. A row longer than the RM's block loses tokens on the left.
    Returns (N,) scores.
    """
    block = reward_model.config.block_size
    rows = [(p + r + ([] if r and r[-1] == end_id else [end_id]))[-block:] for p, r in zip(prompt_ids, responses)]
    lengths = [len(r) for r in rows]
    ids = [r + [0] * (max(lengths) - len(r)) for r in rows]                   # (N, T) right-padded
    with no_grad():
        return reward_model(ids, lengths).data


# ----- masked reductions ----------------------------------------------------------------

def masked_sum(x, mask, axis: int | None = -1):
    """Σ m·x over `axis`: only the positions where the mask is 1 count. Works on arrays and Tensors."""
    return (x * mask).sum(axis=axis)


def masked_mean(x, mask, axis: int | None = None):
    """Σ m·x / Σ m: the mean over the positions where the mask is 1 (0 if there are none)."""
    xp = backend.get_array_module(mask)
    count = xp.maximum(mask.sum(axis=axis), 1.0)
    return (x * mask).sum(axis=axis) / count


def entropy(log_dist, mask) -> float:
    """H = −Σ_v π(v) log π(v), averaged over the response tokens. log_dist (N, T, V): log π(·) at each
    position; mask (N, T)."""
    log_dist = log_dist.data if isinstance(log_dist, Tensor) else log_dist
    h = -(backend.get_array_module(log_dist).exp(log_dist) * log_dist).sum(axis=-1)  # (N, T)
    return float(backend.scalar(masked_mean(h, backend.asarray(mask))))


# ----- rewards: the reward model's score minus a KL penalty ----------------------------

def kl_penalty(logp, ref_logp, mask):
    """Σ_t m_t·(log π(y_t) − log π_ref(y_t)), per response: (N, T) -> (N,).

    The sampled estimate of KL(π ‖ π_ref) of the whole response: its expectation over y ~ π
    is the KL, ≥ 0 and 0 only when π = π_ref, although one sample's term can be negative.
    β multiplies it where the reward is formed (`rlhf_rewards`).
    """
    return masked_sum(logp - ref_logp, mask, axis=-1)


def exact_kl(log_dist, ref_log_dist, mask):
    """Σ_t m_t · Σ_v π(v|·)·(log π(v|·) − log π_ref(v|·)), per response: (N, T, V) -> (N,).

    The KL of the two next-token distributions at each sampled position, summed: always ≥ 0,
    and 0 exactly when π = π_ref. A lower-variance twin of `kl_penalty` for reporting.
    """
    log_dist = log_dist.data if isinstance(log_dist, Tensor) else log_dist
    ref_log_dist = ref_log_dist.data if isinstance(ref_log_dist, Tensor) else ref_log_dist
    xp = backend.get_array_module(log_dist)
    per_token = (xp.exp(log_dist) * (log_dist - ref_log_dist)).sum(axis=-1)   # (N, T)
    return masked_sum(per_token, mask, axis=-1)


def rlhf_rewards(scores, logp, ref_logp, mask, beta: float):
    """R(x, y) = r(x, y) − β·Σ_t (log π(y_t) − log π_ref(y_t)): the reward the policy maximises.

    Returns (R (N,), kl (N,)): the rewards and the KL estimate, kept apart for the log.
    """
    kl = kl_penalty(logp, ref_logp, mask)
    return scores - beta * kl, kl


@dataclass
class KLController:
    """β, fixed (target=None) or adapted toward a target KL (Ziegler et al. 2019, eq. 2):

        e = clip((KL − KL_target) / KL_target, −0.2, 0.2)
        β ← β · (1 + e · n / horizon)

    KL is the batch's mean sequence KL, n the number of responses in the batch. A KL above
    target raises β (pull back toward π_ref), below it lowers β.
    """

    beta: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float, n: int) -> float:
        """Adapt β after a batch of n responses with mean KL `kl`; return the new β."""
        if self.target:
            error = min(max((kl - self.target) / self.target, -0.2), 0.2)
            self.beta *= 1.0 + error * n / self.horizon
        return self.beta
