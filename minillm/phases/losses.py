"""Every loss of the lecture: the slide's form, and the efficient twin the trainers use.

Lecture, Phase 1: the loss is the cross entropy between the model's distribution
LLM(x) = (y_1..y_|V|) and the one-hot ground truth P(x_t):
    CE = -Σ_k P(x_t)[k] · log LLM(x)[k] = -log ȳ_t,
averaged over the training samples. `one_hot_cross_entropy` computes exactly that sum;
`cross_entropy` is the fused, numerically stable log-softmax form (one graph node), and the
tests prove the two equal in value and gradient. Later phases add their losses here, DPO's
(the pairwise loss on a policy's implicit reward) among them.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.engine.backend import IGNORE_INDEX
from minillm.model import functional as F
from minillm.engine.tensor import Tensor

NORMALIZATIONS = ("token", "sequence")  # how SFT averages the response tokens of a batch


def one_hot(targets, num_classes: int, dtype=None):
    """P(x_t) as rows: (N,) integer ids -> (N, V) with a single 1 per row. Example: [2, 0], V=3 -> [[0,0,1],[1,0,0]]."""
    xp = backend.xp
    targets = backend.asarray(targets)
    out = xp.zeros((targets.shape[0], num_classes), dtype=dtype or backend.get_default_dtype())
    out[xp.arange(targets.shape[0]), targets] = 1
    return out


def one_hot_cross_entropy(logits: Tensor, targets) -> Tensor:
    """The slide's cross entropy, term by term: mean over samples of -Σ_k P(x_t)[k] · log LLM(x)[k].

    Args:
        logits: (N, V) scores; LLM(x) = softmax(logits) is the model's distribution.
        targets: (N,) the true next tokens x_t.
    Returns:
        A scalar Tensor. Only for teaching: log(softmax) can underflow to log 0 for extreme
        logits, which is why training uses `cross_entropy`.
    """
    targets = backend.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, V) and targets (N,), got {logits.shape} and {targets.shape}")
    llm_x = F.softmax(logits, axis=-1)                                   # (N, V), rows sum to 1
    p = Tensor._wrap(one_hot(targets, logits.shape[1], logits.dtype))   # (N, V) one-hot
    per_sample = -(p * llm_x.log()).sum(axis=-1)                        # (N,) = -log ȳ_t
    return per_sample.mean()


def cross_entropy(logits: Tensor, targets, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean over counted targets of -log softmax(logits)[target], fused and stable.

    Args:
        logits: (N, V) scores.
        targets: (N,) integer ids; positions equal to `ignore_index` count neither in the
            sum nor in the mean (SFT uses this to score response tokens only).
    """
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


def sequence_cross_entropy(logits: Tensor, targets, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """cross_entropy for sequences: logits (B, T, V), targets (B, T) -> the mean over counted tokens."""
    B, T, V = logits.shape
    targets = backend.asarray(targets)
    return cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index)


# ----- Phase 2: cross entropy over response tokens only --------------------------------

def token_losses(logits: Tensor, targets) -> Tensor:
    """CE_bt = -log softmax(logits_bt)[targets_bt] at every position, 0 where ignored.

    Args:
        logits: (B, T, V). targets: (B, T) ids, IGNORE_INDEX where a position does not count.
    Returns:
        (B, T) Tensor of per-token losses: the composed cross entropy with reduction "none".
    """
    B, T, V = logits.shape
    targets = backend.asarray(targets)
    per_token = F.cross_entropy_composed(logits.reshape(B * T, V), targets.reshape(B * T),
                                         reduction="none")               # (B·T,)
    return per_token.reshape(B, T)


def loss_weights(targets, normalize: str = "token", dtype=None):
    """The weight w_bt of each token's loss, so that L = Σ_bt w_bt · CE_bt.

    token:    w_bt = m_bt / Σ_b'Σ_t' m_b't'      every counted token of the batch weighs the same
    sequence: w_bt = m_bt / (B' · Σ_t' m_bt')    every answer weighs the same, however long
    m_bt = 1 where targets_bt counts; B' = the rows with at least one counted token.
    """
    xp = backend.xp
    m = (backend.asarray(targets) != IGNORE_INDEX).astype(dtype or backend.get_default_dtype())  # (B, T)
    if normalize == "token":
        return m / xp.maximum(m.sum(), 1)
    if normalize == "sequence":
        per_row = m.sum(axis=1, keepdims=True)                         # (B, 1) tokens per answer
        return m / xp.maximum(per_row, 1) / xp.maximum((per_row > 0).sum(), 1)
    raise ValueError(f"unknown normalisation {normalize!r}: expected one of {', '.join(NORMALIZATIONS)}")


