"""How a model answers held-out prompts: greedy or sampled answers, gold scores, a before/after report.

Lecture 5: every phase after pretraining changes how the model *responds*, so it is judged
by its answers, not only by its loss. These helpers answer prompts greedily in batches (or
sample several answers per prompt, for the reward model and RLHF to judge),
score every answer with the simulated labeler `gold_score`, and write `report.json` and
`report.md`. Phase files share them here, because phases never import each other.
Left out: human or model judges, confidence intervals.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict

from minillm.tokenizers import chat_template as chat
from minillm.tokenizers.base import ENDOFTEXT
from minillm.data.gold import gold_report, gold_score
from minillm.data.tasks import find_task
from minillm.model.sampling import generate

DIRECT = 0.5                                    # gold >= this counts as a direct answer
FACTUAL_KINDS = ("fact", "number", "arithmetic")  # prompts with one right value: exact match applies
STYLE_TERMS = ("dodge", "question", "rude", "ramble", "repetition", "garbage", "empty_or_garbage")


def first_line(text: str) -> str:
    """The first non-empty line, stripped: the answer we keep from a free continuation.

    Example: "\\nAnna lives in Rivertown.\\nbob: thanks" -> "Anna lives in Rivertown."
    """
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def _encode(tokenizer, prompt: str, use_template: bool, max_tokens: int) -> list[int]:
    """Prompt ids, cut from the left to at most max_tokens (the rule SFT training uses)."""
    if use_template:
        return chat.encode_prompt(tokenizer, prompt, max_tokens)
    return tokenizer.encode(prompt)[-max_tokens:]


def answer_prompts(model, tokenizer, prompts: list[str], use_template: bool,
                   batch_size: int = 32, min_new_tokens: int | None = None) -> list[str]:
    """Greedy (temperature 0) answers to `prompts`, one string each.

    use_template=True: the prompt goes through `chat.format_prompt` and decoding stops at
    <|end|> (a chat model). False: the raw prompt, stopping at <|endoftext|> (a pretrained
    model, which knows no template). Either way the kept answer is the first non-empty line
    of the continuation, so both models are cut by the same rule. Prompts are cut from the
    left to leave at least `min_new_tokens` (default: half the block) for the answer.
    """
    block = model.config.block_size
    min_new = min_new_tokens or block // 2
    stop_token = chat.END if use_template else ENDOFTEXT
    stop_ids = [tokenizer.special_tokens[stop_token]] if stop_token in tokenizer.special_tokens else []
    encoded = [_encode(tokenizer, p, use_template, block - min_new) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths together
    answers = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows = [encoded[i] for i in chunk]
        max_new = block - max(len(r) for r in rows)
        outputs = generate(model, rows, max_new, temperature=0.0, stop_ids=stop_ids)
        for i, row, out in zip(chunk, rows, outputs):
            new = out[len(row):]
            cut = next((j for j, t in enumerate(new) if t in stop_ids), len(new))  # drop the stop token
            answers[i] = first_line(tokenizer.decode(new[:cut]))
    return answers


def sample_responses(model, tokenizer, prompts: list[str], n: int = 2, temperature: float = 1.0,
                     seed: int = 0, batch_size: int = 64) -> list[list[str]]:
    """n responses per prompt, sampled from a chat model with the template, cut at <|end|>.

    Prompts keep at most half the block (cut on the left), so each response has room, and
    a response is at most block/2 - 2 tokens, so it fits the reward model with its template.
    """
    block = model.config.block_size
    end = chat.chat_token_ids(tokenizer).end
    rows = [chat.encode_prompt(tokenizer, p, block // 2) for p in prompts for _ in range(n)]
    texts = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        out = generate(model, chunk, block // 2 - 2, temperature=temperature, stop_ids=[end],
                       seed=seed + start)
        texts += [chat.response_text(tokenizer, o[len(r):]) for r, o in zip(chunk, out)]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def gold_labelled_pairs(model, tokenizer, prompts: list[str], seed: int, min_gap: float = 0.1) -> list[dict]:
    """On-policy preference pairs: two sampled answers of the model per prompt, ordered by gold_score.

    As in the lecture's data collection (labelers compare the model's own responses); pairs
    whose gold scores differ by less than min_gap are dropped (no clear preference).
    Returns [{"prompt", "chosen", "rejected"}].
    """
    pairs = []
    for prompt, (a, b) in zip(prompts, sample_responses(model, tokenizer, prompts, n=2, seed=seed)):
        ga, gb = gold_score(prompt, a), gold_score(prompt, b)
        if abs(ga - gb) >= min_gap:
            pairs.append({"prompt": prompt, "chosen": a if ga > gb else b, "rejected": b if ga > gb else a})
    return pairs


def fit_new_tokens(max_new_tokens: int, block_size: int, say) -> int:
    """`max_new_tokens`, or half the block when it would leave a prompt no room (with a notice).

    A chat prompt needs its two template tokens and at least one token of its own, so a
    response may take at most block_size - 3 positions. Example: 40 in a block of 32 -> 16.
    """
    if block_size - max_new_tokens >= 3:
        return max_new_tokens
    fitted = block_size // 2
    say(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the policy's block of "
        f"{block_size} tokens: using {fitted} (any value up to {block_size - 3} works)")
    return fitted


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def accepted_answers(prompt: str, references: list[str]) -> set[str]:
    """The answers that count as an exact match: the file's references for this prompt and
    the world's accepted phrasings of its task (normalised: lower case, single spaces)."""
    task = find_task(prompt)
    return {_normalize(a) for a in [*references, *(task.answers if task else ())]}


