"""The flags the training commands share, each parsed by its one declared rule (minillm/io/checks.py).

--max-steps, --lr, ... of every supervised phase override one field of the phase's
TrainConfig each (a flag left out keeps the phase's default); --resume, --overwrite and
--quiet belong to every training command. `number_flag` adds any other numeric flag with its
rule, so a zero, negative or non-finite value is refused before any work, in one line.
"""
from __future__ import annotations

import argparse

from minillm.io import checks
from minillm.phases.trainer import TRAIN_RULES

TRAIN_FIELDS = ["max_steps", "batch_size", "lr", "seed", "grad_accum", "eval_interval", "warmup_steps",
                "checkpoint_interval"]


def number_flag(parser: argparse.ArgumentParser, flag: str, rule: checks.Rule, **kwargs) -> None:
    """Add a numeric flag parsed (and range-checked) by `rule`; the help names the range."""
    help_text = kwargs.pop("help", None)
    expected = f"({rule.expected})"
    parser.add_argument(flag, type=rule.parse, help=f"{help_text} {expected}" if help_text else expected, **kwargs)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--resume, --overwrite and --quiet: every training command has them."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (with the settings it was started with)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the minillm run already in --out (files minillm did not write are never deleted)")
    parser.add_argument("--quiet", action="store_true")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """--max-steps, --batch-size, --lr, --seed, --grad-accum, --eval-interval, --warmup-steps,
    --checkpoint-interval, each overriding the TrainConfig field of the same name."""
    for name in TRAIN_FIELDS:
        number_flag(parser, "--" + name.replace("_", "-"), TRAIN_RULES[name], dest=name, default=None)


def train_overrides(args: argparse.Namespace) -> dict:
    """{TrainConfig field: value} for the flags the user gave."""
    return {name: getattr(args, name) for name in TRAIN_FIELDS if getattr(args, name) is not None}
