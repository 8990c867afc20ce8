"""Write every dataset minillm ships (`minillm data make-world --out data/ --overwrite`).

Lecture 5 needs three kinds of data: raw text (pretraining), demonstrations (SFT: single
questions, and multi-turn conversations for chat) and comparisons (reward model), plus
prompts for RL. `write` makes all of them from the tiny
world with one seeded `random.Random` per file, so running it again gives byte-identical
files. Questions are split into train / validation / test by task key, so held-out prompts
never appear in training. Left out: deduplication against other corpora, tokenisation.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from minillm.data import conversations, corpus, responses, world
from minillm.data.gold import gold_score
from minillm.data.tasks import Task, all_tasks, find_task

SEED = 0
PRETRAIN_CHARS = {"train": 2_000_000, "validation": 100_000}
SFT_RECORDS = {"train": 3000, "validation": 300, "test": 300}
# Multi-turn conversations (2-4 exchanges): few, so the classroom run stays within its minutes.
CHAT_RECORDS = {"train": 400, "validation": 40, "test": 40}
PREFERENCE_RECORDS = {"train": 3000, "validation": 300, "test": 300}
SPLIT_SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}
# Sampling weight of each kind of question, so arithmetic does not crowd out the rest.
KIND_WEIGHTS = {"fact": 35, "number": 10, "arithmetic": 20, "howto": 15, "word": 10, "unsafe": 10}
MIN_MARGIN = 0.1  # gold(chosen) must beat gold(rejected) by at least this much
# Human demonstrators are imperfect: this share of SFT answers is hedged, this share ends in a
# follow-up question (the content stays right). SFT imitates the habits; preferences (labelled
# by comparing, which is easier than writing) prefer the direct answer, and RLHF can learn that.
HEDGED_DEMOS, QUESTION_DEMOS = 0.3, 0.3
LECTURE_KEYS = {"howto:make pizza", "word:serendipity", "unsafe:0"}


def split_tasks(seed: int = SEED) -> dict[str, list[Task]]:
    """Tasks per split, stratified by kind; the lecture's examples always go to train."""
    rng = random.Random(f"{seed}:split")
    splits: dict[str, list[Task]] = {name: [] for name in SPLIT_SHARES}
    for kind in KIND_WEIGHTS:
        tasks = [t for t in all_tasks() if t.kind == kind and t.key not in LECTURE_KEYS]
        rng.shuffle(tasks)
        n_val = max(1, round(len(tasks) * SPLIT_SHARES["validation"]))
        n_test = max(1, round(len(tasks) * SPLIT_SHARES["test"]))
        splits["validation"] += tasks[:n_val]
        splits["test"] += tasks[n_val:n_val + n_test]
        splits["train"] += tasks[n_val + n_test:]
    splits["train"] += [t for t in all_tasks() if t.key in LECTURE_KEYS]
    return splits


def _weighted_task(rng: random.Random, tasks: list[Task]) -> Task:
    kinds = sorted({t.kind for t in tasks})
    kind = rng.choices(kinds, [KIND_WEIGHTS[k] for k in kinds])[0]
    return rng.choice([t for t in tasks if t.kind == kind])


def demonstrations(rng: random.Random, tasks: list[Task], n: int) -> list[dict]:
    """Every prompt of the split once (as far as n allows), then more drawn by kind weight."""
    pairs = [(t, p) for t in tasks for p in t.prompts]
    rng.shuffle(pairs)
    pairs = pairs[:n]
    while len(pairs) < n:
        task = _weighted_task(rng, tasks)
        pairs.append((task, rng.choice(task.prompts)))
    return [{"prompt": p, "response": responses.good_response(rng, t)} for t, p in pairs]


def with_demonstrator_habits(rng: random.Random, records: list[dict]) -> list[dict]:
    """Give HEDGED_DEMOS of the answers a hedge and QUESTION_DEMOS a follow-up question.

    A separate random stream: the prompts and answers stay those of `demonstrations`. Declines
    of harmful requests are left alone (a hedged decline is still the right answer).
    """
    return [{"prompt": r["prompt"], "response": with_habit(rng, r["response"], find_task(r["prompt"]).kind)}
            for r in records]


def with_habit(rng: random.Random, response: str, kind: str) -> str:
    """One answer as a demonstrator writes it: hedged, ending in a question, or as it is."""
    u = rng.random()
    how = "hedge" if u < HEDGED_DEMOS else "question" if u < HEDGED_DEMOS + QUESTION_DEMOS else None
    if kind == "unsafe":
        how = None
    return responses.imperfect_demonstration(rng, response, how) if how else response


