"""Health notes: each figure the pipeline report prints, its normal range, and what a value outside means.

A number alone does not tell a student whether a run went well: a reward model at 0.50 is a
coin before training and a failure after it; a KL of -0.01 is impossible for the exact KL; a
GRPO loss near 0 is what a healthy run shows. This module is the one table of those ranges
(`RANGES`), read by the report: `annotate` puts a flag next to a figure outside its range, and
`notes` lists every range of a phase under its table. A range is checked on a value computed
from the phase's summary (and, for the RL methods, from its training log), so "reward rising
while gold falls" is one check like the others.
Left out: ranges that depend on the model's size or the data (they hold for the tiny world's presets).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

from minillm.phases.summaries import MethodSummary, Summary

FLAG = "⚠"
RL_METHODS = ("rlhf", "ppo", "grpo", "dpo", "best-of-n")
KL_TOLERANCE = 1e-6  # float32 rounding of an exact KL that is 0


@dataclass(frozen=True)
class Range:
    """One figure's normal range: `value(summary, log)` inside [low, high] (None: no bound on that side)."""

    phases: tuple                   # the phases whose report shows the figure
    row: str                        # a part of the report row's label that names the figure
    value: Callable                 # (Summary, log summary) -> the number checked, or None when not measured
    low: float | None
    high: float | None
    normal: str                     # what the figure means when it is in range
    outside: str                    # what a value outside the range means, and what to look at
    checked: str = ""               # what the range is on, when it is not the printed number itself

    def check(self, summary: Summary, log: dict) -> float | None:
        """The value when it lies outside the range, else None (in range, or not measured)."""
        v = self.value(summary, log)
        if v is None:
            return None
        return v if (self.low is not None and v < self.low) or (self.high is not None and v > self.high) else None

    def describe(self) -> str:
        if self.low is None and self.high is None:
            return "any value"
        if self.low is None:
            return f"at most {self.high:g}"
        if self.high is None:
            return f"at least {self.low:g}"
        return f"{self.low:g} to {self.high:g}"


def _after_minus_before(section_key: str) -> Callable:
    """SFT's after-minus-before of one of its measures (direct_rate, mean_gold)."""
    return lambda s, log: getattr(s.after, section_key) - getattr(s.before, section_key)


def _kl(kl: float) -> float:
    """The KL with float32 rounding of an exact 0 read as 0 (a larger negative value stays negative)."""
    return max(kl, 0.0) if kl >= -KL_TOLERANCE else kl


def _gold_fell_while_reward_rose(s: MethodSummary, log: dict) -> float | None:
    """The gold change when the reward-model score rose (over-optimisation shows as a negative value)."""
    return s.mean_gold_rlhf - s.mean_gold_sft if s.rm_score_rlhf > s.rm_score_sft else None


def _win_rate(s: MethodSummary, log: dict) -> float | None:
    """Wins / (wins + losses) against SFT; None when every prompt tied (nothing was decided)."""
    return s.versus.win_rate if s.versus.wins + s.versus.losses else None


def _entropy_kept(s: MethodSummary, log: dict) -> float | None:
    """Last training step's policy entropy as a share of the first step's."""
    first, last = log.get("entropy_first"), log.get("entropy_last")
    return last / first if first and last is not None else None


def _grpo_loss(s: MethodSummary, log: dict) -> float | None:
    return log.get("loss_last") if s.algo == "grpo" else None


