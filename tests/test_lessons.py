"""Every lesson notebook runs top to bottom in a real Jupyter kernel (fast mode).

The notebooks read MINILLM_FAST=1 to shrink their training runs, so each takes about
30 seconds; a broken lesson fails the suite like any other broken code. Under
`pytest --device cuda` the kernels run on the GPU too (MINILLM_DEVICE).
"""
import pathlib

import pytest

LESSONS = sorted((pathlib.Path(__file__).parent.parent / "lessons").glob("*.ipynb"))


def test_there_are_lessons():
    assert LESSONS, "lessons/ holds no notebooks"


@pytest.mark.lessons
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_executes(path, tmp_path, monkeypatch, request):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MINILLM_FAST", "1")
    monkeypatch.setenv("MINILLM_DEVICE", request.config.getoption("--device"))  # the kernel is a new process
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
