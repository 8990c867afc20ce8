"""Multi-turn conversations about the tiny world: later questions refer to earlier answers.

A chat model must read the conversation so far, not only the last question. In
"Where does Anna live?" / "Anna lives in Rivertown." / "What is that town known for?" the
third turn names no town: the answer, "Rivertown is known for its bread.", needs the second.
Each conversation follows one person: the first question names them, the next ones say
"she"/"he"; right after the answer names their town or their pet, a question may ask about
"that town" or "it" (the animal). Answers are the world's own (`Task.answers`), so every
assistant turn is correct. Left out: questions that refer further back than the last
answer, several people in one conversation, anything beyond people, towns and pets.
"""
from __future__ import annotations

import random
import re
from typing import Callable

from minillm.data import world
from minillm.data.tasks import Task

MIN_TURNS, MAX_TURNS = 2, 4  # user/assistant exchanges per conversation
PERSON_ATTRIBUTES = ("town", "job", "pet", "food", "age")


def refer_to_person(prompt: str, person: world.Person) -> str:
    """A question about a person, asked with a pronoun once the person has been named.

    Example: ("What is Anna's job?", Anna) -> "What is her job?";
             ("Where does Anna live?", Anna) -> "Where does she live?"
    """
    possessive = "her" if person.pronoun == "she" else "his"
    return re.sub(rf"\b{person.name}\b", person.pronoun, prompt.replace(f"{person.name}'s", possessive))


def refer_to_town(prompt: str, town: str) -> str:
    """Example: ("What is Rivertown known for?", "Rivertown") -> "What is that town known for?"."""
    return re.sub(rf"\b{town}\b", "that town", prompt)


def refer_to_animal(prompt: str, animal: str) -> str:
    """Example: ("What sound does a cat make?", "cat") -> "What sound does it make?"."""
    return prompt.replace(world.article(animal), "it")


def follow_ups(person: world.Person, asked: Task, tasks: dict[str, Task]) -> list[tuple[Task, Callable]]:
    """The questions that may come next, each with the rewrite that makes it refer back.

    Any other question about the person (with a pronoun); after their town, that town's
    questions ("that town"); after their pet, the animal's questions ("it"). Only tasks in
    `tasks` (a split's, by key) are offered.
    """
    name = person.name
    options = [(tasks[f"person:{name}:{a}"], lambda p: refer_to_person(p, person))
               for a in PERSON_ATTRIBUTES if f"person:{name}:{a}" in tasks]
    if asked.key == f"person:{name}:town":
        options += [(t, lambda p: refer_to_town(p, person.town)) for key, t in tasks.items()
                    if key.startswith(f"town:{person.town}:")]
    if asked.key == f"person:{name}:pet":
        options += [(t, lambda p: refer_to_animal(p, person.pet)) for key, t in tasks.items()
                    if key.startswith(f"animal:{person.pet}:")]
    return options


def conversation(rng: random.Random, person: world.Person, tasks: dict[str, Task], turns: int,
                 answer: Callable[[random.Random, Task], str]) -> tuple[list[dict], list[str]] | None:
    """One conversation of `turns` exchanges about `person`, or None if the split runs out.

    Returns:
        (messages, task keys asked), messages alternating user and assistant.
    """
    openers = [tasks[f"person:{person.name}:{a}"] for a in PERSON_ATTRIBUTES if f"person:{person.name}:{a}" in tasks]
    if not openers:
        return None
    task = rng.choice(openers)
    messages = [{"role": "user", "content": rng.choice(task.prompts)},
                {"role": "assistant", "content": answer(rng, task)}]
    keys = [task.key]
    while len(keys) < turns:
        options = [(t, rewrite) for t, rewrite in follow_ups(person, task, tasks) if t.key not in keys]
        if not options:
            return None
        task, rewrite = rng.choice(options)
        messages += [{"role": "user", "content": rewrite(rng.choice(task.prompts))},
                     {"role": "assistant", "content": answer(rng, task)}]
        keys.append(task.key)
    return messages, keys


def conversations(rng: random.Random, allowed: list[Task], required: list[Task] | None, n: int,
                  answer: Callable[[random.Random, Task], str]) -> list[dict]:
    """n conversations of MIN_TURNS..MAX_TURNS exchanges as {"messages": [...]} records.

    Args:
        allowed: the tasks any turn may ask (a split's, plus train's for held-out splits).
        required: when given, every conversation asks at least one of these (the split's own
            tasks), so a held-out conversation always holds a question never trained on.
        answer: (rng, task) -> the assistant's text (a correct answer, maybe with a habit).
    """
    tasks = {t.key: t for t in allowed}
    needed = {t.key for t in required} if required is not None else None
    out = []
    for _ in range(200 * n):
        if len(out) == n:
            return out
        made = conversation(rng, rng.choice(world.PEOPLE), tasks, rng.randint(MIN_TURNS, MAX_TURNS), answer)
        if made and (needed is None or needed & set(made[1])):
            out.append({"messages": made[0]})
    raise RuntimeError(f"could not make {n} conversations from {len(allowed)} tasks")
