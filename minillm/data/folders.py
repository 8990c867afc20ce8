"""Where each phase's data lives: the layout of a data folder, the shipped one or a user's.

Every phase reads its default files from the shipped tiny world, `data/` beside the package
(pretrain/, sft/, chat/, preferences/, rl/), and `minillm pipeline --data DIR` reads a user's folder
in the same layout. Both go through `DataLayout`, so a file name is written once, here.
Left out: remote datasets, several files per split, per-phase folders given separately.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from minillm.data.readers import read_demonstrations, read_preferences, read_prompts, read_text
from minillm.errors import MissingFileError, UserError

# data/ of a source checkout: minillm/data/folders.py -> minillm/data -> minillm -> the checkout
SHIPPED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")

LAYOUT_HELP = ("expected DIR/pretrain/ (train.txt [+ validation.txt], or any .txt files), "
               "DIR/sft/train.jsonl [+ validation.jsonl, test.jsonl], "
               "DIR/preferences/train.jsonl [+ validation.jsonl], DIR/rl/train.jsonl [+ heldout.jsonl], "
               "optionally DIR/chat/train.jsonl [+ validation.jsonl, test.jsonl] (multi-turn conversations) "
               "(the layout of the shipped data/ folder)")


@dataclass
class DataLayout:
    """The files each phase reads; optional ones are None. See `LAYOUT_HELP`."""

    pretrain: str                   # a text file, or a directory of .txt files
    pretrain_val: str | None
    sft: str
    sft_val: str | None
    sft_test: str | None
    preferences: str
    preferences_val: str | None
    rl: str
    rl_heldout: str | None
    chat: str | None = None         # multi-turn conversations (messages), trained on beside sft
    chat_val: str | None = None
    chat_test: str | None = None    # the pipeline report's multi-turn exchange comes from here

    def held_out(self) -> str:
        """The file held-out prompts come from: rl/heldout, else sft/test, else rl/train."""
        return self.rl_heldout or self.sft_test or self.rl


def resolve_data(data_dir: str | None) -> DataLayout:
    """The layout of `data_dir` (None: the shipped data), checked before any work starts.

    Raises:
        FileNotFoundError: one sentence listing everything missing and the layout expected.
    """
    root = data_dir or SHIPPED_DATA
    where = f"--data {root}" if data_dir else f"the shipped data folder {root} (it comes with a source checkout)"
    if not os.path.isdir(root):
        raise MissingFileError(f"{where}: no such directory; {LAYOUT_HELP}")
    path = lambda *parts: os.path.join(root, *parts)  # noqa: E731
    maybe = lambda *parts: path(*parts) if os.path.isfile(path(*parts)) else None  # noqa: E731
    pretrain_dir = path("pretrain")
    texts = sorted(f for f in os.listdir(pretrain_dir) if f.endswith(".txt")) if os.path.isdir(pretrain_dir) else []
    missing = [] if texts else ["pretrain/ with .txt files"]
    missing += [name for name in ("sft/train.jsonl", "preferences/train.jsonl", "rl/train.jsonl")
                if not maybe(*name.split("/"))]
    if missing:
        raise MissingFileError(f"{where} is missing {', '.join(missing)}; {LAYOUT_HELP}")
    split = "train.txt" in texts and "validation.txt" in texts
    return DataLayout(pretrain=path("pretrain", "train.txt") if split else pretrain_dir,
                      pretrain_val=path("pretrain", "validation.txt") if split else None,
                      sft=path("sft", "train.jsonl"), sft_val=maybe("sft", "validation.jsonl"),
                      sft_test=maybe("sft", "test.jsonl"), preferences=path("preferences", "train.jsonl"),
                      preferences_val=maybe("preferences", "validation.jsonl"),
                      rl=path("rl", "train.jsonl"), rl_heldout=maybe("rl", "heldout.jsonl"),
                      chat=maybe("chat", "train.jsonl"), chat_val=maybe("chat", "validation.jsonl"),
                      chat_test=maybe("chat", "test.jsonl"))


def check_files(layout: DataLayout, skip_bad: bool = True) -> None:
    """Read every file of the layout once, before any phase runs: a bad record (with skip_bad
    False) or a file with no usable record stops the run now, not after an hour of training."""
    if not read_text(layout.pretrain).strip():
        raise UserError(f"{layout.pretrain} holds no text to pretrain on")
    readers = [(layout.sft, read_demonstrations), (layout.sft_val, read_demonstrations),
               (layout.sft_test, read_demonstrations), (layout.preferences, read_preferences),
               (layout.preferences_val, read_preferences), (layout.rl, read_prompts), (layout.rl_heldout, read_prompts)]
    for path, read in readers:
        if path is not None and not read(path, skip_bad):
            raise UserError(f"{path} holds no usable record ({len(read(path, True).skipped)} bad ones skipped)")


def shipped() -> DataLayout:
    """The shipped tiny world's files: every phase's default."""
    return resolve_data(None)
