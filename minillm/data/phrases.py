"""Stock phrases of the tiny world: dodges, follow-up questions, rudeness, rambling, chit-chat.

Pretraining text is messy (Lecture 5, phase 1): people answer a question with another
question, wander off topic, or are rude. The generator sprinkles these phrases into forum
threads, and the preference pairs use them to build rejected responses, so the reward model
sees the same kinds of bad behaviour that `gold.gold_score` penalises. All words here count
as known words for gold's garbage check. Left out: anything offensive beyond mild rudeness.
"""
from __future__ import annotations

DODGES = (
    "I'm not sure.",
    "I don't know, sorry.",
    "That is hard to say.",
    "I have no idea.",
    "It depends, really.",
    "Maybe ask someone else.",
)

# "{subject}" is filled with what the prompt is about (a name, a food, a number).
FOLLOW_UPS = (
    "Why do you want to know?",
    "Do you mean {subject}?",
    "Can you tell me more first?",
    "What do you need it for?",
    "Is this for school?",
    "Why do you ask about {subject}?",
    "Have you asked anyone else about {subject}?",
)

RUDE_OPENERS = (
    "Ugh, what a silly question.",
    "Everyone knows that, obviously.",
    "Use your brain.",
    "That is a dumb question.",
    "Stop wasting my time.",
)

RUDE_ALONE = (
    "Figure it out yourself.",
    "Go away, I am busy.",
    "Whatever. Stop asking me.",
    "Ugh, look it up yourself.",
)

# How a hurried human demonstrator softens a correct answer (the gold labeler counts it as a
# dodge). Only words of the pretraining corpus, so a word-level tokenizer knows them all.
HEDGES = (
    "I'm not sure, but",
    "I don't know, but I think",
    "It is hard to say, but",
    "It depends, but I guess",
)

# The follow-up questions such a demonstrator adds after a full answer.
AFTERTHOUGHTS = (
    "Is this for school?",
    "What do you need it for?",
    "Why do you want to know?",
)

RAMBLES = (
    "Well, let me think about that for a moment.",
    "My grandmother always talked about this on long summer evenings.",
    "It reminds me of the day it rained for a whole week.",
    "People have many opinions about these things, and some change their mind every year.",
    "Anyway, where was I?",
    "I once read a long story about the same thing, but I forget how it ended.",
    "The weather was lovely that day, and everyone was in a good mood.",
    "My cousin says the same, although he says a lot of things.",
    "It is funny how the little things stay with you.",
    "I was going to write more, but my supper got cold.",
)

# Longer, preachy refusals: worse than a short decline (the lecture's losing response).
LECTURES = (
    "I don't know that we should do that. I think it's important to treat every animal and "
    "every person with care, and to think about how they would feel.",
    "That does not sound like a good plan at all. I think it's important that we stop and "
    "think about what could go wrong, and about the people who could get hurt.",
    "Hmm, I would really not do that. In my opinion it's important to be kind and gentle, "
    "and to remember that everyone in town deserves to feel safe.",
)

# Going along with a harmful request: the worst answer to an unsafe prompt.
COMPLIANCE = (
    "Sure! First, wait until nobody is looking. Then, do it quickly. Next, hide what you "
    "did. Finally, act as if nothing happened.",
    "Easy. First, make a plan. Then, sneak in at night. Next, do it fast. Finally, run away.",
)

# Flattery: praise of the person asking, which says nothing about the answer. The gold labeler
# ignores it (beyond the length it adds); a sycophantic labeler (data/labelers.py) rewards it.
FLATTERY = (
    "What a great question!",
    "I love how curious you are!",
    "You are a very kind and clever friend for asking.",
    "Great, I love to help a friend like you.",
)
