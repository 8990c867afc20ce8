"""The pipeline's phases: their order, their titles, and the DONE markers that say which finished.

Lecture 5 tells one story in four phases; `minillm pipeline` runs them in this order, each in
its own directory of the run (OUT/pretrain, OUT/sft, OUT/rm, OUT/rlhf; phase 3 may also run as
OUT/ppo, OUT/dpo, OUT/best-of-n, OUT/grpo, each from the same SFT model). A phase is finished
when its DONE.json marker exists, written atomically after its final checkpoint. A marker is a
`PhaseMarker`: when and where the phase ran, its size, and its summary, the dataclass of its
kind (`SUMMARIES`, defined in phases/summaries.py). The pipeline writes the markers; the report,
`minillm results` and `minillm compare` only read them (`read_marker`). This module is the
pipeline's own table, kept apart so that the report can read it without importing the
pipeline that writes the report.
Left out: dependencies other than "the core phases before every method".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from minillm.errors import UserError
from minillm.io.safe_files import read_json, write_json_atomic
from minillm.phases import summaries

CORE = ("pretrain", "sft", "rm")  # run in this order; each is a directory of the run
METHODS = ("rlhf", "ppo", "dpo", "best-of-n", "grpo")  # phase 3's methods, each from the same SFT model
DEFAULT_METHODS = ("rlhf",)
PHASES = CORE + DEFAULT_METHODS  # the lecture's run; `minillm pipeline --methods` adds other methods
TITLES = {"pretrain": "Phase 1: pretraining", "sft": "Phase 2: supervised finetuning (SFT)",
          "rm": "Phase 3a: reward model", "rlhf": "Phase 3b: RLHF",
          "ppo": "Phase 3b: PPO with a value model and GAE", "dpo": "Phase 3b: DPO (no reward model)",
          "best-of-n": "Phase 3b: best-of-n (no training)", "grpo": "Phase 3b: GRPO on the exact reward"}
DONE = "DONE.json"
SUMMARIES = {"pretrain": summaries.PretrainSummary, "sft": summaries.SFTSummary, "rm": summaries.RewardSummary,
             "rlhf": summaries.TrainedSummary, "ppo": summaries.TrainedSummary, "grpo": summaries.TrainedSummary,
             "dpo": summaries.DPOSummary, "best-of-n": summaries.BestOfNSummary}  # each phase's kind of summary


@dataclass(kw_only=True)
class PhaseSize(summaries.Summary):
    """Parameters N, tokens D and training FLOPs of one finished phase (`report.phase_size`)."""

    parameters: int
    tokens: int
    flops: int


@dataclass(kw_only=True)
class PhaseMarker:
    """A finished phase's DONE.json: when it finished, its seconds (interrupted attempts included),
    whether it resumed, the machine and the command (None where the run did not record them),
    its size and its summary."""

    phase: str
    finished_at: float              # time.time()
    seconds: float
    resumed: bool
    size: PhaseSize
    summary: summaries.Summary          # SUMMARIES[phase]
    machine: str | None = None
    command: str | None = None

    def to_json(self) -> dict:
        saved = {"phase": self.phase, "finished_at": self.finished_at, "seconds": self.seconds,
                 "resumed": self.resumed, "machine": self.machine, "command": self.command,
                 "size": self.size.to_json(), "summary": self.summary.to_json()}
        return {k: v for k, v in saved.items() if v is not None}

    @classmethod
    def from_json(cls, saved: dict) -> "PhaseMarker":
        phase = saved["phase"]
        return cls(**{**saved, "size": PhaseSize.from_json(saved["size"]),
                      "summary": SUMMARIES[phase].from_json(saved["summary"])})


def phases_for(methods) -> tuple:
    """The phases of a run with these phase-3 methods: the core three, then each method once."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UserError(f"unknown method(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(METHODS)}")
    return CORE + tuple(dict.fromkeys(methods))


def read_done(out: str, phase: str) -> dict | None:
    """The phase's DONE.json marker as saved (a JSON object), or None while the phase has not finished."""
    path = os.path.join(out, phase, DONE)
    if not os.path.exists(path):
        return None
    return read_json(path)  # a damaged marker is one clear error


def read_marker(out: str, phase: str) -> PhaseMarker | None:
    """The phase's DONE.json marker as a `PhaseMarker`, or None while the phase has not finished."""
    saved = read_done(out, phase)
    if saved is None:
        return None
    try:
        return PhaseMarker.from_json(saved)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{os.path.join(out, phase, DONE)} is not a {phase} marker minillm wrote "
                        f"({type(err).__name__}: {err}); run the phase again with `minillm pipeline`") from None


def write_done(out: str, marker: PhaseMarker) -> None:
    """Mark the phase finished: its DONE.json appears whole or not at all."""
    write_json_atomic(os.path.join(out, marker.phase, DONE), marker.to_json())
