"""The lesson notebooks: each runs top to bottom in a real Jupyter kernel (quick mode), follows
the lesson conventions, and is stored with the outputs of one full run.

The notebooks read MINILLM_QUICK=1 to shrink their training runs; a broken lesson fails the
suite like any other broken code, and so does a solution cell whose assert no longer holds.
Under `pytest --device cuda` the kernels run on the GPU too (MINILLM_DEVICE). The stored
outputs are made by `python lessons/run.py` (full mode); the checks here read them as stored.
"""
import importlib.util
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parent.parent
LESSONS = sorted((ROOT / "lessons").glob("*.ipynb"))
# a cell that calls one of these draws a figure, so its stored outputs must hold an image
DRAWS = re.compile(r"\bplt\.(show|subplots|figure|hist|plot|bar|imshow|scatter)\(")


# What a lesson's prose must not hold: it stands on its own outputs, so no README runs, dates or
# project history (a year alone is allowed: papers are cited by author and year).
MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
HISTORY = re.compile("|".join([
    r"\bREADME\b",
    r"\b(?:earlier|previous|older|former|last) (?:version|round|run)s?\b",
    r"\b(?:this|the) project's (?:history|development machine)\b",
    r"\bdevelopment machine\b",
    r"\b(?:morning|afternoon|evening|midday|yesterday's|today's) runs?\b",
    r"\bissue #?\d+\b", r"(?<![\w/])#\d{1,4}\b",
    r"\bcommit [0-9a-f]{7,40}\b",
    r"\b(?:19|20)\d\d-\d\d-\d\d\b",                          # 2026-11-27
    rf"\b\d{{1,2}} {MONTH} (?:19|20)\d\d\b", rf"\b{MONTH} \d{{1,2}},? (?:19|20)\d\d\b",
    r"\b(?:used to|no longer) (?:be|give|show|say|read)s?\b",
]), re.IGNORECASE)


def _runner():
    spec = importlib.util.spec_from_file_location("lesson_runner", ROOT / "lessons" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(path, kind=None):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if kind is None or c["cell_type"] == kind]


def _source(cell) -> str:
    return "".join(cell["source"])


def test_there_are_lessons():
    assert LESSONS, "lessons/ holds no notebooks"


@pytest.mark.lessons
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_executes(path, tmp_path, monkeypatch, request):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MINILLM_QUICK", "1")
    monkeypatch.setenv("MINILLM_DEVICE", request.config.getoption("--device"))  # the kernel is a new process
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell; solution cells run too
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_stored_outputs_come_from_one_full_run(path):
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"].get("minillm")
    assert meta and meta.get("quick") is False and meta.get("seconds", 0) > 0, \
        f"{path.name}: no full-run metadata; run `python lessons/run.py {path.stem[:2]}`"
    code = _cells(path, "code")
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), \
        f"{path.name}: code cells not executed once each, in order"
    for index, cell in enumerate(code):
        outputs = cell.get("outputs", [])
        assert not [o for o in outputs if o["output_type"] == "error"], f"{path.name}: code cell {index} stored an error"
        assert "execution" not in cell.get("metadata", {}), f"{path.name}: code cell {index} keeps timestamps"
        if DRAWS.search(_source(cell)):
            assert any("image/png" in o.get("data", {}) for o in outputs), \
                f"{path.name}: code cell {index} draws a figure but stores no image"
    first = _source(_cells(path)[0])
    stated = _runner().time_line(meta["seconds"], meta.get("cores"), meta.get("load"))
    assert stated in first, f"{path.name}: the time at its top is not the measured one"


@pytest.mark.parametrize("text, found", [
    ("the README's table", True), ("run on 2026-11-27", True), ("an earlier version of the labeler", True),
    ("see issue 25", True), ("the afternoon run", True), ("on 27 November 2026", True),
    ("Kaplan et al. (2020) give 0.076", False), ("the pretrained model used to answer", False),
    ("lesson 05 §3", False)])
def test_history_pattern(text, found):
    assert bool(HISTORY.search(text)) is found


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_no_dates_readme_runs_or_history_in_the_prose(path):
    """A lesson stands on its own outputs: its markdown cites no README run, date or project history."""
    hits = [(index, m.group(0)) for index, cell in enumerate(_cells(path))
            if cell["cell_type"] == "markdown" for m in HISTORY.finditer(_source(cell))]
    assert not hits, f"{path.name}: history in the prose (cell, words): {hits}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_conventions(path):
    cells = _cells(path)
    sources = [_source(c) for c in cells]
    assert any('os.environ.get("MINILLM_QUICK"' in s for s in sources), f"{path.name} does not read MINILLM_QUICK"
    assert not any("%matplotlib" in s or "matplotlib.use(" in s for s in sources), \
        f"{path.name} switches the plotting back-end (the runner and the tests set it)"
    by_hand = [s for c, s in zip(cells, sources) if c["cell_type"] == "markdown"
               and "<details><summary>Solution</summary>" in s]
    solutions = [i for i, c in enumerate(cells) if "solution" in c["metadata"].get("tags", [])]
    assert by_hand, f"{path.name}: no exercise with a hidden worked solution (<details>)"
    assert solutions, f"{path.name}: no code exercise with a solution cell"
    for i in solutions:
        assert cells[i]["cell_type"] == "code" and cells[i]["metadata"].get("jupyter", {}).get("source_hidden")
        assert sources[i - 1].startswith("**Solution**"), f"{path.name}: solution cell {i} is not introduced"
        assert "assert" in sources[i], f"{path.name}: solution cell {i} asserts nothing"
    summary = [i for i, s in enumerate(sources) if re.search(r"^## Summary", s, re.MULTILINE)]
    assert summary, f"{path.name} has no Summary cell"
    if path != LESSONS[-1]:
        assert any("**Next:**" in s for s in sources[summary[0]:]), f"{path.name} does not point to the next lesson"
