"""The pipeline's phases: their order, their titles, and the DONE markers that say which finished.

Lecture 5 tells one story in four phases; `minillm pipeline` runs them in this order, each in
its own directory of the run (OUT/pretrain, OUT/sft, OUT/rm, OUT/rlhf). A phase is finished
when its DONE.json marker exists, written atomically after its final checkpoint. The pipeline
writes the markers; the report and `minillm compare` only read them. This module is the
pipeline's own table, kept apart so that the report can read it without importing the
pipeline that writes the report.
Left out: phases other than the lecture's four, dependencies other than "the one before".
"""
from __future__ import annotations

import json
import os

from minillm.safe_files import write_json_atomic

PHASES = ("pretrain", "sft", "rm", "rlhf")  # run in this order; each is a directory of the run
TITLES = {"pretrain": "Phase 1: pretraining", "sft": "Phase 2: supervised finetuning (SFT)",
          "rm": "Phase 3a: reward model", "rlhf": "Phase 3b: RLHF"}
DONE = "DONE.json"


def read_done(out: str, phase: str) -> dict | None:
    """The phase's DONE.json marker, or None while the phase has not finished."""
    path = os.path.join(out, phase, DONE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_done(out: str, phase: str, marker: dict) -> None:
    """Mark the phase finished: its DONE.json appears whole or not at all."""
    write_json_atomic(os.path.join(out, phase, DONE), marker)
