"""Phase 3's verdict: every method judged the same way, on held-out prompts no method trained on.

Lecture 5 §Phase 3: every method of the phase starts from the SFT model and is judged by the
gold labeler's mean score, the per-prompt win rate against the SFT model's answer (ties
excluded, and ties as half), the reward model's score, and the KL to the SFT model that bought
the change. Each method's run writes report.md, report.json and summary.json
(`minillm.phases.summaries`) with these figures under the same keys, so the pipeline's
comparison table reads one row per method.
Left out: confidence intervals, human or model judges.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from minillm.tokenizers import chat_template as chat
from minillm.model.sampling import response_log_softmax
from minillm.phases.rl import rollouts as rl
from minillm.data.gold import gold_score
from minillm.engine.tensor import no_grad
from minillm.phases import common
from minillm.phases.summaries import Versus, GoldVersus, SeenVersus, MethodSummary, TrainedSummary

SAMPLES_PER_PROMPT = 4


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
