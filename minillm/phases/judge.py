"""Phase 3's verdict, and the summary every phase hands on: one dataclass per kind of phase.

Lecture 5 §Phase 3: every method of the phase starts from the SFT model and is judged the
same way, on held-out prompts no method trained on: the gold labeler's mean score, the
per-prompt win rate against the SFT model's answer (ties excluded, and ties as half), the
reward model's score, and the KL to the SFT model that bought the change. Each method's run
writes report.md, report.json and summary.json with these figures under the same keys, so
the pipeline's comparison table reads one row per method. In the keys, "rlhf" names the
policy after phase 3, whichever method made it.

The summaries: `PretrainSummary`, `SFTSummary`, `RewardSummary`, and for phase 3
`TrainedSummary` (RLHF, PPO, GRPO), `DPOSummary` and `BestOfNSummary`, each a `Summary` with
one `to_json`/`from_json` pair between it and the JSON object saved on disk (summary.json, the
`summary` of the pipeline's DONE.json). The phases write them; the pipeline, the report, the
health notes and `minillm results` read them by attribute.
Left out: confidence intervals, human or model judges.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import MISSING, dataclass, field, fields
from typing import get_type_hints

from minillm.tokenizers import chat_template as chat
from minillm.model.sampling import response_log_softmax
from minillm.phases.rl import rollouts as rl
from minillm.data.gold import gold_score
from minillm.engine.tensor import no_grad
from minillm.phases import common

SAMPLES_PER_PROMPT = 4


# ----- the summaries -----------------------------------------------------------------------

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


@dataclass
class Sampling:
    """How the policy samples: the method's own temperature, response length and seed."""

    temperature: float = 1.0
    max_new_tokens: int = 40
    seed: int = 1337


def evaluate(policy, reward_model, tokenizer, prompts: list[str]) -> tuple[dict, list[str]]:
    """Greedy answers to held-out prompts: their mean gold score and mean reward (RM or, oracle, gold)."""
    answers = common.answer_prompts(policy, tokenizer, prompts, use_template=True)
    return score_texts(reward_model, tokenizer, prompts, answers), answers


def score_texts(reward_model, tokenizer, prompts: list[str], answers: list[str]) -> dict:
    """{"gold": mean gold score, "rm_score": mean reward-model score (gold when the RM is None)}."""
    gold = [gold_score(p, a) for p, a in zip(prompts, answers)]
    if reward_model is None:
        return {"gold": sum(gold) / len(gold), "rm_score": sum(gold) / len(gold)}
    end = chat.chat_token_ids(tokenizer).end
    ids = [chat.encode_prompt(tokenizer, p) for p in prompts]
    scores = rl.reward_model_scores(reward_model, ids, [tokenizer.encode(a) for a in answers], end)
    return {"gold": sum(gold) / len(gold), "rm_score": float(scores.mean())}


def encode_prompts(tokenizer, prompts: list[str], block_size: int, max_new_tokens: int) -> list[list[int]]:
    """Chat-formatted prompt ids, cut from the left to leave max_new_tokens for the response."""
    return [chat.encode_prompt(tokenizer, p, block_size - max_new_tokens) for p in prompts]


def held_out_kl(policy, reference, tokenizer, prompts: list[str], sampling: Sampling) -> float:
    """Mean KL(π ‖ π_ref) per response on held-out prompts: one sampled response each, the exact
    per-token KL of the two next-token distributions summed over it (`rl.exact_kl`)."""
    end = chat.chat_token_ids(tokenizer).end
    ids = encode_prompts(tokenizer, prompts, policy.config.block_size, sampling.max_new_tokens)
    ro = rl.sample_rollouts(policy, reference, ids, 1, sampling.max_new_tokens, end, sampling.temperature,
                            sampling.seed + 999_983)
    with no_grad():
        log_dist = response_log_softmax(policy, ro.prompt_ids, ro.response_ids, sampling.temperature)
        ref_log_dist = response_log_softmax(reference, ro.prompt_ids, ro.response_ids, sampling.temperature)
    return float(rl.exact_kl(log_dist, ref_log_dist, ro.response_mask).mean())


def gold_versus(prompts: list[str], answers: dict[str, list[str]]) -> GoldVersus:
    """Mean gold of the SFT and the trained policy's answers to the same prompts, and its wins against SFT."""
    gold = {name: [gold_score(p, a) for p, a in zip(prompts, answers[name])] for name in ("sft", "rlhf")}
    return GoldVersus(gold_sft=sum(gold["sft"]) / len(prompts), gold_rlhf=sum(gold["rlhf"]) / len(prompts),
                      **common.pairwise_wins(gold["rlhf"], gold["sft"]))


def sampled_comparison(reference, policy, tokenizer, prompts: list[str], sampling: Sampling) -> GoldVersus:
    """SFT vs the policy on sampled answers: SAMPLES_PER_PROMPT each per held-out prompt at its temperature.

    RL maximises the expected reward of samples, E_{y~π}[r], so this is the comparison the
    objective speaks to; greedy answers (the report's table) can move less, or not at all.
    Sample i of one policy is compared with sample i of the other (same seed).
    """
    answers = {}
    for name, model in (("sft", reference), ("rlhf", policy)):
        groups = common.sample_responses(model, tokenizer, prompts, n=SAMPLES_PER_PROMPT,
                                         temperature=sampling.temperature, seed=sampling.seed + 7)
        answers[name] = [a for group in groups for a in group]
    repeated = [p for p in prompts for _ in range(SAMPLES_PER_PROMPT)]
    return gold_versus(repeated, answers)


