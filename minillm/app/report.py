"""The pipeline's report: what each phase did to the model, side by side.

Reads a pipeline run directory (pretrain, sft, rm, rlhf: each with its DONE.json marker and
plots), answers the same held-out prompts with the pretrained, SFT and RLHF models (greedy),
scores every answer with the reward model r_θ(x, y) and the gold labeler, and writes
report.md and report.html (written by `report_writer`). `minillm compare` reuses the answering half.
Left out: interactive plots, comparing two pipeline runs with each other.
"""
from __future__ import annotations

import json
import math
import os

from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.phases.rl import best_of_n as rl_best_of_n
from minillm.app.chat_session import ChatSession, Sampling
from minillm.data.gold import gold_score
from minillm.tokenizers.chat_template import ResponseTooLong
from minillm.app.pipeline_phases import (  # noqa: F401 (lesson 00 reads report.PHASES, report.TITLES)
    CORE, DEFAULT_METHODS, METHODS, PHASES, TITLES, PhaseMarker, PhaseSize, read_marker,
)
from minillm.phases import common
from minillm.phases.summaries import BestOfNSummary, MethodSummary, Summary, TrainedSummary, Versus
from minillm.phases.reward import score_responses

PLOTS = {"pretrain": ["loss.png"], "sft": ["loss.png"], "rm": ["loss.png", "margins.png"], "rlhf": ["rlhf.png"],
         "ppo": ["rlhf.png"], "dpo": ["loss.png"], "best-of-n": [], "grpo": ["rlhf.png"]}
MODELS = (("pretrain", "pretrained"), ("sft", "SFT"), ("rlhf", "RLHF"), ("ppo", "PPO"), ("dpo", "DPO"),
          ("best-of-n", "best-of-n"), ("grpo", "GRPO"))  # (phase, model name)
SIZE_NOTE = ("Tokens: pretraining, every token read; SFT, the response tokens the loss counted; reward model, "
             "the tokens of chosen and rejected responses read; RLHF, the response tokens sampled. FLOPs ≈ "
             "6·N·D plus attention; RLHF counts sampling, reference and reward-model passes as one more 6·N·D.")
NOT_FINISHED = "not available: this phase has not finished (run `minillm pipeline` again with the same --out)"


# ----- answering the same prompts with every model -------------------------------------

def load_models(out: str) -> tuple[dict, tuple | None]:
    """({model name: (GPT, tokenizer, uses the chat template, best-of (n, τ) or 0)}, (reward model, its
    tokenizer) or None), for the phases of `out` that have finished. Best-of-n has no model of
    its own: it is the SFT model's entry with its n and sampling temperature τ (it answers only
    where the reward model is)."""
    models, reward = {}, None
    for phase, name in MODELS:
        done = read_marker(out, phase)
        if done is None:
            continue
        if phase == "best-of-n":
            if "SFT" in models and read_marker(out, "rm") is not None:
                models[name] = (*models["SFT"][:3], (done.summary.n, done.summary.temperature))
            continue
        ckpt = checkpoint.load(os.path.join(out, phase))
        models[name] = (ckpt.model.eval(), ckpt.tokenizer, phase != "pretrain", 0)
    if read_marker(out, "rm") is not None:
        ckpt = checkpoint.load(os.path.join(out, "rm"))
        reward = (ckpt.model.eval(), ckpt.tokenizer)
    return models, reward


def _encodable(tokenizer, prompt: str) -> bool:
    try:
        tokenizer.encode(prompt)
        return True
    except ValueError:  # a character the tokenizer never saw
        return False


def rm_score(reward: tuple | None, prompt: str, answer: str) -> float | None:
    """r_θ(prompt, answer); an answer too long for the RM's block is cut to fit first."""
    if reward is None or not _encodable(reward[1], prompt + answer):
        return None
    model, tok = reward
    ids = tok.encode(answer)[:model.config.block_size - 4]  # room for the template and <|end|>
    try:
        return score_responses(model, tok, prompt, [tok.decode(ids)])[0]
    except ResponseTooLong:
        return None