def sft_loss(logits: Tensor, targets, normalize: str = "token") -> Tensor:
    """Lecture 5 §Phase 2: cross entropy in which only response tokens count.

    token (default, the common convention): L = Σ_bt m_bt·CE_bt / Σ_bt m_bt, the mean over
        all counted response tokens of the batch; long answers weigh more.
    sequence: L = (1/B') Σ_b (Σ_t m_bt·CE_bt / Σ_t m_bt), each answer's mean, then the mean
        over answers; a short answer's tokens weigh more.
    "token" runs the fused cross entropy with ignore_index; "sequence" runs the weighted sum
    of `token_losses` (the tests prove the weighted form equals the fused one for "token").

    Args:
        logits: (B, T, V). targets: (B, T), IGNORE_INDEX on prompt, template and padding.
    """
    if normalize == "token":
        return sequence_cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    weights = loss_weights(targets, normalize, logits.dtype)
    return (token_losses(logits, targets) * Tensor._wrap(weights)).sum()


# ----- Phase 3: the reward model's pairwise loss --------------------------------------

def pairwise_loss(s_w: Tensor, s_l: Tensor) -> Tensor:
    """The slide's reward-model loss, as written: mean of -log(σ(s_w - s_l)).

    s_w = r_θ(x, y_w) scores the winning response, s_l = r_θ(x, y_l) the losing one; the loss
    is log 2 when they are equal and falls as the winner pulls ahead. Literal on purpose, with
    σ(d) = 1 / (1 + e^-d) as the slide writes it: for a margin d = -100, e^100 overflows
    float32, σ becomes 0, the loss inf and its gradient NaN; for d = +100, σ rounds to 1 and
    the loss to exactly 0. See `pairwise_loss_stable`.
    """
    d = s_w - s_l
    sigma = 1.0 / (1.0 + (-d).exp())
    return -sigma.log().mean()


def pairwise_loss_stable(s_w: Tensor, s_l: Tensor) -> Tensor:
    """The same loss in its stable form: mean of -log σ(d) = softplus(-d), with d = s_w - s_l.

    softplus(z) = log(1 + e^z) is computed as logaddexp(0, z), finite for any z, and its
    gradient σ(z) never underflows to a wrong 0.

    Args:
        s_w, s_l: (N,) scores of the chosen and the rejected responses.
    """
    return (-(s_w - s_l)).softplus().mean()


# ----- Phase 3 without a reward model: DPO ------------------------------------------------

def implicit_rewards(policy_logps, ref_logps, beta: float):
    """DPO's implicit reward r(x, y) = β·log(π(y|x) / π_ref(y|x)) = β·(log π(y|x) − log π_ref(y|x)).

    Log-probabilities summed over the response tokens only; works on Tensors and arrays.
    """
    return (policy_logps - backend.asarray(_data(ref_logps))) * beta


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps,
             ref_rejected_logps, beta: float = 0.1) -> Tensor:
    """DPO (Rafailov et al. 2023): the pairwise loss applied to the policy's implicit reward.

        L = mean of −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])

    Three lines from RLHF's objective: (1) max_π E[r(x, y)] − β·KL(π ‖ π_ref) has the solution
    π*(y|x) = π_ref(y|x)·e^(r(x,y)/β) / Z(x); (2) solved for the reward, r(x, y) =
    β·log π*(y|x)/π_ref(y|x) + β·log Z(x); (3) put into the reward model's loss
    −log σ(r(x, y_w) − r(x, y_l)), Z(x) cancels, leaving a loss on π alone: this one. So it is
    `pairwise_loss` with s_w, s_l = `implicit_rewards` of the chosen and rejected responses,
    the policy being its own reward model. Computed in the stable form softplus(−d).

    Args:
        policy_chosen_logps, policy_rejected_logps: (N,) Tensors, Σ_t log π(y_t) over the
            response tokens of y_w and y_l (differentiable).
        ref_chosen_logps, ref_rejected_logps: (N,) the same sums under π_ref (constants).
        beta: β, the strength of the implicit KL leash (small β: the policy may move far).
    """
    s_w = implicit_rewards(policy_chosen_logps, ref_chosen_logps, beta)
    s_l = implicit_rewards(policy_rejected_logps, ref_rejected_logps, beta)
    return (-(s_w - s_l)).softplus().mean()


def pairwise_accuracy(s_w, s_l) -> float:
    """Share of pairs the reward model orders correctly, a tie counting half:

        accuracy = mean( [s_w > s_l] + 0.5 · [s_w = s_l] )

    A reward model that gives every response the same score (an untrained one, whose head
    starts at zero) orders no pair and is at chance, 0.5, not at 0.
    """
    d = _data(s_w) - _data(s_l)
    return float(backend.scalar((d > 0).mean() + 0.5 * (d == 0).mean()))


def mean_margin(s_w, s_l) -> float:
    """Mean of s_w - s_l over the pairs."""
    return float(backend.scalar((_data(s_w) - _data(s_l)).mean()))


def _data(x):
    return x.data if isinstance(x, Tensor) else backend.asarray(x)
