"""The pretraining corpus: "internet-like" documents about the tiny world.

Phase 1 of Lecture 5 trains on indiscriminate text. This module writes encyclopedia pages,
short stories, recipes and how-tos, quizzes, sums, dictionary entries and forum threads in
which a question is followed sometimes by an answer, sometimes by more questions, sometimes
by rambling. So a model pretrained here, given "How to make pasta", may add context, ask
more questions or answer, which is exactly what SFT then changes. Every fact is true to
`world`. Documents are joined by DOC_SEPARATOR (`<|endoftext|>` on its own line).
"""
from __future__ import annotations

import random

from minillm.data import phrases, world
from minillm.data.tasks import Task, all_tasks, arithmetic_facts

DOC_SEPARATOR = "\n<|endoftext|>\n"

USERS = ("sunny42", "greenleaf", "breadlover", "quietfox", "millkid", "lakewalker",
         "tinybee", "oldoak", "redkite", "potterpal", "cloudy", "happyhen")

# What a forum poster adds after the question: cooking stories only under how-tos.
HOWTO_CONTEXTS = (
    "I want to cook dinner for my sister tonight, but I have never cooked before.",
    "I tried once and it went badly, so I am asking here.",
    "My mother is visiting on Sunday and I want to do it right.",
)

CONTEXTS = (
    "My friend asked me this yesterday and I did not know what to say.",
    "We are doing a project about the towns for school.",
    "I am new around here and everybody seems to know except me.",
    "Asking for my little brother, he will not stop asking.",
    "I tried to remember this all morning.",
)

THANKS = ("Thanks, that helps a lot!", "Great, thank you.", "Thank you, I will try that.",
          "Oh, of course. Thanks!")

STORY_OPENINGS = ("One sunny morning", "On a rainy afternoon", "Early one winter day",
                  "Late one summer evening", "One quiet Sunday")

STORY_ENDINGS = ("It was a lovely day.", "Everyone was happy, and the day ended well.",
                 "Then they all went home to sleep.", "It was a day to remember.")

RECIPE_INTROS = ("This is an easy recipe for beginners.", "My family makes this every week.",
                 "You only need a little time.", "Here is the way my grandmother did it.")


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def person_page(rng: random.Random, p: world.Person) -> str:
    """An encyclopedia page about one person; sentence order and wording vary."""
    facts = [
        rng.choice([f"{p.name} lives in {p.town}.", f"{p.name} has lived in {p.town} for many years."]),
        rng.choice([f"{p.name} is {world.article(p.job)}.", f"{p.name} works as {world.article(p.job)}."]),
        rng.choice([f"{p.name} has {world.article(p.pet)}.", f"{_cap(p.pronoun)} keeps {world.article(p.pet)} as a pet."]),
        rng.choice([f"{p.name}'s favourite food is {p.food}.", f"{p.name} loves {p.food}."]),
        f"{p.name} is {p.age} years old.",
    ]
    rng.shuffle(facts)
    return f"{p.name}\n" + " ".join(facts[: rng.randint(3, 5)])


def town_page(rng: random.Random, t: world.Town) -> str:
    """An encyclopedia page about one town, its food, landmark and people."""
    people = [p.name for p in world.PEOPLE if p.town == t.name]
    facts = [
        rng.choice([f"{t.name} is known for its {t.food}.", f"{t.name} is famous for its {t.food}."]),
        f"In {t.name} you can see {t.landmark}.",
        f"{' and '.join(people)} live in {t.name}.",
        f"Visitors come to {t.name} to eat {t.food}.",
    ]
    rng.shuffle(facts)
    return f"{t.name}\n{t.name} is a small town. " + " ".join(facts)


def animal_page(rng: random.Random, a: world.Animal) -> str:
    """An encyclopedia page about one animal."""
    cap = _cap(world.article(a.name))
    facts = [f"{cap} says {a.sound}.", f"{cap} has {a.legs} legs.", f"{cap} eats {a.eats}.",
             f"{cap} lives in {world.article(a.home)}."]
    rng.shuffle(facts)
    return f"The {a.name}\n" + " ".join(facts)


def howto_page(rng: random.Random, task: str, steps: tuple[str, ...]) -> str:
    """A recipe or how-to page: the title, maybe an intro, then the four steps."""
    body = world.steps_text(steps)
    if rng.random() < 0.5:
        body = body.replace(". ", ".\n")
    intro = rng.choice(RECIPE_INTROS) + "\n" if rng.random() < 0.4 else ""
    return f"How to {task}\n{intro}{body}"


def related_questions(rng: random.Random, task: Task) -> str:
    """A question followed only by more questions, like a search page's 'people also ask'."""
    others = [t for t in all_tasks() if t.kind == task.kind and t.key != task.key]
    more = [rng.choice(rng.choice(others).prompts) for _ in range(rng.randint(2, 4))]
    if task.kind == "howto":
        topic = task.key.split(":", 1)[1]
        more += [f"How to {topic} quickly", f"How to {topic} without help",
                 f"How long does it take to {topic}?"]
    rng.shuffle(more)
    return task.prompts[0] + "\n" + "\n".join(more)


