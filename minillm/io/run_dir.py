"""Run directories that are never destroyed by mistake: what a command may write into, and resume from.

Lecture: a trained model is hours of work, so no command may write over it unless asked.
Every training command writes RUN.json into its --out first: the command and the settings
it was started with. Before writing anything it makes a `RunDir`, which checks:
  - a new or empty directory: start; an output that is one of the run's own inputs
    (`--init`, `--rm`, ...), or holds one: refused, whatever the flags;
  - a directory holding a run (or anything else): refused, unless `resume` (the same command
    with the same settings, each difference named) or `overwrite` (a minillm run is cleared:
    renamed aside, then deleted; files minillm did not write are never deleted);
  - resuming removes the finished run's DONE.json marker and the temporary checkpoint
    directories a killed save left behind, before anything is written.
`check_output_dir`/`prepare_output_dir` are the same rule for a directory a command fills once
(`export`, `import-hf`, the pipeline's top directory). Left out: locking against two commands
writing one directory.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from minillm.errors import UserError
from minillm.io import checkpoint
from minillm.io.safe_files import read_json, write_json_atomic

RUN_FILE = "RUN.json"
DONE_FILE = "DONE.json"
# What only minillm writes at the top of a directory: a run's record, a pipeline's, a checkpoint.
MINILLM_MARKERS = (RUN_FILE, "pipeline.json", DONE_FILE, "checkpoint/config.json", "config.json")
# Written beside a run by the pipeline (the time its attempts took): not part of the run.
COMPANION_FILES = ("ATTEMPTS.json",)


def _resolved(path) -> Path:
    """The real place a path names (a symbolic link to a run is that run)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def absolute_paths(paths):
    """A path, or a list of them, made absolute (None stays None): how RUN.json records inputs."""
    if paths is None:
        return None
    if isinstance(paths, (list, tuple)):
        return [os.path.abspath(str(p)) for p in paths]
    return os.path.abspath(str(paths))


def refuse_inputs_as_output(out, inputs: dict) -> None:
    """Refuse an output directory that is one of the run's inputs or holds one.

    Args:
        inputs: {flag: path}, e.g. {"--init": "runs/pt"}; None values (an input not given) are skipped.
    """
    target = _resolved(out)
    for flag, path in inputs.items():
        if path is None:
            continue
        source = _resolved(path)
        run_checkpoint = source / "checkpoint"  # where a run directory keeps its model
        if source == target or target in source.parents or target == run_checkpoint:
            raise UserError(f"the output {out} is (or holds) the {flag} input {path}: writing there would "
                            "destroy the model this run reads; choose another output directory")


def is_minillm_directory(directory: Path) -> bool:
    """Whether a directory holds something minillm wrote: a run, a pipeline, a checkpoint or a model."""
    return any((directory / marker).exists() for marker in MINILLM_MARKERS)


