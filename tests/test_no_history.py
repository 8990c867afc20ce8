"""No history in the product: the README, the docs and the package's comments and docstrings
describe what the code is, never when or how it changed (git holds that).

Checked: README.md, data/README.md, benchmarks/README.md, docs/*.md, and every comment and docstring under minillm/
(string literals that are data, such as the tiny world's stories, are not prose about the code).
docs/results.md may date its runs on the provenance line `minillm results` writes for each run.
The lessons have their own check (tests/test_lessons.py). Each pattern below is tested on a
planted example and on legitimate text it must leave alone.
"""
import ast
import io
import pathlib
import re
import tokenize

import pytest

from minillm.app import results

REPO = pathlib.Path(__file__).resolve().parent.parent
MONTH = ("January|February|March|April|May|June|July|August|September|October|November|December"
         "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")

PATTERNS = {
    "a date": re.compile(r"\b(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b"),
    "a month and day": re.compile(rf"\b({MONTH})\.? \d{{1,2}}(st|nd|rd|th)?\b|\b\d{{1,2}}(st|nd|rd|th)? ({MONTH})\b"),
    "an issue number": re.compile(r"(?i)\b(issue|pull request|PR)s? ?#?\d+\b"),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),
    "a time of day": re.compile(r"(?i)\b(midday|mid-day|afternoon|this morning|that morning|yesterday|last night)\b"
                                r"|\b([01]?\d|2[0-3]):[0-5]\d ?(UTC|GMT|am|pm)\b"),
    "an earlier state": re.compile(r"(?i)\b(earlier|older|former|previous),? (\w+ )?(version|code|preset|"
                                   r"implementation|release|runs|demonstrations)s?\b|\bused to (be|take|cost|give|have|run)\b"),
    "a change story": re.compile(r"(?i)\bwhen (it|that|this|the file) (passed|grew past|reached) \d[\d,]* lines\b"
                                 r"|\b(trained|saved|made) before (it|this|that)\b|\bnot re-?measured\b"
                                 r"|\bbefore the (change|changes|speed work|rewrite)\b"),
}

PLANTED = {  # pattern: (history it must catch, legitimate text it must leave alone)
    "a date": ("measured on 2026-11-26 on the dev box", "a vocabulary of 2026 tokens; ids 10-12-14"),
    "a month and day": ("the run of November 27 gave", "a 1 in 12 chance; May the reader ... Dec. mode"),
    "an issue number": ("the speed work of issue 19 changed", "an issue of the README: 19 lessons"),
    "a commit hash": ("timed beside commit 5522db5 in a second checkout", "0x1f2e3d4c, deadbeef, 1e13, 940800"),
    "a time of day": ("4 min 36 s that midday", "a story opening: on a rainy day; 10:30 of training; 3:1 odds"),
    "an earlier state": ("measured with the earlier, perfect demonstrations", "the previous phase's checkpoint; an earlier layer"),
    "a change story": ("split from fused.py when that passed 400 lines", "a file of 400 lines; trained before SFT"),
}


def prose_of_python(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line number, text) of every comment and docstring of a Python file."""
    source = path.read_text(encoding="utf-8")
    found = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                first = node.body[0].lineno
                found += [(first + i, line) for i, line in enumerate(doc.splitlines())]
    return found


def prose_of_markdown(path: pathlib.Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = (lambda line: not line.startswith(results.FINISHED)) if path.name == "results.md" else (lambda line: True)
    return [(i + 1, line) for i, line in enumerate(lines) if keep(line)]


def history(lines: list[tuple[int, str]]) -> list[str]:
    """'line N: <what> in "<text>"' for every line that tells history."""
    return [f"line {n}: {what} in {text.strip()!r}" for n, text in lines
            for what, pattern in PATTERNS.items() if pattern.search(text)]


def product_files(root: pathlib.Path) -> list[pathlib.Path]:
    docs = [root / "README.md", root / "data" / "README.md", root / "benchmarks" / "README.md",
            *sorted((root / "docs").glob("*.md"))]
    return [p for p in docs if p.exists()] + sorted((root / "minillm").rglob("*.py"))


def scan(root: pathlib.Path) -> dict[str, list[str]]:
    found = {}
    for path in product_files(root):
        lines = prose_of_python(path) if path.suffix == ".py" else prose_of_markdown(path)
        if hits := history(lines):
            found[str(path.relative_to(root))] = hits
    return found


def test_the_product_tells_no_history():
    found = scan(REPO)
    assert not found, "history in the product (git holds it):\n" + "\n".join(
        f"{path} {hit}" for path, hits in found.items() for hit in hits)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_catches_history_and_leaves_plain_text_alone(name):
    planted, plain = PLANTED[name]
    assert PATTERNS[name].search(planted), f"{name} missed {planted!r}"
    assert not any(p.search(plain) for p in PATTERNS.values()), f"{plain!r} was flagged"


def test_a_planted_remark_fails_the_scan_where_it_is_planted(tmp_path):
    (tmp_path / "minillm").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n\nThe figures of 2026-11-27 afternoon.\n", encoding="utf-8")
    (tmp_path / "docs" / "results.md").write_text(f"{results.FINISHED}2026-12-05 06:03 UTC\nissue 19\n", encoding="utf-8")
    (tmp_path / "minillm" / "mod.py").write_text(
        '"""A module."""\nSTORY = "On a rainy afternoon"  # data, not prose\n\n\ndef f():\n'
        '    """Split from fused.py when that passed 400 lines."""\n    return 1  # see commit 5522db5\n',
        encoding="utf-8")
    found = scan(tmp_path)
    assert [h.split(":")[0] for h in found["README.md"]] == ["line 3", "line 3"]  # the date, the afternoon
    assert found["docs/results.md"] == ["line 2: an issue number in 'issue 19'"]  # the run's own date is allowed
    assert [h.split(":")[0] for h in found["minillm/mod.py"]] == ["line 7", "line 6"]  # comments, then docstrings
    assert not any("afternoon" in h for h in found["minillm/mod.py"])  # a data string is not prose
