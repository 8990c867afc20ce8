"""minillm.app.class_run.study_results: a study's results are read, or the study is run first."""
import json

import pytest

from minillm.app import class_run


def test_a_finished_study_is_read_without_running_it(tmp_path, monkeypatch):
    monkeypatch.setattr(class_run, "project_root", lambda: tmp_path)
    monkeypatch.delenv(class_run.QUICK_ENV, raising=False)
    (tmp_path / "runs" / "done").mkdir(parents=True)
    (tmp_path / "runs" / "done" / "results.json").write_text(json.dumps({"answer": 42}))
    out, results = class_run.study_results("no_such_script.py", "done", [])
    assert out == tmp_path / "runs" / "done" and results == {"answer": 42}


def test_a_missing_study_is_run_with_its_lines_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(class_run, "project_root", lambda: tmp_path)
    monkeypatch.setenv(class_run.QUICK_ENV, "1")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "study.py").write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1]); out.mkdir(parents=True)\n"
        "print('step 1 of 1', flush=True)\n"
        "(out / 'results.json').write_text(json.dumps({'args': sys.argv[1:]}))\n")
    out, results = class_run.study_results("study.py", "s", ["--run", "R"])
    assert results["args"] == ["--run", "R", "--out", str(out), "--quick"] and out.name == "s"
    assert "step 1 of 1" in capsys.readouterr().out


def test_a_failing_study_is_an_error_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(class_run, "project_root", lambda: tmp_path)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "broken.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match="exit status 3"):
        class_run.study_results("broken.py", "b", [])
