"""The README is a front door whose every command works.

Every `minillm ...` line of its ```bash blocks runs, made quick, then those of
docs/huggingface.md: in README order, through `minillm.app.cli.main`, in one temporary working
directory, so a line that reads an earlier line's output (runs/pretrain, runs/pipeline/rlhf)
finds it there. Each is made quick: the smallest preset, a couple of steps, few evaluation
prompts (only the flags the command has). A line that needs a file outside the repository
(my_text.txt, a downloaded GPT-2) is skipped; any other line that fails fails the test. The
README's Python example runs as written, and its install and test commands are the ones CI runs.
"""
import dataclasses
import importlib.util
import io
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from minillm.app import cli
from minillm.phases import presets

REPO = pathlib.Path(__file__).resolve().parent.parent
# Added to a command when it has the flag and the README line does not set it.
QUICK_FLAGS = {"--max-steps": "2", "--steps": "2", "--eval-prompts": "4", "--agreement-prompts": "4",
               "--batch-prompts": "2", "--group-size": "2", "--max-new-tokens": "8", "--scale": "0.05"}
QUICK_PRESETS = {"pretrain": "tiny", "pipeline": "quick"}
WRITE_LAST_ARGUMENT = {"export", "import-hf"}  # commands whose last argument is the directory they write
PATH_SUFFIX = re.compile(r"\.(txt|json|jsonl|png|html|md|safetensors)$")