def chat_conversations(seed: int, split: str, splits: dict[str, list[Task]], n: int) -> list[dict]:
    """The split's multi-turn conversations, each answer with the demonstrators' habits.

    Train conversations ask train tasks only; a held-out one asks at least one of its split's
    tasks and may open with a train question (its answer is only context).
    """
    habits = random.Random(f"{seed}:chat/{split}/habits")
    answer = lambda rng, task: with_habit(habits, responses.good_response(rng, task), task.kind)  # noqa: E731
    if split == "train":
        return conversations.conversations(random.Random(f"{seed}:chat/train"), splits["train"], None, n, answer)
    return conversations.conversations(random.Random(f"{seed}:chat/{split}"), splits["train"] + splits[split],
                                       splits[split], n, answer)


def preference_pair(rng: random.Random, task: Task) -> dict:
    """One comparison: a good response beside a bad one, labelled by gold_score."""
    prompt = rng.choice(task.prompts)
    for _ in range(100):
        chosen = responses.good_response(rng, task)
        how = rng.choices(responses.REJECTIONS, responses.REJECTION_WEIGHTS)[0]
        rejected = responses.bad_response(rng, task, how)
        if gold_score(prompt, chosen) >= gold_score(prompt, rejected) + MIN_MARGIN:
            return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    raise RuntimeError(f"could not make a clear preference pair for {prompt!r}")


def preferences(rng: random.Random, tasks: list[Task], n: int) -> list[dict]:
    return [preference_pair(rng, _weighted_task(rng, tasks)) for _ in range(n)]


def rl_prompts(rng: random.Random, tasks: list[Task], n: int | None = None) -> list[dict]:
    """Each distinct prompt of the split once, shuffled (the first n at a smaller scale)."""
    prompts = [p for t in tasks for p in t.prompts]
    rng.shuffle(prompts)
    return [{"prompt": p} for p in prompts[:n]]


def _with_lecture(rng: random.Random, records: list[dict], lecture: list[dict]) -> list[dict]:
    """Swap the lecture's examples in for the last records (extra draws), then shuffle."""
    records = records[: len(records) - len(lecture)] + lecture
    rng.shuffle(records)
    return records


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def build(seed: int = SEED, scale: float = 1.0) -> dict[str, str]:
    """Every shipped file as {relative path: text}. `scale` shrinks all sizes (for tests)."""
    def size(n: int) -> int:
        return max(5, round(n * scale))

    def rng(name: str) -> random.Random:
        return random.Random(f"{seed}:{name}")

    splits = split_tasks(seed)
    files = {f"pretrain/{s}.txt": corpus.corpus(rng(f"pretrain/{s}"), size(n))
             for s, n in PRETRAIN_CHARS.items()}
    for s, n in SFT_RECORDS.items():
        records = demonstrations(rng(f"sft/{s}"), splits[s], size(n))
        records = with_demonstrator_habits(rng(f"sft/{s}/habits"), records)
        if s == "train":
            records = _with_lecture(rng("sft/lecture"), records, list(world.LECTURE_DEMONSTRATIONS))
        files[f"sft/{s}.jsonl"] = _jsonl(records)
    for s, n in CHAT_RECORDS.items():
        files[f"chat/{s}.jsonl"] = _jsonl(chat_conversations(seed, s, splits, size(n)))
    for s, n in PREFERENCE_RECORDS.items():
        records = preferences(rng(f"preferences/{s}"), splits[s], size(n))
        if s == "train":
            records = _with_lecture(rng("preferences/lecture"), records, [world.LECTURE_PREFERENCE])
        files[f"preferences/{s}.jsonl"] = _jsonl(records)
    limit = None if scale >= 1 else size(1000)
    files["rl/train.jsonl"] = _jsonl(rl_prompts(rng("rl/train"), splits["train"], limit))
    files["rl/heldout.jsonl"] = _jsonl(rl_prompts(rng("rl/heldout"), splits["test"], limit))
    return files


def write(out: str | Path, seed: int = SEED, scale: float = 1.0) -> dict[str, int]:
    """Generate into folder `out`; returns {relative path: bytes written}."""
    sizes = {}
    for rel, text in build(seed, scale).items():
        path = Path(out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        path.write_bytes(data)  # bytes, so no platform newline translation
        sizes[rel] = len(data)
    return sizes
