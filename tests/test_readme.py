"""The README's commands work: every `minillm ...` line of its ```bash blocks runs, made quick.

The lines run in README order, through `minillm.app.cli.main`, in one temporary working directory,
so a line that reads an earlier line's output (runs/pretrain, runs/tok.json) finds it there.
Each is made quick: the smallest preset, a couple of steps, few evaluation prompts (only the
flags the command has). A line that needs a file outside the repository (my_text.txt) is
skipped; any other line that fails fails the test.
"""
import dataclasses
import pathlib
import re
import shlex

import pytest

from minillm.app import cli, pipeline

REPO = pathlib.Path(__file__).resolve().parent.parent
# Added to a command when it has the flag and the README line does not set it.
QUICK_FLAGS = {"--max-steps": "2", "--steps": "2", "--eval-prompts": "4", "--agreement-prompts": "4",
               "--batch-prompts": "2", "--group-size": "2", "--max-new-tokens": "8", "--scale": "0.05"}
QUICK_PRESETS = {"pretrain": "tiny", "pipeline": "quick"}
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
    for arg in argv:
        if previous == "--out" or not _looks_like_path(arg) or (cwd / arg).exists():
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
    quick = pipeline.PRESETS["quick"]
    smoke = dataclasses.replace(
        quick, model={**quick.model, "block_size": 64}, pretrain=pipeline.train_schedule(4, 4),
        sft=pipeline.train_schedule(2, 4), rm=pipeline.train_schedule(2, 4),
        rlhf={**quick.rlhf, "steps": 1, "batch_prompts": 2, "max_new_tokens": 16, "eval_interval": 1,
              "eval_prompts": 2, "checkpoint_interval": 1},
        eval_prompts=3, report_prompts=2)
    monkeypatch.setitem(pipeline.PRESETS, "quick", smoke)


def test_readme_commands_run(tmp_path, monkeypatch, smoke_pipeline):
    commands = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert commands, "README.md shows no minillm command in a ```bash block"
    monkeypatch.chdir(tmp_path)
    ran, skipped, failed = [], [], []
    for line in commands:
        argv = prepare(line, tmp_path)
        if isinstance(argv, str):
            skipped.append((line, argv))
            continue
        (ran if run_command(argv) == 0 else failed).append(line)
    assert not failed, f"README commands failed: {failed}"
    assert len(ran) >= max(1, len(commands) // 2), f"most README commands were skipped: {skipped}"


def test_the_harness_catches_a_failing_command_and_skips_outside_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "```bash\nminillm pretrain --out runs/x --lr nope\nminillm pretrain --data my_text.txt --out runs/y\n```\n"
    bad, outside = readme_commands(text)
    assert run_command(prepare(bad, tmp_path)) != 0
    assert "my_text.txt" in prepare(outside, tmp_path)
    argv = prepare("minillm pretrain --preset shakespeare-char --out runs/p", tmp_path)
    assert argv[argv.index("--preset") + 1] == "tiny" and argv[argv.index("--max-steps") + 1] == "2"