def _listing(directory: Path, limit: int = 4) -> str:
    names = sorted(p.name for p in directory.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _refuse_foreign(directory: Path) -> None:
    if not is_minillm_directory(directory):
        raise UserError(f"{directory} holds files minillm did not write ({_listing(directory)}): "
                        "--overwrite never deletes them; move them away yourself or choose another directory")


def clear_directory(directory: Path) -> None:
    """Empty a minillm directory safely: rename it aside, make a new empty one, then delete the old.

    A crash in between leaves the old directory whole beside the new one (`.NAME.cleared-*`).
    """
    directory = Path(directory)
    _refuse_foreign(directory)
    aside = directory.parent / f".{directory.name}.cleared-{uuid.uuid4().hex[:12]}"
    os.replace(directory, aside)
    directory.mkdir()
    shutil.rmtree(aside, ignore_errors=True)


def _flat(settings: dict, prefix: str = "") -> dict:
    """{"overrides": {"lr": 0.1}} -> {"overrides.lr": 0.1}: each setting under its own name."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def settings_differences(saved: dict, now: dict, growable: tuple = ()) -> list[str]:
    """The settings that differ, one phrase each: "overrides.lr: 0.001 when started, 0.002 now"
    (a setting left at its default reads "not set"); a `growable` number may only grow."""
    saved, now = _flat(json.loads(json.dumps(saved))), _flat(json.loads(json.dumps(now)))  # tuples -> lists
    shown = lambda table, key: repr(table[key]) if key in table else "not set"  # noqa: E731
    grew = lambda key: key in growable and isinstance(saved.get(key), int) and now.get(key, -1) >= saved[key]  # noqa: E731
    return [f"{key}: {shown(saved, key)} when started, {shown(now, key)} now"
            for key in sorted(set(saved) | set(now)) if saved.get(key, ...) != now.get(key, ...) and not grew(key)]


def read_run_record(directory) -> dict | None:
    """RUN.json of a run directory ({"command", "settings"}), or None when there is none."""
    path = Path(directory) / RUN_FILE
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record.get("settings"), dict) or "command" not in record:
        raise UserError(f"{path} is damaged (no command or settings): pass --overwrite to start the run over")
    return record


class RunDir:
    """A training command's output directory: checked when made (nothing written), set up by `start`.

    Checking first lets a command refuse a bad --out, then check its other inputs, and only then
    write: a command that fails on any input leaves no directory and no file behind.

    Args:
        out: the output directory.
        command: the command's name ("pretrain", "sft", ...), recorded in RUN.json.
        settings: everything that decides the run's numbers (JSON data), recorded in RUN.json;
            a resume must pass the same.
        inputs: {flag: path} of the models the run reads.
        growable: settings a resume may raise (RLHF's "config.steps": with a constant learning
            rate a longer run continues exactly); RUN.json then records the new value.
    """

    def __init__(self, out, command: str, settings: dict, inputs: dict | None = None,
                 resume: bool = False, overwrite: bool = False, quiet: bool = False, growable: tuple = ()):
        if resume and overwrite:
            raise UserError("--resume continues the run in the output directory and --overwrite replaces it: "
                            "pass one of them")
        self.out, self.quiet = Path(out), quiet
        self.record = {"command": command, "settings": json.loads(json.dumps(settings))}
        refuse_inputs_as_output(self.out, inputs or {})
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"{out} exists and is not a directory: choose another output directory")
        self.action = "new"
        if self.out.is_dir() and any(p.name not in COMPANION_FILES for p in self.out.iterdir()):
            saved = read_run_record(self.out)
            if overwrite:
                self.action = "clear"
                _refuse_foreign(self.out)
            elif resume:
                _check_resumable(self.out, saved, self.record, growable)
                checkpoint.can_resume(self.out / checkpoint.RUN_SUBDIRECTORY)  # a damaged state: refused now
                self.action = "resume"
            else:
                _refuse_existing(self.out, saved, command)

    def start(self) -> Path:
        """Set the directory up: cleared (overwrite), its finished marker and stale temporary
        directories removed (resume), RUN.json written (a new run)."""
        if self.action == "resume":
            _forget_finished(self.out, self.quiet)
            if read_run_record(self.out) != self.record:  # a growable setting grew
                write_json_atomic(self.out / RUN_FILE, self.record)
            return self.out
        if self.action == "clear" and self.out.exists():
            clear_directory(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / RUN_FILE, self.record)
        return self.out


def _check_resumable(out: Path, saved: dict | None, record: dict, growable: tuple = ()) -> None:
    if saved is None:
        raise UserError(f"{out} holds no {RUN_FILE}, so it is not a run this command can resume "
                        f"({_listing(out)}): choose another directory, or pass --overwrite to replace a minillm run")
    if saved["command"] != record["command"]:
        raise UserError(f"{out} holds a `minillm {saved['command']}` run, not a `minillm {record['command']}` "
                        "one: choose another output directory")
    differences = settings_differences(saved["settings"], record["settings"], growable)
    if differences:
        raise UserError(f"--resume with other settings than {out} was started with would mix two runs; "
                        "differences: " + "; ".join(differences)
                        + ". Resume with the same settings, or pass --overwrite to start over")


def _refuse_existing(out: Path, saved: dict | None, command: str) -> None:
    if saved is not None:
        raise UserError(f"{out} already holds a `minillm {saved['command']}` run: pass --resume to continue it, "
                        "--overwrite to replace it, or choose another output directory")
    if is_minillm_directory(out):
        raise UserError(f"{out} already holds a minillm model or run: pass --overwrite to replace it, "
                        "or choose another output directory")
    raise UserError(f"{out} is not empty ({_listing(out)}) and minillm did not write it: "
                    "choose a new or empty output directory")


def _forget_finished(out: Path, quiet: bool) -> None:
    """Before a resumed run writes anything: its DONE marker goes (the run is no longer finished),
    and so do the temporary directories of saves a kill interrupted."""
    (out / DONE_FILE).unlink(missing_ok=True)
    for stale in out.glob(".*.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            if not quiet:
                print(f"removed {stale}, left by a save that was interrupted", file=sys.stderr)


def check_output_dir(out, overwrite: bool = False) -> None:
    """Refuse, before any work, an output a command fills once (`export`, `import-hf`, the
    pipeline) unless it is new or empty, or, with overwrite, something minillm wrote."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory: choose another output directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            what = "a minillm model or run" if is_minillm_directory(out) else f"files ({_listing(out)})"
            raise UserError(f"{out} is not empty: it holds {what}; pass --overwrite to replace it, "
                            "or choose a new or empty directory")
        _refuse_foreign(out)


def prepare_output_dir(out, overwrite: bool = False) -> Path:
    """`check_output_dir`, then make `out` an empty directory (a minillm one is cleared with overwrite)."""
    check_output_dir(out, overwrite)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        clear_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    return out