def seen_prompt_comparison(reference, policy, tokenizer, train_prompts: list[str], n: int) -> SeenVersus:
    """SFT vs the policy, greedy, on n of the prompts it trained on (every k-th, spread over the file).

    Held-out prompts ask about facts no training prompt asked; training prompts show what the
    method did to the questions it practised. The gap between the two is how far it generalised.
    """
    prompts = train_prompts[::max(1, len(train_prompts) // max(n, 1))][:n]
    answers = {name: common.answer_prompts(model, tokenizer, prompts, use_template=True)
               for name, model in (("sft", reference), ("rlhf", policy))}
    return SeenVersus(n=len(prompts), **vars(gold_versus(prompts, answers)))


def judge_answers(out: str, kind: type, method: str, reference, reward_model, tokenizer, heldout: list[str],
                  answers: list[str], kl: float, extra: dict, details: str, more: str = "",
                  started: float | None = None) -> tuple[MethodSummary, str, dict]:
    """The SFT model's greedy answers against the method's `answers` to the same held-out prompts.

    Writes report.md, report.json and summary.json in `out`; returns (summary, the notes text,
    {"sft": score_answers, "rlhf": score_answers}). The summary is a `kind` (a MethodSummary
    class) made of the verdict and `extra`, its own fields; its `seconds` count from `started`
    (time.perf_counter()), or from this call. `details` (what the answers are) opens the notes
    and `more` closes them.
    """
    started = time.perf_counter() if started is None else started
    sft_eval, sft_answers = evaluate(reference, reward_model, tokenizer, heldout)
    method_eval = score_texts(reward_model, tokenizer, heldout, answers)
    scores = {"sft": common.score_answers(heldout, sft_answers, {}),
              "rlhf": common.score_answers(heldout, answers, {})}
    versus = Versus(**common.pairwise_wins(scores["rlhf"]["gold"], scores["sft"]["gold"]))
    notes = (f"{details} {len(heldout)} held-out prompts, each judged by gold_score. {method} vs SFT "
             f"per prompt: {versus.wins} wins, {versus.losses} losses, {versus.ties} ties (equal gold); "
             f"win rate {versus.win_rate:.1%} with ties excluded, {versus.win_rate_ties_half:.1%} "
             f"with ties as half. Reward-model score of the answers: SFT {sft_eval['rm_score']:.3f}, "
             f"{method} {method_eval['rm_score']:.3f}. KL({method} ‖ SFT) per held-out response: {kl:.3f} "
             f"nats. {more}").strip()
    summary = kind(method=method, kl_to_reference=kl, rm_score_sft=sft_eval["rm_score"],
                   rm_score_rlhf=method_eval["rm_score"], mean_gold_sft=scores["sft"]["mean_gold"],
                   mean_gold_rlhf=scores["rlhf"]["mean_gold"], versus=versus, **extra,
                   seconds=time.perf_counter() - started)
    report = {**scores, "summary": summary.to_json()}
    common.write_report(out, report, heldout, {"sft": sft_answers, "rlhf": answers},
                        f"{method}: held-out answers of the SFT model and of {method}", notes)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary.to_json(), f, indent=2)
    return summary, notes, scores


def judge_policy(out: str, kind: type, method: str, policy, reference, reward_model, tokenizer,
                 heldout: list[str], train_prompts: list[str], sampling: Sampling, extra: dict,
                 started: float | None = None) -> tuple[TrainedSummary, str, dict]:
    """A trained policy against the SFT model: greedy answers, the exact KL on sampled ones, and the
    sampled and seen-prompt comparisons. Writes the reports; returns `judge_answers`' triple, its
    summary a `kind` (TrainedSummary or a subclass) with `extra` among its fields."""
    _, answers = evaluate(policy, reward_model, tokenizer, heldout)
    kl = held_out_kl(policy, reference, tokenizer, heldout, sampling)
    sampled = sampled_comparison(reference, policy, tokenizer, heldout, sampling)
    seen = seen_prompt_comparison(reference, policy, tokenizer, train_prompts, len(heldout))
    more = (f"The KL is measured on one sample per prompt at τ = {sampling.temperature}, the exact "
            f"per-token KL summed. Sampled answers ({SAMPLES_PER_PROMPT} per prompt at τ = "
            f"{sampling.temperature}, the distribution RL optimises): mean gold SFT "
            f"{sampled.gold_sft:.3f}, {method} {sampled.gold_rlhf:.3f}; {method} wins "
            f"{sampled.wins}, loses {sampled.losses}, ties {sampled.ties} "
            f"(win rate {sampled.win_rate:.1%} with ties excluded). On {seen.n} of the "
            f"training prompts (greedy), mean gold SFT {seen.gold_sft:.3f}, {method} "
            f"{seen.gold_rlhf:.3f}.")
    details = f"Greedy answers (first line) of the SFT model and of the policy after {method} to"
    return judge_answers(out, kind, method, reference, reward_model, tokenizer, heldout, answers, kl,
                         {**extra, "sampled": sampled, "seen": seen}, details, more, started)