def answer_side_by_side(models: dict, reward: tuple | None, prompts: list[str]) -> list[dict]:
    """Greedy answers of every model to every prompt, each with its RM score and gold score.

    Returns:
        [{"prompt": p, "answers": {model name: {"text", "rm", "gold"}}}] in prompt order.
    """
    rows = [{"prompt": p, "answers": {}} for p in prompts]
    for name, (model, tok, template, best_of) in models.items():
        ok = [i for i, p in enumerate(prompts) if _encodable(tok, p)]
        texts = (best_of_n_answers(model, tok, reward[0], [prompts[i] for i in ok], *best_of) if best_of
                 else common.answer_prompts(model, tok, [prompts[i] for i in ok], use_template=template))
        for i, text in zip(ok, texts):
            rows[i]["answers"][name] = {"text": text, "rm": rm_score(reward, prompts[i], text),
                                        "gold": gold_score(prompts[i], text)}
    return rows


def best_of_n_answers(model, tokenizer, reward_model, prompts: list[str], n: int, temperature: float = 1.0,
                      seed: int = 1337) -> list[str]:
    """The reward model's favourite of n answers (first line) of a chat model to each prompt, sampled at τ."""
    block = model.config.block_size
    room = block // 2
    ids = [chat.encode_prompt(tokenizer, p, block - room) for p in prompts]
    winners, _ = rl_best_of_n.best_of_n(model, reward_model, ids, n, room, chat.chat_token_ids(tokenizer).end,
                                        temperature, seed)
    return [common.first_line(chat.response_text(tokenizer, w)) for w in winners]


def converse(models: dict, user_turns: list[str]) -> dict:
    """Every model's greedy replies in one multi-turn conversation: {model name: [reply, ...]}.

    Each model hears the same user turns; its context holds its own earlier replies (a
    pretrained model reads the raw text, one line per turn; see `ChatSession`).
    """
    replies = {}
    for name, (model, tok, template, best_of) in models.items():
        if best_of:  # best-of-n picks among samples: no greedy conversation of its own
            continue
        session = ChatSession(model, tok, template, Sampling(temperature=0.0))
        replies[name] = [session.answer(turn) if _encodable(tok, turn) else "" for turn in user_turns]
    return replies


# ----- figures per phase ---------------------------------------------------------------

def phase_size(phase: str, directory: str, summary: Summary) -> PhaseSize:
    """Parameters N, tokens D and training FLOPs of one finished phase.

    Supervised phases: FLOPs ≈ 6·N·D + attention (`GPT.flops_per_token`), D = tokens the loss
    counted. RLHF: D = response tokens sampled; each costs about one 6·N (sampling, reference and
    reward-model forward passes, 2·N each) plus 6·N per update pass (PPO makes several).
    """
    if phase == "pretrain":
        return PhaseSize(parameters=summary.parameters, tokens=summary.tokens_seen, flops=summary.training_flops)
    if phase == "best-of-n":  # no training: the SFT model's size, the sampled tokens, no training FLOPs
        sft = checkpoint.load(os.path.join(os.path.dirname(directory), "sft"))
        return PhaseSize(parameters=sft.model.num_parameters(), tokens=summary.sampled_tokens, flops=0)
    ckpt = checkpoint.load(directory)
    gpt = getattr(ckpt.model, "transformer", ckpt.model)
    if phase not in ("rlhf", "ppo", "grpo"):
        tokens = summary.tokens_seen
        return PhaseSize(parameters=ckpt.model.num_parameters(), tokens=tokens, flops=gpt.flops_per_token() * tokens)
    cfg = ckpt.meta["rlhf_config"]
    with open(os.path.join(directory, "log.jsonl"), encoding="utf-8") as f:
        lengths = [r["response_length"] for r in map(json.loads, f) if r.get("kind") == "train"]
    tokens = int(sum(lengths) * cfg["batch_prompts"] * cfg["group_size"])
    epochs = cfg["ppo_epochs"] if cfg["algo"] in ("ppo", "ppo-seq", "grpo") else 1
    passes = 1 + epochs * (2 if cfg["algo"] == "ppo" else 1)  # PPO trains its value model beside the policy
    return PhaseSize(parameters=ckpt.model.num_parameters(), tokens=tokens,
                     flops=gpt.flops_per_token() * tokens * passes)


