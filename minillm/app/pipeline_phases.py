"""The pipeline's phases: their order, their titles, and the DONE markers that say which finished.

Lecture 5 tells one story in four phases; `minillm pipeline` runs them in this order, each in
its own directory of the run (OUT/pretrain, OUT/sft, OUT/rm, OUT/rlhf; phase 3 may also run as
OUT/ppo, OUT/dpo, OUT/best-of-n, OUT/grpo, each from the same SFT model). A phase is finished
when its DONE.json marker exists, written atomically after its final checkpoint. The pipeline
writes the markers; the report and `minillm compare` only read them. This module is the
pipeline's own table, kept apart so that the report can read it without importing the
pipeline that writes the report.
Left out: dependencies other than "the core phases before every method".
"""
from __future__ import annotations

import os

from minillm.errors import UserError
from minillm.io.safe_files import read_json, write_json_atomic

CORE = ("pretrain", "sft", "rm")  # run in this order; each is a directory of the run
METHODS = ("rlhf", "ppo", "dpo", "best-of-n", "grpo")  # phase 3's methods, each from the same SFT model
DEFAULT_METHODS = ("rlhf",)
PHASES = CORE + DEFAULT_METHODS  # the lecture's run; `minillm pipeline --methods` adds other methods
TITLES = {"pretrain": "Phase 1: pretraining", "sft": "Phase 2: supervised finetuning (SFT)",
          "rm": "Phase 3a: reward model", "rlhf": "Phase 3b: RLHF",
          "ppo": "Phase 3b: PPO with a value model and GAE", "dpo": "Phase 3b: DPO (no reward model)",
          "best-of-n": "Phase 3b: best-of-n (no training)", "grpo": "Phase 3b: GRPO on the exact reward"}
DONE = "DONE.json"


def phases_for(methods) -> tuple:
    """The phases of a run with these phase-3 methods: the core three, then each method once."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(f"unknown method(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(METHODS)}")
    return CORE + tuple(dict.fromkeys(methods))


def read_done(out: str, phase: str) -> dict | None:
    """The phase's DONE.json marker, or None while the phase has not finished."""
    path = os.path.join(out, phase, DONE)
    if not os.path.exists(path):
        return None
    return read_json(path)  # a damaged marker is one clear error


def write_done(out: str, phase: str, marker: dict) -> None:
    """Mark the phase finished: its DONE.json appears whole or not at all."""
    write_json_atomic(os.path.join(out, phase, DONE), marker)
