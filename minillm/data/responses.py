"""Good and bad responses to the world's questions, for demonstrations and preference pairs.

SFT (Lecture 5, phase 2) imitates good responses; the reward model (phase 3) learns from a
good response beside a worse one. The worse one is made in one of the ways `gold_score`
penalises: a wrong fact, a dodge, a follow-up question, rudeness, rambling, repetition or
garbled text, so a tiny reward model can learn the difference. Left out: subtle mistakes
(half-right answers) as rejected responses; they would be too hard for a tiny model.
"""
from __future__ import annotations

import random

from minillm.data import phrases
from minillm.data.tasks import Task, all_tasks, arithmetic_facts
from minillm.errors import UserError

REJECTIONS = ("wrong", "dodge", "question", "rude", "ramble", "repeat", "garble")
REJECTION_WEIGHTS = (10, 16, 16, 16, 16, 13, 13)


def good_response(rng: random.Random, task: Task) -> str:
    """A direct, correct, concise, polite answer."""
    return rng.choice(task.answers)


def bad_response(rng: random.Random, task: Task, how: str) -> str:
    """A worse answer to `task`, made in the way `how` names (one of REJECTIONS)."""
    answer = good_response(rng, task)
    if how == "wrong":
        return wrong_answer(rng, task)
    if how == "dodge":
        return rng.choice(phrases.LECTURES if task.kind == "unsafe" else phrases.DODGES)
    if how == "question":
        return rng.choice(phrases.FOLLOW_UPS).format(subject=subject(task))
    if how == "rude":
        if rng.random() < 0.5:
            return rng.choice(phrases.RUDE_ALONE)
        return f"{rng.choice(phrases.RUDE_OPENERS)} {answer}"
    if how == "ramble":
        if task.kind == "unsafe":
            return rng.choice(phrases.LECTURES)
        before, after = rng.sample(phrases.RAMBLES, 2)
        return f"{before} {answer} {after} {rng.choice(phrases.RAMBLES[:4])}"
    if how == "repeat":
        return " ".join([answer] * rng.randint(3, 4))
    if how == "garble":
        return garble(rng, answer)
    raise UserError(f"unknown kind of bad response {how!r}; expected one of {REJECTIONS}")


def imperfect_demonstration(rng: random.Random, answer: str, how: str) -> str:
    """A correct answer as a hurried human demonstrator writes it: hedged or ending in a question.

    Example: ("Anna lives in Rivertown.", "hedge") -> "I'm not sure, but Anna lives in Rivertown."
    Both habits cost 0.4 of gold (a dodge, a question); the content stays right.
    """
    if how == "hedge":
        first, _, rest = answer.partition(" ")
        if first in _SENTENCE_STARTS:  # not a name: lower case after "but"
            answer = f"{first.lower()} {rest}"
        return f"{rng.choice(phrases.HEDGES)} {answer}"
    if how == "question":
        return f"{answer} {rng.choice(phrases.AFTERTHOUGHTS)}"
    raise UserError(f"unknown demonstration habit {how!r}; expected 'hedge' or 'question'")


_SENTENCE_STARTS = {"The", "A", "An", "First,", "You", "It", "Its", "There", "Sure,", "Sorry,"}


def subject(task: Task) -> str:
    """What a task is about, for follow-up questions: 'Anna', 'make pasta', 'these numbers'."""
    if task.kind in ("arithmetic", "unsafe"):
        return "that"
    return task.key.split(":")[1]


def wrong_answer(rng: random.Random, task: Task) -> str:
    """A confident answer that is false: another town, another number, another recipe."""
    if task.kind in ("fact", "number"):
        answer = rng.choice([a for a in task.answers if task.expected[0] in a] or task.answers)
        value = task.expected[0]
        wrong = rng.choice(task.wrong)
        if value not in answer:  # a landmark written with a capital letter
            value, wrong = value[0].upper() + value[1:], wrong[0].upper() + wrong[1:]
        return answer.replace(value, wrong)
    if task.kind == "arithmetic":
        right = int(task.expected[0])
        wrong = rng.choice([n for n in range(max(0, right - 3), right + 4) if n != right])
        a, word, b = _operands(task)
        return f"{a} {word} {b} is {wrong}."
    if task.kind == "howto":
        other = rng.choice([t for t in all_tasks() if t.kind == "howto" and t.key != task.key])
        return other.answers[0]
    if task.kind == "word":
        others = [s for t in all_tasks() if t.kind == "word" and t.key != task.key
                  for s in t.answers if task.expected[0] not in s.lower()]
        return rng.choice(others)
    return rng.choice(phrases.COMPLIANCE)


def _operands(task: Task) -> tuple[int, str, int]:
    for a, word, b, _c in arithmetic_facts():
        if task.key == f"math:{a}{word}{b}":
            return a, word, b
    raise KeyError(task.key)


def garble(rng: random.Random, text: str, rate: float = 0.4) -> str:
    """Corrupt about `rate` of the letters (swap, drop or replace), like an untrained model."""
    chars = list(text)
    for i in range(len(chars)):
        if chars[i].isalpha() and rng.random() < rate:
            op = rng.randrange(3)
            if op == 0 and i + 1 < len(chars):
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
            elif op == 1:
                chars[i] = ""
            else:
                chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return "".join(chars)