def readme_commands(text: str) -> list[str]:
    """The `minillm` lines of the ```bash blocks, with backslash continuations joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(("minillm ", "python -m minillm ")) or line == "minillm":
                lines.append(line)
    return lines


def subparser(argv: list[str]):
    """The argparse parser the command reaches (e.g. `tokenizer train`'s own parser)."""
    parser = cli.build_parser()
    for arg in argv:
        actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions or arg not in actions[0].choices:
            break
        parser = actions[0].choices[arg]
    return parser


def _looks_like_path(arg: str) -> bool:
    return not arg.startswith("-") and not re.search(r"\s", arg) and ("/" in arg or bool(PATH_SUFFIX.search(arg)))


def prepare(line: str, cwd: pathlib.Path) -> list[str] | str:
    """The quick argv for one README line, or the reason to skip it."""
    argv = shlex.split(line, comments=True)
    argv = argv[3:] if argv[0] == "python" else argv[1:]
    quick, previous = [], None
    for i, arg in enumerate(argv):
        writes = previous == "--out" or (argv[0] in WRITE_LAST_ARGUMENT and i == len(argv) - 1)
        if writes or not _looks_like_path(arg) or (cwd / arg).exists():
            quick.append(arg)  # outputs and earlier lines' outputs live in the working directory
        elif (REPO / arg).exists():
            quick.append(str(REPO / arg))
        else:
            return f"needs {arg}, which is neither in the repository nor made by an earlier line"
        previous = arg
    options = subparser(argv)._option_string_actions
    command = argv[0] if argv else ""
    if command in QUICK_PRESETS and "--preset" in options:
        if "--preset" in quick:
            quick[quick.index("--preset") + 1] = QUICK_PRESETS[command]
        else:
            quick += ["--preset", QUICK_PRESETS[command]]
    for flag, value in QUICK_FLAGS.items():
        if flag in options and flag not in quick:
            quick += [flag, value]
    return quick


def run_command(argv: list[str]) -> int:
    """minillm.app.cli.main's exit code; `--help` exits through SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.fixture
def smoke_pipeline(monkeypatch):
    """`--preset quick` of the pipeline shrunk further: this test checks that the README's
    commands run; tests/test_pipeline.py runs the real quick preset."""
    quick = presets.PRESETS["quick"]
    smoke = dataclasses.replace(
        quick, model={**quick.model, "block_size": 64}, pretrain=presets.run_of(quick.pretrain, 4, 4),
        sft=presets.run_of(quick.sft, 2, 4), rm=presets.run_of(quick.rm, 2, 4),
        rlhf=dataclasses.replace(quick.rlhf, steps=1, batch_prompts=2, max_new_tokens=16, eval_interval=1,
                                 eval_prompts=2, checkpoint_interval=1),
        eval_prompts=3, report_prompts=2)
    monkeypatch.setitem(presets.PRESETS, "quick", smoke)


README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS_WITH_COMMANDS = ("README.md", "docs/huggingface.md")  # run in this order, in one directory


def test_readme_commands_run(tmp_path, monkeypatch, smoke_pipeline):
    commands = [c for doc in DOCS_WITH_COMMANDS for c in readme_commands((REPO / doc).read_text(encoding="utf-8"))]
    assert len(readme_commands(README)) >= 20, "README.md shows too few minillm commands in ```bash blocks"
    monkeypatch.chdir(tmp_path)
    # `minillm chat` reads the user's turns from stdin: two turns and a command, as a pipe would give them
    monkeypatch.setattr("sys.stdin", io.StringIO("Where does Anna live?\n/probs\nWhat pet does she have?\n/quit\n"))
    ran, skipped, failed = [], [], []
    for line in commands:
        argv = prepare(line, tmp_path)
        if isinstance(argv, str):
            skipped.append((line, argv))
            continue
        (ran if run_command(argv) == 0 else failed).append(line)
    assert not failed, f"README commands failed: {failed}"
    assert len(ran) >= max(1, len(commands) // 2), f"most README commands were skipped: {skipped}"
    assert (tmp_path / "docs" / "results.md").read_text(encoding="utf-8").startswith("# Results")
    if importlib.util.find_spec("transformers") is not None:  # the hf extra: load the export as the doc shows
        snippet = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "huggingface.md").read_text(encoding="utf-8"), re.S)[0]
        snippet = snippet.replace("max_new_tokens=40", "max_new_tokens=8")  # the smoke model's block is short
        done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]


def test_the_harness_catches_a_failing_command_and_skips_outside_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "```bash\nminillm pretrain --out runs/x --lr nope\nminillm pretrain --data my_text.txt --out runs/y\n```\n"
    bad, outside = readme_commands(text)
    assert run_command(prepare(bad, tmp_path)) != 0
    assert "my_text.txt" in prepare(outside, tmp_path)
    argv = prepare("minillm pretrain --preset shakespeare-char --out runs/p", tmp_path)
    assert argv[argv.index("--preset") + 1] == "tiny" and argv[argv.index("--max-steps") + 1] == "2"


def _bash_lines(text: str) -> list[str]:
    """Every line of the ```bash blocks, comments after a command left out."""
    return [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.splitlines()]


def test_the_install_and_test_commands_are_the_ones_ci_runs():
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    install = [line for line in ci if line.startswith("pip install -e")]
    assert install and install[-1] in _bash_lines(README), f"the README must install as CI does: {install}"
    assert ci[-1] == "pytest" and "pytest" in _bash_lines(README), "the README's test command is the one CI runs"


def test_the_first_screen_shows_the_run_the_tests_and_the_lessons():
    first_screen = "\n".join(README.splitlines()[:40])
    assert len(README.splitlines()) <= 200
    for needed in ("pip install -e", "minillm pipeline", "pytest", "## Lessons", "| `00_overview` |"):
        assert needed in first_screen, f"{needed!r} is not on the README's first screen"
    lessons = sorted(p.stem for p in (REPO / "lessons").glob("[0-9][0-9]_*.ipynb"))
    assert lessons and all(f"| `{name}` |" in README for name in lessons), "a lesson is missing from the table"


def test_the_python_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks and "loss.backward()" in blocks[0] and "generate(" in blocks[0]
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loss, text = done.stdout.split(" ", 1)
    assert float(loss) > 0 and text.startswith("The ")


def test_every_local_link_of_the_readme_exists():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/results.md" in links and "benchmarks/README.md" in links
    assert "docs/huggingface.md" in links and "docs/architecture.md" in links
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