def forum_thread(rng: random.Random, task: Task) -> str:
    """A question and replies: an answer, more questions, rambling, rudeness, or thanks."""
    users = rng.sample(USERS, 4)
    subject = task.key.split(":")[1]
    first = rng.choice(task.prompts)
    contexts = HOWTO_CONTEXTS if task.kind == "howto" else CONTEXTS
    lines = [first, f"{users[0]}: {first}" + (f" {rng.choice(contexts)}" if rng.random() < 0.6 else "")]
    answered = False
    for user in users[1:rng.randint(2, 4)]:
        style = rng.choices(["answer", "question", "ramble", "rude", "dodge"], [4, 3, 2, 1, 1])[0]
        if style == "answer" and task.kind != "unsafe":
            reply = rng.choice(["", "I think ", "Easy. ", "I know this one. "]) + rng.choice(task.answers)
            answered = True
        elif style == "question":
            reply = rng.choice(phrases.FOLLOW_UPS).format(subject=subject)
        elif style == "ramble":
            reply = " ".join(rng.sample(phrases.RAMBLES, 2))
        elif style == "rude":
            reply = rng.choice(phrases.RUDE_ALONE)
        else:
            reply = rng.choice(phrases.DODGES)
        lines.append(f"{user}: {reply}")
    if answered and rng.random() < 0.5:
        lines.append(f"{users[0]}: {rng.choice(THANKS)}")
    return "\n".join(lines)


def quiz_page(rng: random.Random) -> str:
    """Questions with their answers, as in a school quiz."""
    picked = rng.sample([t for t in all_tasks() if t.kind in ("fact", "number")], 4)
    lines = [f"Q: {rng.choice(t.prompts)}\nA: {rng.choice(t.answers)}" for t in picked]
    return "Quiz\n" + "\n".join(lines)


def sums_page(rng: random.Random) -> str:
    """A worksheet of sums, differences and products, all correct."""
    lines = []
    for a, word, b, c in rng.sample(arithmetic_facts(), 8):
        lines.append(rng.choice([f"{a} {word} {b} is {c}.", f"What is {a} {word} {b}? It is {c}."]))
    return "Sums for class\n" + "\n".join(lines)


def dictionary_entry(rng: random.Random, w: world.Word) -> str:
    """A dictionary entry: the meaning and an example sentence."""
    return f"{_cap(w.word)}\n{_cap(w.word)} means {w.meaning}. For example: {rng.choice(w.examples)}"


def story(rng: random.Random, p: world.Person) -> str:
    """A short story in which a person's facts appear in passing."""
    animal = next(a for a in world.ANIMALS if a.name == p.pet)
    town = next(t for t in world.TOWNS if t.name == p.town)
    his = "her" if p.pronoun == "she" else "his"
    steps = world.RECIPES[p.food]
    lines = [
        f"{p.name} and the {p.pet}",
        f"{rng.choice(STORY_OPENINGS)}, {p.name} the {p.job} walked through {p.town} with {his} {p.pet}.",
        f"They passed {town.landmark}, and the {p.pet} said {animal.sound}.",
        f"{_cap(p.pronoun)} was hungry, so {p.pronoun} made {p.food}.",
        f"First, {p.pronoun} had to {steps[0]}. Finally, {p.pronoun} could {steps[-1]}.",
        rng.choice(STORY_ENDINGS),
    ]
    return "\n".join(lines[:1]) + "\n" + " ".join(lines[1:])


def document(rng: random.Random) -> str:
    """One random document; the mix favours forum threads, where the lecture's point lives."""
    kind = rng.choices(["person", "town", "animal", "howto", "related", "forum", "quiz",
                        "sums", "dictionary", "story"],
                       [10, 5, 7, 12, 3, 35, 6, 6, 4, 12])[0]
    if kind == "person":
        return person_page(rng, rng.choice(world.PEOPLE))
    if kind == "town":
        return town_page(rng, rng.choice(world.TOWNS))
    if kind == "animal":
        return animal_page(rng, rng.choice(world.ANIMALS))
    if kind == "howto":
        return howto_page(rng, *rng.choice(list(world.howtos().items())))
    if kind == "related":
        return related_questions(rng, rng.choice([t for t in all_tasks() if t.kind in ("howto", "fact")]))
    if kind == "forum":
        return forum_thread(rng, rng.choice(all_tasks()))
    if kind == "quiz":
        return quiz_page(rng)
    if kind == "sums":
        return sums_page(rng)
    if kind == "dictionary":
        return dictionary_entry(rng, rng.choice(world.WORDS))
    return story(rng, rng.choice(world.PEOPLE))


def corpus(rng: random.Random, n_chars: int) -> str:
    """Documents joined by DOC_SEPARATOR until the text holds at least `n_chars` characters."""
    docs, size = [], 0
    while size < n_chars:
        docs.append(document(rng))
        size += len(docs[-1]) + len(DOC_SEPARATOR)
    return DOC_SEPARATOR.join(docs) + "\n"