def _arrow(before: float, after: float, digits: int = 3) -> str:
    return f"{before:.{digits}f} → {after:.{digits}f}"


def figures(phase: str, s: Summary) -> list[tuple[str, str]]:
    """The key figures of one phase's summary, as (label, value) rows."""
    if phase == "pretrain":
        return [("validation loss (nats/token)", f"{s.val_loss:.4f}"), ("perplexity", f"{s.val_ppl:.2f}"),
                (f"{s.baseline_n}-gram baseline loss / perplexity",
                 f"{s.baseline_val_loss:.4f} / {math.exp(s.baseline_val_loss):.2f}"), ("steps", str(s.step))]
    if phase == "sft":
        b, a = s.before, s.after
        return [("direct-answer rate (gold ≥ 0.5), before → after", _arrow(b.direct_rate, a.direct_rate)),
                ("mean gold score, before → after", _arrow(b.mean_gold, a.mean_gold)),
                ("answer form (no style penalty), before → after", _arrow(b.answer_form, a.answer_form)),
                ("response-only validation loss, before → after", _arrow(s.baseline_val_loss, s.val_loss, 4)),
                ("held-out prompts", str(a.n))]
    if phase == "rm":
        base = s.baseline
        return [("pairwise accuracy (s_w > s_l, a tie counts half), validation", _arrow(base.val_accuracy, s.val_accuracy)),
                ("mean margin s_w − s_l", _arrow(base.val_margin, s.val_margin)),
                ("agreement with the gold labeler on fresh SFT samples",
                 f"{s.rm_gold_agreement:.3f} ({s.agreement_pairs} pairs)")]
    name = METHOD_NAMES.get(phase, "RLHF")
    held_out = [(f"reward-model score of held-out answers, SFT → {name}", _arrow(s.rm_score_sft, s.rm_score_rlhf)),
                (f"gold score of held-out answers, SFT → {name}", _arrow(s.mean_gold_sft, s.mean_gold_rlhf)),
                (f"{name} against SFT: win rate, ties excluded", _wins(s.versus))]
    kl = [(f"KL({name} ‖ SFT) per response (nats)", f"{s.kl_to_reference:.3f}")]
    if isinstance(s, BestOfNSummary):
        return held_out + kl + _best_of_n_rows(s)
    return held_out + _sampled_rows(s, name) + kl + [("algorithm, steps", f"{s.algo}, {s.steps}")]


def _best_of_n_rows(s: BestOfNSummary) -> list[tuple[str, str]]:
    """Best-of-n's own figures: n and τ, its KL to the distribution sampled, and where its gold comes from."""
    tau = s.temperature
    return [("n, sampling temperature τ", f"{s.n}, {tau}"),
            (f"KL(best-of-n ‖ SFT sampled at τ = {tau}), measured / closed form log n − (n−1)/n",
             f"{s.kl_to_sampled:.3f} / {s.kl_formula:.3f}"),
            (f"gold of held-out answers: greedy SFT, one sample at τ = {tau}, the reward model's pick "
             f"of {s.n}, the gold labeler's pick of the same {s.n}",
             f"{s.mean_gold_sft:.3f}, {s.sample_gold:.3f}, {s.rm_pick_gold:.3f}, {s.oracle_gold:.3f}"),
            ("prompts where the reward model picked a top-gold sample", f"{s.rm_pick_is_oracle:.1%}")]


def _wins(v: Versus) -> str:
    """Win rate with ties left out, and the counts it rests on: "100.0% (1 wins, 0 losses, 11 ties)"
    says plainly that one prompt decided it."""
    return f"{v.win_rate:.1%} ({v.wins} wins, {v.losses} losses, {v.ties} ties)"


def _sampled_rows(s: TrainedSummary, name: str) -> list[tuple[str, str]]:
    """The sampled-answer and training-prompt comparisons of a method that trains."""
    return [(f"gold score of held-out answers (sampled, τ = 1), SFT → {name}",
             _arrow(s.sampled.gold_sft, s.sampled.gold_rlhf)),
            (f"{name} against SFT, sampled: win rate, ties excluded", _wins(s.sampled)),
            (f"gold score on training prompts (greedy), SFT → {name}", _arrow(s.seen.gold_sft, s.seen.gold_rlhf))]