RANGES = [
    Range(("pretrain",), "validation loss", lambda s, log: s.val_loss / s.baseline_val_loss, None, 1.0,
          "below the n-gram baseline's loss: the GPT predicts better than counting",
          "at or above the n-gram baseline's loss (ratio shown): too few steps, a learning rate too high, or a "
          "data or tokenizer problem", "validation loss / n-gram baseline loss"),
    Range(("pretrain",), "perplexity", lambda s, log: s.val_ppl, 1.0, None,
          "exp(loss), at least 1 by definition", "below 1 is impossible for a probability model: a bug in the loss"),
    Range(("sft",), "direct-answer rate", _after_minus_before("direct_rate"), 0.0, None,
          "SFT raises the share of direct answers (after minus before shown when it does not)",
          "SFT made the answers less direct: look at the demonstrations and the chat template", "after − before"),
    Range(("sft",), "mean gold score", _after_minus_before("mean_gold"), 0.0, None,
          "SFT raises the gold score", "SFT lowered the gold score: the demonstrations or the template are wrong",
          "after − before"),
    Range(("sft",), "response-only validation loss",
          lambda s, log: s.val_loss - s.baseline_val_loss, None, 0.0,
          "falls during SFT", "the loss on held-out demonstrations rose: overfitting or a learning rate too high",
          "after − before"),
    Range(("rm",), "pairwise accuracy", lambda s, log: s.baseline.val_accuracy, 0.45, 0.55,
          "about 0.5 before training (a zero head scores every answer 0 and a tie counts half)",
          "far from 0.5 before training: the head did not start at zero, or the pairs are one-sided", "before"),
    Range(("rm",), "pairwise accuracy", lambda s, log: s.val_accuracy, 0.6, None,
          "well above 0.5 after training: the reward model orders the validation pairs as their labels do",
          "near a coin after training: it has not learned the labels (too few steps, or labels that contradict "
          "each other: noisy labelers)", "after"),
    Range(("rm",), "mean margin", lambda s, log: s.val_margin, 0.0, None,
          "positive: chosen answers score higher on average", "negative: the reward model prefers the rejected answers", "after"),
    Range(("rm",), "agreement with the gold labeler", lambda s, log: s.rm_gold_agreement, 0.6, None,
          "the reward model orders the policy's own fresh answers mostly as gold does",
          "near or below a coin on the policy's own answers: RLHF would optimise noise; add on-policy pairs"),
    Range(RL_METHODS, "KL(", lambda s, log: _kl(s.kl_to_reference), 0.0, 5.0,
          "KL to the SFT model is never negative (exactly, and in expectation for an estimate) and stays small "
          "under the KL leash",
          "negative: impossible for the exact KL (a bug), noise for a sampled estimate; above 5 nats per answer: "
          "the policy has left the SFT model far behind (raise β, lower the learning rate)"),
    Range(RL_METHODS, "gold score of held-out answers, SFT", _gold_fell_while_reward_rose, 0.0, None,
          "when the reward-model score rises, gold rises with it",
          "reward rising while gold falls (gold change shown): the policy exploits the reward model's mistakes "
          "(over-optimisation); stop earlier or raise β", "gold after − before, when the reward-model score rose"),
    Range(RL_METHODS, "against SFT: win rate", _win_rate, 0.5, None,
          "the method wins more prompts than it loses against SFT",
          "it loses more prompts than it wins: the reward it optimises is not gold's"),
    Range(("rlhf", "ppo", "grpo"), "policy entropy", _entropy_kept, 0.25, None,
          "the policy's entropy per token keeps a good part of its start (last as a share of first shown when not)",
          "entropy collapse: the policy samples nearly one answer per prompt, exploration has stopped (raise β, "
          "lower the learning rate)", "last / first"),
    Range(("grpo",), "policy loss", _grpo_loss, -0.5, 0.5,
          "near 0 is normal for GRPO: the advantages are normalised within each group, so the surrogate averages "
          "about zero whatever is learned; watch reward and gold instead",
          "far from 0: the group advantages do not average to zero (a baseline problem)"),
    Range(("rlhf", "ppo"), "policy loss", lambda s, log: None, None, None,
          "no target value: REINFORCE and RLOO minimise −(advantage × log-probability), PPO its clipped surrogate; "
          "their size says nothing about progress, only their gradient matters", ""),
]


def log_summary(directory: str | None) -> dict:
    """Entropy of the first and last training steps and the last loss, from an RL run's log.jsonl ({} if none)."""
    path = os.path.join(directory, "log.jsonl") if directory else ""
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        train = [r for r in map(json.loads, filter(str.strip, f)) if r.get("kind") == "train"]
    if not train:
        return {}
    return {"entropy_first": train[0].get("entropy"), "entropy_last": train[-1].get("entropy"),
            "loss_last": train[-1].get("loss")}


def log_rows(phase: str, log: dict) -> list[tuple[str, str]]:
    """The figures the report adds from an RL run's log: entropy first → last, and the last loss."""
    if phase not in ("rlhf", "ppo", "grpo") or log.get("entropy_first") is None:
        return []
    return [("policy entropy (nats/token), first → last training step",
             f"{log['entropy_first']:.3f} → {log['entropy_last']:.3f}"),
            ("policy loss, last training step", f"{log['loss_last']:.4f}")]


def ranges_for(phase: str) -> list[Range]:
    return [r for r in RANGES if phase in r.phases]


def annotate(phase: str, summary: Summary, rows: list[tuple[str, str]], log: dict | None = None) -> list[tuple[str, str]]:
    """The report's (label, value) rows with a flag next to each value outside its normal range."""
    log = log or {}
    out = []
    for label, value in rows:
        for r in ranges_for(phase):
            if r.row in label and (bad := r.check(summary, log)) is not None:
                value = f"{value} {FLAG} {bad:.3g} outside the normal range ({r.describe()}): {r.outside}"
        out.append((label, value))
    return out


def notes(phase: str) -> list[str]:
    """One line per figure of the phase: its normal range and what it means."""
    return [f"{r.row.rstrip('(')}{f' ({r.checked})' if r.checked else ''}: normal {r.describe()} — {r.normal}" for r in ranges_for(phase)]


def checked_figures(phase: str, summary: Summary, directory: str) -> list[tuple[str, str]]:
    """The report's figures of a phase (and, for an RL method, its log's), each flagged when out of range."""
    from minillm.app.report import figures  # the report's own rows; this module only checks them

    log = log_summary(directory) if phase in ("rlhf", "ppo", "grpo") else {}
    return annotate(phase, summary, figures(phase, summary) + log_rows(phase, log), log)


HEALTH_NOTE = (f"Each figure's normal range; a figure outside its range is flagged {FLAG} next to its value above, "
               "with what it means.")


def all_notes(phases) -> list[str]:
    """The notes of every phase given, each once."""
    return list(dict.fromkeys(n for p in phases for n in notes(p)))
