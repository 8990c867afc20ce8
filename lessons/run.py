"""Run the lesson notebooks top to bottom and save them with their outputs.

    python lessons/run.py [--quick] [--check] [NAMES ...]

NAMES pick lessons by number or name (`05`, `05_pretraining`, `lessons/05_pretraining.ipynb`);
without names every lesson runs, in order. Before the first lesson the runner makes sure the
class run exists (`minillm.app.class_run.class_run()`: the classroom pipeline in runs/pipeline,
or the quick preset in runs/pipeline-quick with --quick; phase 3's other four methods too when
lesson 10 is among the lessons), training whatever is missing with its progress lines, and prints how long that took and how long the run's phases took to train, so
every lesson then finds the models it examines. Each notebook runs in a fresh Jupyter kernel with
matplotlib's inline back-end, so every figure is stored as an image, and is written back with its
outputs and, in its metadata, `"minillm": {"quick": false, "seconds": <wall time>, "cores": ..., "load": ...}`
(the machine's cores and its load as the lesson started). A full run
also writes the measured time into the line `**Running time:** ...` of the lesson's first cell.

--quick sets MINILLM_QUICK=1 (the tests' shrunken runs); --check executes without saving anything,
which is how to catch a lesson broken by a library change without touching its stored outputs.
A failing cell stops its lesson (the file is left as it was), the others still run, and the
runner exits with status 1 after naming every failing lesson and cell.
"""
import argparse
import os
import pathlib
import re
import sys
import time

import nbclient
import nbformat

LESSONS = pathlib.Path(__file__).resolve().parent
INLINE = "module://matplotlib_inline.backend_inline"
# phase 3's methods the class run holds: the lecture's RLHF, and all five where lesson 10 compares them
DEFAULT_METHODS = ("rlhf",)
ALL_METHODS = ("rlhf", "ppo", "dpo", "best-of-n", "grpo")
TIME_LINE = re.compile(r"^\*\*Running time:\*\*.*$", re.MULTILINE)


def find_lessons(names: list[str]) -> list[pathlib.Path]:
    """The notebooks NAMES point at (all of them, in order, for no names)."""
    every = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    picked = []
    for name in names:
        stem = pathlib.Path(name).name.removesuffix(".ipynb")
        matches = [p for p in every if p.stem == stem or p.stem.split("_")[0] == stem.zfill(2)]
        if not matches:
            raise SystemExit(f"no lesson matches {name!r}: expected a number such as 05 or a name such as "
                             f"05_pretraining (lessons: {', '.join(p.stem for p in every)})")
        picked.extend(matches)
    return picked


def format_seconds(seconds: float) -> str:
    """`284.2` -> "4 min 44 s"; under a minute, "38 s"."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def time_line(seconds: float, cores: int | None = None, load: float | None = None) -> str:
    """The lesson's stated time, with the machine's cores and its load as the run started (a
    busy machine can make a lesson several times slower); older runs recorded neither."""
    machine = (f"a {cores}-core CPU at load {load:.1f} as it started" if cores and load is not None
               else "a 2-core CPU shared with other work")
    return (f"**Running time:** {format_seconds(seconds)} in full mode, measured by `python lessons/run.py` "
            f"on {machine} (with `MINILLM_QUICK=1`, as in the tests, much less).")


def state_time(notebook, seconds: float, cores: int, load: float) -> None:
    """Write the measured full-mode time into the first cell: replace its time line, or add one
    after the title."""
    first = notebook.cells[0]
    line = time_line(seconds, cores, load)
    if TIME_LINE.search(first.source):
        first.source = TIME_LINE.sub(line, first.source)
    else:
        title, _, rest = first.source.partition("\n")
        first.source = f"{title}\n\n{line}\n{rest}"


def execute(notebook, path: pathlib.Path, timeout: int) -> float:
    """Run one notebook in a fresh kernel, filling in its outputs; returns the wall time in seconds."""
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    done = [0]
    started = time.perf_counter()

    def progress(cell, cell_index, **_):
        if cell.cell_type == "code":
            done[0] += 1
            print(f"    cell {cell_index:3d} ({done[0]}/{code_cells} code cells) done at "
                  f"{time.perf_counter() - started:6.1f} s", flush=True)

    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}},
                                     on_cell_executed=progress)
    client.execute()
    return time.perf_counter() - started


def first_error(notebook) -> str:
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index}: {output['ename']}: {output['evalue']}"
    return ""


def drop_execution_stamps(notebook) -> None:
    """Remove each cell's execution timestamps: a stored lesson says what it computed, not when."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)


def run_one(path: pathlib.Path, quick: bool, check: bool, timeout: int) -> str:
    """Run and (unless check) save one lesson; returns "" or a one-line description of the failure."""
    notebook = nbformat.read(path, as_version=4)
    cores, load = os.cpu_count(), round(os.getloadavg()[0], 1)  # the machine as the lesson starts
    try:
        seconds = round(execute(notebook, path, timeout), 1)  # one rounding: metadata and time line agree
    except nbclient.exceptions.CellExecutionError as err:
        return first_error(notebook) or f"{err.ename}: {err.evalue}"
    except nbclient.exceptions.CellTimeoutError as err:
        return f"a cell ran past {timeout} s: {str(err).splitlines()[0]}"
    error = first_error(notebook)
    if error:
        return error
    print(f"  {path.stem}: {format_seconds(seconds)}", flush=True)
    if not check:
        notebook.metadata["minillm"] = {"quick": quick, "seconds": seconds, "cores": cores, "load": load}
        if not quick:
            state_time(notebook, seconds, cores, load)
        drop_execution_stamps(notebook)
        nbformat.write(notebook, path)
    return ""


def ensure_class_run(methods) -> None:
    """Train whatever the class run lacks (nothing, when it is there) and say what it cost:
    the seconds spent now and the phases' own training times from their DONE markers."""
    from minillm.app.class_run import class_run
    from minillm.app.pipeline_phases import phases_for, read_done

    print(f"class run: checking (phases {', '.join(phases_for(methods))})", flush=True)
    started = time.perf_counter()
    out = class_run(methods)
    spent = time.perf_counter() - started
    trained = sum(read_done(str(out), phase)["seconds"] for phase in phases_for(methods))
    print(f"class run: ready in {out} after {format_seconds(spent)} here; its phases took "
          f"{format_seconds(trained)} to train", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="lessons to run (number or name); all when none")
    parser.add_argument("--quick", action="store_true", help="set MINILLM_QUICK=1: the tests' short runs")
    parser.add_argument("--check", action="store_true", help="execute only; save nothing")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    args = parser.parse_args(argv)
    paths = find_lessons(args.names)
    os.environ["MPLBACKEND"] = INLINE            # the kernel inherits it: figures become image outputs
    os.environ["MINILLM_QUICK"] = "1" if args.quick else "0"
    ensure_class_run(ALL_METHODS if any(p.stem.startswith("10") for p in paths) else DEFAULT_METHODS)
    failures, total = [], time.perf_counter()
    for number, path in enumerate(paths, 1):
        print(f"[{number}/{len(paths)}] {path.name} ({'quick' if args.quick else 'full'} mode)", flush=True)
        failure = run_one(path, args.quick, args.check, args.timeout)
        if failure:
            print(f"  FAILED {path.name}, {failure}", flush=True)
            failures.append(f"{path.name}, {failure}")
    print(f"{len(paths) - len(failures)} of {len(paths)} lessons ran in {format_seconds(time.perf_counter() - total)}")
    for failure in failures:
        print("failed:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