METHOD_NAMES = {m: name for m, name in MODELS if m in METHODS}
COMPARISON_COLUMNS = ("method", "held-out gold (mean)", "win rate vs SFT (ties excluded)",
                      "win rate vs SFT (ties as half)", "RM score", "KL to SFT (nats)", "training time",
                      "training FLOPs")


def comparison_rows(phases: dict[str, PhaseMarker | None]) -> list[list[str]]:
    """The comparison table: the SFT model, then one row per finished method, on the same held-out prompts."""
    methods = [m for m in METHODS if phases.get(m)]
    if not methods:
        return []
    first: MethodSummary = phases[methods[0]].summary
    rows = [["SFT", f"{first.mean_gold_sft:+.3f}", "—", "—", f"{first.rm_score_sft:+.3f}", "0", "—", "—"]]
    for m in methods:
        d, s = phases[m], phases[m].summary
        algo = s.algo + (f", τ = {s.temperature}" if isinstance(s, BestOfNSummary) else "")
        rows.append([f"{METHOD_NAMES[m]} ({algo})", f"{s.mean_gold_rlhf:+.3f}",
                     f"{s.versus.win_rate:.1%} ({s.versus.wins}–{s.versus.losses})",
                     f"{s.versus.win_rate_ties_half:.1%}", f"{s.rm_score_rlhf:+.3f}",
                     f"{s.kl_to_reference:.3f}", f"{d.seconds:.0f} s", f"{d.size.flops:.3g}"])
    return rows


COMPARISON_NOTE = ("Every method starts from the same SFT model and answers the same held-out prompts (greedy, "
                   "except best-of-n: the reward model's favourite of n samples at τ); wins and losses count prompts "
                   "where the gold score is higher or lower than the SFT model's. KL: the exact per-token KL on "
                   "one sampled answer per prompt (best-of-n: its KL to the SFT model sampled at τ, measured from "
                   "fresh samples, plus what sampling at τ instead of 1 adds). Training FLOPs of "
                   "best-of-n are 0: it pays n samples per answer at inference instead.")


def headline(phase: str, s: Summary) -> str:
    """One line for the progress display."""
    if phase == "pretrain":
        return f"validation loss {s.val_loss:.3f} (ppl {s.val_ppl:.2f}) vs {s.baseline_n}-gram {s.baseline_val_loss:.3f}"
    if phase == "sft":
        return f"direct-answer rate {_arrow(s.before.direct_rate, s.after.direct_rate, 2)}"
    if phase == "rm":
        return f"validation accuracy {s.val_accuracy:.3f}, gold agreement {s.rm_gold_agreement:.3f}"
    return (f"RM score {_arrow(s.rm_score_sft, s.rm_score_rlhf, 2)}, KL {s.kl_to_reference:.2f}, "
            f"gold {_arrow(s.mean_gold_sft, s.mean_gold_rlhf, 2)}, win rate {s.versus.win_rate:.0%}")


def collect(out: str, prompts: list[str], conversation: list[str] | None = None, methods=DEFAULT_METHODS) -> dict:
    """Everything the report shows: phases (PhaseMarker or None; the core ones, the requested methods and
    any other finished method), tokenizer, answers, and the replies to a multi-turn conversation
    when its user turns are given."""
    shown = CORE + tuple(m for m in METHODS if m in methods or read_marker(out, m) is not None)
    phases = {p: read_marker(out, p) for p in shown}
    models, reward = load_models(out)
    tokens = None
    if "pretrained" in models:
        tok = models["pretrained"][1]
        pieces = [tok.id_to_token(i) for i in tok.encode(prompts[0])] if _encodable(tok, prompts[0]) else []
        tokens = {"kind": type(tok).__name__, "vocab_size": tok.vocab_size, "prompt": prompts[0], "pieces": pieces}
    return {"phases": phases, "tokens": tokens, "models": [n for p, n in MODELS if p in shown],
            "answers": answer_side_by_side(models, reward, prompts),
            "conversation": {"user": conversation, "replies": converse(models, conversation)} if conversation else None}
