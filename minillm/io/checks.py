"""One declared rule per number a user chooses: its type, its range, and that it is finite.

Lecture-independent plumbing. A flag like `--lr` or a field like `RLHFConfig.beta` is
checked by one `Rule` before any work starts: the command line parses it with `rule.parse`
(argparse's `type=`), the Python API checks it with `rule.check`, and both say the same
sentence. NaN and infinity are refused everywhere: no setting of this project means them.
Example: `POSITIVE.check("lr", float("nan"))` raises "lr must be a positive finite number, got nan".

A settings dataclass declares each field with `setting(default, help, rule)`: the field's
rule and the sentence a user reads in `--help` live beside it, and `rules_of` gathers the
rules of a class (the commands make one flag per ruled field from the same metadata).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from typing import Callable

from minillm.errors import UserError


@dataclass(frozen=True)
class Rule:
    """A number's type (int or float), the range it must lie in, and the words for that range."""

    kind: type
    ok: Callable[[float], bool]
    expected: str

    def problem(self, value) -> str | None:
        """Why `value` breaks the rule, or None when it keeps it."""
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            if not (isinstance(value, float) and value.is_integer()):
                return f"must be {self.expected} (a whole number), got {value!r}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"must be {self.expected}, got {value!r}"
        if not math.isfinite(value) or not self.ok(value):
            return f"must be {self.expected}, got {value!r}"
        return None

    def check(self, name: str, value) -> None:
        """Raise a UserError naming `name` when `value` breaks the rule (None is left to the caller)."""
        if value is not None and (why := self.problem(value)):
            raise UserError(f"{name} {why}")

    def parse(self, text: str):
        """argparse's `type=`: the text as a number that keeps the rule, or an error argparse prints."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.expected}, got {text!r}") from None
        if why := self.problem(value):
            raise argparse.ArgumentTypeError(why)
        return value


POSITIVE_INT = Rule(int, lambda v: v >= 1, "a positive integer")
NONNEGATIVE_INT = Rule(int, lambda v: v >= 0, "an integer >= 0")
SEED = Rule(int, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2**32)")
POSITIVE = Rule(float, lambda v: v > 0, "a positive finite number")
NONNEGATIVE = Rule(float, lambda v: v >= 0, "a finite number >= 0")
PROBABILITY = Rule(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
UNIT = Rule(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
BETA = Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def check_fields(obj, rules: dict[str, Rule]) -> None:
    """Check every field of a settings object (a dataclass) that has a rule, naming its flag.

    Example: TrainConfig(lr=-1) -> "lr (--lr) must be a positive finite number, got -1".
    """
    for name, rule in rules.items():
        rule.check(f"{name} (--{name.replace('_', '-')})", getattr(obj, name))


def setting(default, help: str, rule: Rule | None = None):
    """A dataclass field with its `--help` sentence and, for a number a user chooses, its rule.

    Example: `lr: float = setting(1e-3, "peak learning rate", POSITIVE)` gives the flag `--lr`.
    """
    return field(default=default, metadata={"help": help, "rule": rule})


def ruled_fields(cls) -> list:
    """The fields of a settings dataclass declared with a rule: each one is a command-line flag."""
    return [f for f in fields(cls) if f.metadata.get("rule") is not None]


def rules_of(cls) -> dict[str, Rule]:
    """{field name: rule} of every field of a settings dataclass declared with a rule."""
    return {f.name: f.metadata["rule"] for f in ruled_fields(cls)}
