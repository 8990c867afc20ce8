"""The summary every phase hands on: one dataclass per kind of phase.

`PretrainSummary`, `SFTSummary`, `RewardSummary`, and for phase 3 `TrainedSummary` (RLHF, PPO,
GRPO), `DPOSummary` and `BestOfNSummary`, each a `Summary` with one `to_json`/`from_json` pair
between it and the JSON object saved on disk (summary.json, the `summary` of the pipeline's
DONE.json). The phases write them; the pipeline, the report, the health notes and `minillm
results` read them by attribute. In the keys, "rlhf" names the policy after phase 3, whichever
method made it.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import get_type_hints


class Summary:
    """Base of every summary dataclass: `to_json` and `from_json`, the one pair between a summary
    and the JSON object it is saved as.

    A field holding another Summary is saved as a nested object, unless its metadata names a
    `prefix`: then its figures sit beside the others, each key the prefix plus the field's name
    ("rlhf_vs_sft_wins"). `from_json` refuses a missing or an unknown key with a ValueError that
    names them.
    """

    def to_json(self) -> dict:
        saved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if "prefix" in f.metadata:
                saved.update({f.metadata["prefix"] + k: v for k, v in value.to_json().items()})
            else:
                saved[f.name] = value.to_json() if isinstance(value, Summary) else value
        return saved

    @classmethod
    def from_json(cls, saved: dict):
        kinds, values, used = get_type_hints(cls), {}, set()
        for f in fields(cls):
            kind, prefix = kinds[f.name], f.metadata.get("prefix")
            if prefix is not None:
                part = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
                used |= {prefix + k for k in part}
                values[f.name] = kind.from_json(part)
            elif f.name in saved:
                used.add(f.name)
                nested = isinstance(kind, type) and issubclass(kind, Summary)
                values[f.name] = kind.from_json(saved[f.name]) if nested else saved[f.name]
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        unknown = sorted(set(saved) - used)
        if missing or unknown:
            raise ValueError(f"not a {cls.__name__}: " + "; ".join(
                part for part in (missing and f"missing {', '.join(missing)}",
                                  unknown and f"unknown {', '.join(unknown)}") if part))
        return cls(**values)


@dataclass(kw_only=True)
class PretrainSummary(Summary):
    """Phase 1: the last step's validation loss and perplexity, the n-gram baseline, the run's size."""

    step: int
    tokens_seen: int
    val_loss: float
    val_ppl: float                  # exp(val_loss)
    parameters: int
    training_flops: int
    seconds: float
    baseline_val_loss: float        # the best n-gram's validation loss
    baseline_n: int                 # ... and its n


@dataclass(kw_only=True)
class AnswerScores(Summary):
    """Held-out answers, gold-scored (`common.score_answers`)."""

    n: int
    mean_gold: float
    direct_rate: float              # share with gold >= 0.5
    answer_form: float              # share with no style penalty, right or wrong
    n_factual: int
    exact_match: float              # share of factual prompts answered exactly
    by_kind: dict                   # {task kind: mean gold}
    gold: list                      # every answer's gold score, in prompt order


@dataclass(kw_only=True)
class SFTSummary(Summary):
    """Phase 2: the response-only validation loss before (`baseline_val_loss`) and after, the
    data counts, and the held-out answers of the pretrained model (before) and the SFT model (after)."""

    step: int
    tokens_seen: int
    val_loss: float
    baseline_val_loss: float
    train_pairs: int
    skipped: int
    truncated: int
    seconds: float
    before: AnswerScores
    after: AnswerScores


@dataclass(kw_only=True)
class RewardMetrics(Summary):
    """The reward model on the validation pairs: loss, pairwise accuracy, mean margin s_w − s_l."""

    val_loss: float
    val_accuracy: float
    val_margin: float


@dataclass(kw_only=True)
class RewardSummary(Summary):
    """Phase 3a: the reward model after training (and `baseline`, its zero head before), the
    data counts, and its agreement with the gold labeler on fresh SFT samples."""

    step: int
    tokens_seen: int
    val_loss: float
    val_accuracy: float
    val_margin: float
    train_pairs: int
    val_pairs: int
    baseline: RewardMetrics
    skipped: int
    truncated: int
    bad_records: int
    val_skipped: int
    rm_gold_agreement: float
    agreement_pairs: int
    seconds: float


@dataclass(kw_only=True)
class Versus(Summary):
    """One policy against SFT prompt by prompt (`common.pairwise_wins`)."""

    wins: int
    losses: int
    ties: int
    win_rate: float                 # wins / (wins + losses)
    win_rate_ties_half: float       # (wins + ties / 2) / n


@dataclass(kw_only=True)
class GoldVersus(Versus):
    """`Versus` with the mean gold of both sides (`gold_versus`)."""

    gold_sft: float
    gold_rlhf: float


@dataclass(kw_only=True)
class SeenVersus(GoldVersus):
    """`GoldVersus` on n of the prompts the method trained on."""

    n: int


@dataclass(kw_only=True)
class MethodSummary(Summary):
    """Phase 3: any method's policy against the SFT model on the held-out prompts (`judge_answers`)."""

    method: str
    kl_to_reference: float
    rm_score_sft: float
    rm_score_rlhf: float
    mean_gold_sft: float
    mean_gold_rlhf: float
    versus: Versus = field(metadata={"prefix": "rlhf_vs_sft_"})
    algo: str
    seconds: float


@dataclass(kw_only=True)
class TrainedSummary(MethodSummary):
    """A method that trains (RLHF, PPO, GRPO): its steps, and the sampled and seen-prompt comparisons."""

    steps: int
    sampled: GoldVersus = field(metadata={"prefix": "sampled_"})
    seen: SeenVersus = field(metadata={"prefix": "seen_"})


@dataclass(kw_only=True)
class DPOMetrics(Summary):
    """DPO on the validation pairs at the last step (`dpo.dpo_metrics`)."""

    val_loss: float
    reward_accuracy: float
    reward_margin: float
    chosen_logp: float
    rejected_logp: float
    chosen_logp_change: float
    rejected_logp_change: float
    entropy: float


@dataclass(kw_only=True)
class DPOSummary(TrainedSummary):
    """DPO: β, its data, and its validation figures at the last step."""

    beta: float
    train_pairs: int
    tokens_seen: int
    final: DPOMetrics = field(metadata={"prefix": "final_"})


@dataclass(kw_only=True)
class BestOfNSummary(MethodSummary):
    """Best-of-n: n and τ, its KL to the distribution sampled, and where its gold comes from (`diagnose`)."""

    n: int
    temperature: float
    kl_to_sampled: float            # KL(best-of-n ‖ SFT sampled at τ), measured
    kl_formula: float               # log n − (n−1)/n
    entropy: float
    sampled_tokens: int
    sample_gold: float              # one sample at τ
    rm_pick_gold: float             # the reward model's pick of n
    oracle_gold: float              # the gold labeler's pick of the same n
    rm_pick_is_oracle: float        # share of prompts where the two picks have the same gold
