"""Flawed labelers: the gold labeler with the mistakes real preference labelers make.

Phase 3 learns whatever the preference labels say, mistakes included. The gold labeler
(`gold.gold_score`) is the truth of the tiny world; a `Labeler` is the gold labeler with four
flaws switched on by settings, so each flaw can be measured against the truth as it travels
through the reward model into the policy. A labeler compares two answers to one prompt, the
`first` one shown and the `second`, and says which one wins:

1. It scores each answer y as it perceives it:
       u(y) = gold(x, y) + B · len(y) / 100 + S · flatters(y)
   B (length_bias) is what 100 characters of answer are worth to the labeler, in gold points
   (B < 0: a taste for short answers); S (sycophancy) is the bonus of an answer that flatters
   the user, flatters(y) ∈ {0, 1}: y holds a phrase of `phrases.FLATTERY` (praise of the
   person asking: "What a great question!"). The judgement is the answer with the larger u,
   a fair coin on a tie.
2. Position bias p: with probability p the labeler does not read and the first-shown answer
   wins; otherwise the judgement of step 1 stands.
3. Noise P: with probability P the label of step 2 is flipped (a slip of the hand).

With every flaw off (all zero) the labeler is the gold labeler. Answers are shown in a random
order, so position bias alone agrees with gold on 1 - p/2 of the pairs and noise alone on 1 - P.
Each pair draws the same four random numbers whatever the settings, so the pairs flipped at
noise 0.1 are among those flipped at 0.2: two settings differ only where the flaw differs.
Left out: labelers who disagree with each other in taste, fatigue, flaws that depend on the topic.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import asdict, dataclass

from minillm.data import phrases
from minillm.data.gold import gold_score
from minillm.errors import UserError

LENGTH_UNIT = 100  # characters: the length bias is in gold points per this many characters
# Each flaw's allowed range: noise above 0.5 is an anti-labeler, not a noisy one; a length bias of
# ±5 per 100 characters already outweighs the whole gold scale (width 2) for a 40-character gap.
RANGES = {"noise": (0.0, 0.5), "length_bias": (-5.0, 5.0), "position_bias": (0.0, 1.0),
          "sycophancy": (0.0, 2.0), "flattered": (0.0, 1.0)}
LABELER_FILE = "labeler.json"  # beside a flawed preferences/train.jsonl: the settings that made it


def check_setting(name: str, value) -> float:
    """`value` as a float inside RANGES[name], or a UserError that says which range was expected."""
    low, high = RANGES[name]
    flag = "--" + name.replace("_", "-")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{flag} {value!r} is not a number; expected one in [{low:g}, {high:g}]") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise UserError(f"{flag} {value!r} is outside its range; expected a number in [{low:g}, {high:g}]")
    return number


@dataclass(frozen=True)
class Labeler:
    """The settings of a flawed labeler (module docstring: the formula). All zero: the gold labeler."""

    noise: float = 0.0           # P: probability that a label is flipped
    length_bias: float = 0.0     # B: gold points per 100 characters of answer
    position_bias: float = 0.0   # p: probability that the first-shown answer wins unread
    sycophancy: float = 0.0      # S: gold points a flattering answer gains

    def __post_init__(self):
        for name, value in asdict(self).items():
            object.__setattr__(self, name, check_setting(name, value))

    def describe(self) -> str:
        """'gold' or the flaws that are on, e.g. 'noise 0.2, length bias 0.5'."""
        on = [f"{name.replace('_', ' ')} {value:g}" for name, value in asdict(self).items() if value]
        return ", ".join(on) or "gold"


def flatters(text: str) -> bool:
    """Whether a response flatters the user: it holds one of `phrases.FLATTERY` (case ignored)."""
    low = text.lower()
    return any(phrase.lower() in low for phrase in phrases.FLATTERY)


def perceived_score(labeler: Labeler, prompt: str, response: str) -> float:
    """u(y) = gold(x, y) + B · len(y) / 100 + S · flatters(y): the answer's worth to this labeler."""
    return (gold_score(prompt, response) + labeler.length_bias * len(response) / LENGTH_UNIT
            + labeler.sycophancy * flatters(response))


def judge(labeler: Labeler, prompt: str, first: str, second: str, draws: tuple) -> int:
    """Which answer the labeler prefers: 0 for the first shown, 1 for the second.

    Args:
        draws: four uniform numbers in [0, 1): (position, tie coin, noise, spare), drawn per pair
            whatever the settings, so settings compare pair by pair.
    """
    position, coin, slip = draws[:3]
    if position < labeler.position_bias:
        winner = 0  # the first-shown answer wins unread
    else:
        u_first = perceived_score(labeler, prompt, first)
        u_second = perceived_score(labeler, prompt, second)
        winner = (0 if u_first > u_second else 1) if u_first != u_second else int(coin < 0.5)
    return 1 - winner if slip < labeler.noise else winner


