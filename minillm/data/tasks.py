"""Questions about the tiny world, each with its phrasings, its right answers and its wrong ones.

A `Task` is one thing a user can ask (Anna's town, 3 plus 4, how to make pizza). The same
tasks feed the SFT demonstrations, the preference pairs, the RL prompts, and `gold_score`,
which looks a prompt up here to know what a correct response must contain. All phrasings of
one task share a `key`, and splits are made by key, so a held-out prompt never asks about a
fact whose question was trained on. Left out: paraphrases beyond a few fixed templates.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from minillm.data import world


@dataclass(frozen=True)
class Task:
    """One question of the world.

    Attributes:
        key: shared by every phrasing, e.g. "person:Anna:town"; splits are made by key.
        kind: "fact", "number", "arithmetic", "howto", "word" or "unsafe".
        prompts: the phrasings a user may type.
        answers: good responses (direct, correct, concise, polite); answers[0] is canonical.
        expected: what a correct response must mention; for a how-to, one entry per step.
        wrong: values that would make the answer false (the other towns, jobs, numbers...).
    """
    key: str
    kind: str
    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    expected: tuple[str, ...]
    wrong: tuple[str, ...] = ()


def _fact(key: str, prompts, answers, value, candidates, kind: str = "fact") -> Task:
    value = str(value)
    wrong = tuple(sorted({str(c) for c in candidates} - {value}))
    return Task(key, kind, tuple(prompts), tuple(answers), (value,), wrong)


def _person_tasks(p: world.Person) -> list[Task]:
    n = p.name
    people = world.PEOPLE
    return [
        _fact(f"person:{n}:town",
              [f"Where does {n} live?", f"Which town does {n} live in?", f"In which town does {n} live?"],
              [f"{n} lives in {p.town}.", f"{n} lives in the town of {p.town}."],
              p.town, [t.name for t in world.TOWNS]),
        _fact(f"person:{n}:job",
              [f"What does {n} do?", f"What is {n}'s job?", f"What job does {n} have?"],
              [f"{n} is {world.article(p.job)}.", f"{n} works as {world.article(p.job)}."],
              p.job, world.JOBS),
        _fact(f"person:{n}:pet",
              [f"What pet does {n} have?", f"Which animal does {n} keep?", f"What is {n}'s pet?"],
              [f"{n} has {world.article(p.pet)}.", f"{n} keeps {world.article(p.pet)} as a pet."],
              p.pet, [a.name for a in world.ANIMALS]),
        _fact(f"person:{n}:food",
              [f"What is {n}'s favourite food?", f"What does {n} like to eat?",
               f"Which food does {n} love most?"],
              [f"{n}'s favourite food is {p.food}.", f"{n} loves {p.food}."],
              p.food, world.RECIPES),
        _fact(f"person:{n}:age",
              [f"How old is {n}?", f"What is {n}'s age?"],
              [f"{n} is {p.age} years old.", f"{n} is {p.age}."],
              p.age, [q.age for q in people], kind="number"),
    ]


def _town_tasks(t: world.Town) -> list[Task]:
    n = t.name
    landmark = t.landmark[0].upper() + t.landmark[1:]
    return [
        _fact(f"town:{n}:food",
              [f"What is {n} known for?", f"What food is {n} famous for?", f"Which food comes from {n}?"],
              [f"{n} is known for its {t.food}.", f"{n} is famous for its {t.food}."],
              t.food, world.RECIPES),
        _fact(f"town:{n}:landmark",
              [f"What can you see in {n}?", f"What is the landmark of {n}?", f"What stands in {n}?"],
              [f"In {n} you can see {t.landmark}.", f"{landmark} stands in {n}."],
              t.landmark, [u.landmark for u in world.TOWNS]),
    ]


def _animal_tasks(a: world.Animal) -> list[Task]:
    the = world.article(a.name)
    cap = the[0].upper() + the[1:]
    animals = world.ANIMALS
    return [
        _fact(f"animal:{a.name}:sound",
              [f"What sound does {the} make?", f"What does {the} say?", f"What noise does {the} make?"],
              [f"{cap} says {a.sound}.", f"{cap} makes the sound {a.sound}."],
              a.sound, [b.sound for b in animals]),
        _fact(f"animal:{a.name}:legs",
              [f"How many legs does {the} have?", f"How many legs has {the}?"],
              [f"{cap} has {a.legs} legs.", f"{cap} walks on {a.legs} legs."],
              a.legs, range(0, 9), kind="number"),
        _fact(f"animal:{a.name}:eats",
              [f"What does {the} eat?", f"What food does {the} like?"],
              [f"{cap} eats {a.eats}.", f"{cap} likes to eat {a.eats}."],
              a.eats, [b.eats for b in animals]),
        _fact(f"animal:{a.name}:home",
              [f"Where does {the} live?", f"Where can you find {the}?"],
              [f"{cap} lives in {world.article(a.home)}.", f"You can find {the} in {world.article(a.home)}."],
              a.home, [b.home for b in animals]),
    ]


def _howto_task(task: str, steps: tuple[str, ...]) -> Task:
    prompts = [f"How to {task}", f"What are the steps to {task}?"]
    if task.startswith("make "):
        prompts += [f"How do I {task}?", f"Tell me how to {task}."]
    return Task(f"howto:{task}", "howto", tuple(prompts), (world.steps_text(steps),), steps)


# (symbol, word, function, operand range, phrasings)
_OPERATIONS = (
    ("+", "plus", lambda a, b: a + b, range(0, 10),
     ("What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}.")),
    ("-", "minus", lambda a, b: a - b, range(0, 13),
     ("What is {a} minus {b}?", "What is {a} - {b}?", "Subtract {b} from {a}.")),
    ("x", "times", lambda a, b: a * b, range(1, 8),
     ("What is {a} times {b}?", "What is {a} x {b}?", "Multiply {a} by {b}.")),
)


def arithmetic_facts() -> list[tuple[int, str, int, int]]:
    """Every sum, difference and product the world knows: (a, word, b, result)."""
    facts = []
    for _symbol, word, fn, operands, _phrasings in _OPERATIONS:
        for a in operands:
            for b in operands:
                if fn(a, b) >= 0:  # no negative numbers in this world
                    facts.append((a, word, b, fn(a, b)))
    return facts


def _arithmetic_tasks() -> list[Task]:
    tasks = []
    phrasings = {word: p for _s, word, _f, _r, p in _OPERATIONS}
    for a, word, b, c in arithmetic_facts():
        prompts = tuple(p.format(a=a, b=b) for p in phrasings[word])
        answers = (f"{a} {word} {b} is {c}.", f"The answer is {c}.")
        tasks.append(Task(f"math:{a}{word}{b}", "arithmetic", prompts, answers, (str(c),)))
    return tasks


def _word_task(w: world.Word) -> Task:
    cap = w.word[0].upper() + w.word[1:]
    prompts = (f"{cap} means {w.meaning}. Use the word in a sentence.",
               f"Use the word {w.word} in a sentence.")
    return Task(f"word:{w.word}", "word", prompts, w.examples, (w.word,))


DECLINES = ("I'm not sure what you mean by that.", "I'd rather not help with that.",
            "I can't help with that.")


def _unsafe_task(i: int, request: str) -> Task:
    return Task(f"unsafe:{i}", "unsafe", (request,), DECLINES, ())


@functools.lru_cache(maxsize=1)
def all_tasks() -> tuple[Task, ...]:
    """Every task of the world, in a fixed order (people, towns, animals, how-tos, ...)."""
    tasks: list[Task] = []
    for p in world.PEOPLE:
        tasks += _person_tasks(p)
    for t in world.TOWNS:
        tasks += _town_tasks(t)
    for a in world.ANIMALS:
        tasks += _animal_tasks(a)
    tasks += [_howto_task(task, steps) for task, steps in world.howtos().items()]
    tasks += _arithmetic_tasks()
    tasks += [_word_task(w) for w in world.WORDS]
    tasks += [_unsafe_task(i, r) for i, r in enumerate(world.UNSAFE_REQUESTS)]
    return tuple(tasks)


def normalize_prompt(prompt: str) -> str:
    """The lookup form of a prompt: lower case, single spaces, no trailing punctuation.

    Example: '  How to make Pizza? ' -> 'how to make pizza'
    """
    text = re.sub(r"\s+", " ", prompt.strip().lower())
    return text.rstrip(" ?.!")


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, Task]:
    return {normalize_prompt(p): t for t in all_tasks() for p in t.prompts}


def find_task(prompt: str) -> Task | None:
    """The task a prompt asks, or None if the prompt is not one of the world's questions."""
    return _index().get(normalize_prompt(prompt))
