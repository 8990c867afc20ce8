"""The class run: the classroom pipeline's models, which lessons 05-10 examine.

A lecturer runs `minillm pipeline` once before class (classroom preset, seed 1337, written to
`runs/pipeline`). A lesson calls `class_run()`: it returns that directory when every phase the
lesson needs has finished there, and otherwise trains what is missing (the pipeline resumes
finished phases, with its progress lines), so a student can open any lesson cold.

The studies the last lessons read (`benchmarks/overoptimization.py`, `benchmarks/labeler_flaws.py`)
come the same way: `study_results` returns a study's results, running it first when they are missing.

`MINILLM_QUICK=1` (the tests) swaps in the quick preset and its own directory; `MINILLM_CLASS_RUN`
points at a class run somewhere else.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from minillm.app.pipeline import Pipeline
from minillm.app.pipeline_phases import DEFAULT_METHODS, phases_for, read_done

CLASS_SEED = 1337
QUICK_ENV = "MINILLM_QUICK"
CLASS_RUN_ENV = "MINILLM_CLASS_RUN"


def quick_mode() -> bool:
    """True when the tests' short runs are asked for (MINILLM_QUICK set and not 0)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def project_root() -> Path:
    """The checkout's root when minillm runs from one (where `runs/` lives), else the working directory."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() else Path.cwd()


def class_run_dir() -> Path:
    """Where the class run lives: MINILLM_CLASS_RUN, else runs/pipeline (runs/pipeline-quick in quick mode)."""
    chosen = os.environ.get(CLASS_RUN_ENV)
    if chosen:
        return Path(chosen)
    return project_root() / "runs" / ("pipeline-quick" if quick_mode() else "pipeline")


def missing_phases(out: Path, methods=DEFAULT_METHODS) -> list[str]:
    """The phases (of the core three and `methods`) that have no DONE marker in `out` yet."""
    return [phase for phase in phases_for(tuple(methods)) if read_done(str(out), phase) is None]


def class_run(methods=DEFAULT_METHODS) -> Path:
    """The class run's directory, with every phase of `methods` finished (trained here if missing)."""
    out = class_run_dir()
    missing = missing_phases(out, methods)
    if missing or not (out / "report.md").exists():
        preset = "quick" if quick_mode() else "classroom"
        print(f"class run: training {', '.join(missing) or 'the report'} in {out} "
              f"({preset} preset, seed {CLASS_SEED})", flush=True)
        Pipeline(out=str(out), preset=preset, seed=CLASS_SEED, methods=tuple(methods)).run()
    return out


def study_results(script: str, name: str, args: list[str]) -> tuple[Path, dict]:
    """(directory, results.json) of the study `benchmarks/SCRIPT` in runs/NAME, run first with `args`
    when its results are missing, its progress lines printed as they come. In quick mode the study
    runs with --quick in a fresh temporary directory."""
    out = Path(tempfile.mkdtemp()) / name if quick_mode() else project_root() / "runs" / name
    if not (out / "results.json").exists():
        command = [sys.executable, str(project_root() / "benchmarks" / script), *args, "--out", str(out)]
        command += ["--quick"] if quick_mode() else []
        print("running the study:", " ".join(command[1:]), flush=True)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as study:
            for line in study.stdout:
                print(line, end="", flush=True)
        if study.returncode != 0:
            raise RuntimeError(f"the study {script} stopped with exit status {study.returncode} (its output is above)")
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))