def relabel(pairs: list[dict], labeler: Labeler, seed: int) -> list[dict]:
    """The pairs as this labeler labels them, each shown to it in a random order.

    Args:
        pairs: [{"prompt", "chosen", "rejected"}], chosen by the gold labeler.
    Returns:
        [{"prompt", "chosen", "rejected", "gold_agrees"}]: the labeler's winner as chosen, and
        whether it is gold's (gold ties count as agreeing with either order).
    """
    rng = random.Random(seed)
    out = []
    for pair in pairs:
        swap = rng.random() < 0.5  # shown order: rejected first when True
        draws = (rng.random(), rng.random(), rng.random(), rng.random())
        first, second = (pair["rejected"], pair["chosen"]) if swap else (pair["chosen"], pair["rejected"])
        winner = judge(labeler, pair["prompt"], first, second, draws)
        chosen, rejected = (first, second) if winner == 0 else (second, first)
        tie = gold_score(pair["prompt"], chosen) == gold_score(pair["prompt"], rejected)
        out.append({"prompt": pair["prompt"], "chosen": chosen, "rejected": rejected,
                    "gold_agrees": tie or chosen == pair["chosen"]})
    return out


def add_flattery(pairs: list[dict], share: float, seed: int) -> list[dict]:
    """A share of the pairs with a flattering opener put before one of the two answers.

    Which answer gets it is a fair coin (the chosen or the rejected one), so flattery carries
    no information about quality; the gold labeler's order of the pair stays as it was, except
    when the opener's length costs a short chosen answer more than its gap over the rejected one.
    """
    share = check_setting("flattered", share)
    rng = random.Random(seed)
    out = []
    for pair in pairs:
        pick, side, phrase = rng.random(), rng.random() < 0.5, rng.choice(phrases.FLATTERY)
        if pick >= share:
            out.append(dict(pair))
            continue
        field = "chosen" if side else "rejected"
        flattered = {**pair, field: f"{phrase} {pair[field]}"}
        if gold_score(pair["prompt"], flattered["chosen"]) < gold_score(pair["prompt"], flattered["rejected"]):
            flattered["chosen"], flattered["rejected"] = flattered["rejected"], flattered["chosen"]
        out.append(flattered)
    return out


def agreement_with_gold(labelled: list[dict]) -> float:
    """Share of pairs whose label is gold's (`relabel`'s gold_agrees)."""
    return sum(p["gold_agrees"] for p in labelled) / max(len(labelled), 1)


# ----- a flawed data directory's record of its labeler ----------------------------------------

def write_settings(preferences_dir: str, labeler: Labeler, seed: int, flattered: float, measured: dict) -> str:
    """preferences/labeler.json: the labeler's settings, seed, flattered share and measured agreement."""
    path = os.path.join(preferences_dir, LABELER_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**asdict(labeler), "seed": seed, "flattered": flattered, **measured}, f, indent=2)
    return path


def read_settings(preferences_file: str | None) -> tuple[Labeler, int] | None:
    """The (labeler, seed) recorded beside a preferences file, or None for gold-labelled data."""
    if preferences_file is None:
        return None
    path = os.path.join(os.path.dirname(preferences_file), LABELER_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return Labeler(**{k: saved[k] for k in ("noise", "length_bias", "position_bias", "sycophancy")}), int(saved["seed"])


def write_flawed_data(source: str | None, out: str, labeler: Labeler, seed: int = 0,
                      flattered: float = 0.0) -> dict:
    """A data directory like `source` (None: the shipped data/) whose preference pairs this labeler labelled.

    Every file is copied as it is, except preferences/train.jsonl and validation.jsonl: their
    pairs get flattery first (`add_flattery`, a share `flattered`), then the labeler's labels
    (`relabel`). preferences/test.jsonl stays gold-labelled: it measures against the truth.
    Returns {"train_agreement", "validation_agreement", "pairs", "flattered_pairs"}.
    """
    from minillm.data.folders import SHIPPED_DATA  # folders reads the layout; this module only writes
    from minillm.data.readers import read_preferences

    root = source or SHIPPED_DATA
    if not os.path.isfile(os.path.join(root, "preferences", "train.jsonl")):
        raise UserError(f"--from {root} has no preferences/train.jsonl; expected a folder in the layout of data/")
    if os.path.exists(out) and os.listdir(out):
        raise UserError(f"--out {out} already holds files; pass an empty or new directory")
    flattered = check_setting("flattered", flattered)
    rewritten = {os.path.join("preferences", name) for name in ("train.jsonl", "validation.jsonl")}
    measured, total = {}, 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            target = os.path.join(out, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if rel not in rewritten:
                shutil.copyfile(os.path.join(root, rel), target)
                continue
            split = name.removesuffix(".jsonl")
            pairs = [dict(r) for r in read_preferences(os.path.join(root, rel))]
            offset = 0 if split == "train" else 1  # the two splits draw different random numbers
            pairs = add_flattery(pairs, flattered, seed * 2 + offset) if flattered else pairs
            labelled = relabel(pairs, labeler, seed * 2 + offset)
            write_pairs(target, labelled)
            measured[f"{split}_agreement"] = agreement_with_gold(labelled)
            measured[f"{split}_flattered"] = sum(flatters(p["chosen"]) or flatters(p["rejected"]) for p in labelled)
            total += len(labelled)
    measured["pairs"] = total
    write_settings(os.path.join(out, "preferences"), labeler, seed, flattered, measured)
    return measured


def write_pairs(path: str, pairs: list[dict]) -> None:
    """Pairs in the shipped layout, one JSON object a line: prompt, chosen, rejected (and nothing else)."""
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps({"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}) + "\n")
