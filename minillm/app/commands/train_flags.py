"""The flags the training commands share: --max-steps, --lr, ... of every supervised phase, and
--resume and --quiet of every phase.

Each flag overrides one field of the phase's TrainConfig; a flag left out keeps the phase's
default. One list here keeps `pretrain`, `sft` and `reward` spelling them the same way.
"""
from __future__ import annotations

import argparse

TRAIN_FIELDS = [("max_steps", int), ("batch_size", int), ("lr", float), ("seed", int), ("grad_accum", int),
                ("eval_interval", int), ("warmup_steps", int), ("checkpoint_interval", int)]


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--resume (continue the run saved in --out) and --quiet: every training command has both."""
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--quiet", action="store_true")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """--max-steps, --batch-size, --lr, --seed, --grad-accum, --eval-interval, --warmup-steps,
    --checkpoint-interval, each overriding the TrainConfig field of the same name."""
    for name, kind in TRAIN_FIELDS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)


def train_overrides(args: argparse.Namespace) -> dict:
    """{TrainConfig field: value} for the flags the user gave."""
    return {name: getattr(args, name) for name, _ in TRAIN_FIELDS if getattr(args, name) is not None}