def score_answers(prompts: list[str], answers: list[str], references: dict[str, list[str]]) -> dict:
    """Gold-score every answer and summarise.

    Returns:
        {"n", "mean_gold", "direct_rate" (share with gold >= 0.5), "answer_form" (share of
        answers with no style penalty at all: no dodge, question, rudeness, rambling,
        repetition or garbage; right or wrong), "n_factual", "exact_match" (share of factual
        prompts answered exactly), "by_kind": {kind: mean gold}, "gold": [...]}.
    """
    reports = [gold_report(p, a) for p, a in zip(prompts, answers)]
    gold = [r["score"] for r in reports]
    form = [all(not r.get(term) for term in STYLE_TERMS) for r in reports]
    kinds = [(find_task(p).kind if find_task(p) else "other") for p in prompts]
    factual = [i for i, k in enumerate(kinds) if k in FACTUAL_KINDS]
    exact = [_normalize(answers[i]) in accepted_answers(prompts[i], references.get(prompts[i], []))
             for i in factual]
    by_kind = defaultdict(list)
    for k, g in zip(kinds, gold):
        by_kind[k].append(g)
    n = max(len(gold), 1)
    return {"n": len(gold), "mean_gold": sum(gold) / n,
            "direct_rate": sum(g >= DIRECT for g in gold) / n, "answer_form": sum(form) / n,
            "n_factual": len(factual), "exact_match": sum(exact) / max(len(exact), 1),
            "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())}, "gold": gold}


def held_out_prompts(records) -> tuple[list[str], dict[str, list[str]]]:
    """Unique prompts in file order, and every reference response given for each."""
    references: dict[str, list[str]] = {}
    for r in records:
        references.setdefault(r["prompt"], []).append(r["response"])
    return list(references), references


METRICS = [("mean_gold", "mean gold score (-1..1)"), ("direct_rate", "direct-answer rate (gold >= 0.5)"),
           ("answer_form", "answer form (no style penalty)"), ("exact_match", "exact match, factual prompts")]


def format_comparison(before: dict, after: dict, names=("before", "after")) -> str:
    """A plain-text table of the headline metrics, for the terminal."""
    lines = [f"{'':34s}{names[0]:>10s}{names[1]:>10s}"]
    for key, label in METRICS:
        lines.append(f"{label:34s}{before[key]:10.3f}{after[key]:10.3f}")
    return "\n".join(lines)


def write_report(out_dir: str, report: dict, prompts: list[str], answers: dict[str, list[str]],
                 title: str, notes: str = "", examples: int = 12) -> None:
    """report.json (everything) and report.md (the table, the notes and example answers).

    Args:
        report: must hold one score_answers() dict per name in `answers`, under that name.
        answers: {name: [answer per prompt]}, e.g. {"before": [...], "after": [...]}.
    """
    names = list(answers)
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump({**report, "prompts": prompts, "answers": answers}, f, indent=2)
    md = [f"# {title}", "", "| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label in METRICS:
        md.append(f"| {label} | " + " | ".join(f"{report[n][key]:.3f}" for n in names) + " |")
    md += ["", notes, "", "## Example answers", ""]
    for i, prompt in enumerate(prompts[:examples]):
        md.append(f"**{prompt}**")
        md += [f"- {n} ({report[n]['gold'][i]:+.2f}): `{answers[n][i]}`" for n in names]
        md.append("")
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))


def pairwise_wins(gold_a: list[float], gold_b: list[float]) -> dict:
    """Compare two policies prompt by prompt: A wins where its gold score is higher.

    win_rate = wins / (wins + losses), ties (equal gold) left out; win_rate_ties_half counts
    each tie as half a win: (wins + ties/2) / n.
    Example: a = [1, 0.5, 0], b = [0, 0.5, 1] -> 1 win, 1 loss, 1 tie, win_rate 0.5.
    """
    wins = sum(a > b for a, b in zip(gold_a, gold_b))
    losses = sum(a < b for a, b in zip(gold_a, gold_b))
    ties = len(gold_a) - wins - losses
    return {"wins": wins, "losses": losses, "ties": ties,
            "win_rate": wins / max(wins + losses, 1),
            "win_rate_ties_half": (wins + ties / 2) / max(len(gold_a), 1)}


RL_PANELS = [("reward-model score", [("train", "rm_score", "RM score of samples"),
                                     ("train", "reward", "reward r − β·KL"),
                                     ("eval", "rm_score", "RM score, held-out greedy")]),
             ("KL to the SFT model (nats)", [("train", "kl", "KL per response"), ("train", "beta", "β")]),
             ("gold score", [("train", "gold", "gold of samples"), ("eval", "gold", "gold, held-out greedy")]),
             ("policy entropy (nats/token)", [("train", "entropy", "entropy on samples")])]


def plot_rl_curves(log_path: str, png_path: str, title: str = "RLHF") -> str:
    """Four panels from an RL log against step: RM score and reward, KL and β, gold score, entropy."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's plotting backend is left alone

    with open(log_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    fig = Figure(figsize=(16, 3.5), dpi=100)
    axes = fig.subplots(1, len(RL_PANELS))
    for ax, (label, curves) in zip(axes, RL_PANELS):
        for kind, key, name in curves:
            points = [(r["step"], r[key]) for r in records if r.get("kind") == kind and key in r]
            if points:
                ax.plot(*zip(*points), "o-" if kind == "eval" else "-", ms=3, lw=1, label=name)
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path
