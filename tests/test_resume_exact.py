"""Resume from a fresh process is exact: every phase's CLI, killed with SIGKILL after its first
checkpoint and resumed by a new process, ends with every parameter and optimizer moment equal,
bit for bit, to an uninterrupted run's (default threads). Tiny models and step counts."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from minillm.io import checkpoint
from minillm.io.safe_files import read_tensors
from tiny_runs import cli_main, train_tiny_runs, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [{"prompt": "where does anna live?", "response": "anna lives in rivertown."},
         {"prompt": "what is two plus two?", "response": "four."},
         {"prompt": "add two and three.", "response": "five."},
         {"prompt": "where does anna live now?", "response": "in rivertown."}]
# A pipeline preset small enough for a test, added in the child process before it parses its flags.
TEST_PRESET = """
from dataclasses import replace
from minillm.phases import presets
tiny = presets.PRESETS["tiny"]
presets.PRESETS["resume-test"] = replace(
    tiny, model=dict(n_layer=1, n_head=2, n_embd=16, block_size=64, dropout=0.0),
    pretrain=presets.run_of(tiny.pretrain, 12, 4), sft=presets.run_of(presets.SFT, 4, 4),
    rm=presets.run_of(presets.REWARD, 4, 4),
    rlhf=presets.RLHFConfig(steps=2, batch_prompts=2, group_size=2, max_new_tokens=8, eval_interval=1,
                            eval_prompts=2, checkpoint_interval=1), eval_prompts=2, report_prompts=2)
from minillm.app.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def cli(*args) -> list[str]:
    return [sys.executable, "-c", "import sys\n" + TEST_PRESET, *map(str, args)]


def run_to_end(args: list[str]) -> None:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def kill_after_first_checkpoint(args: list[str], state: Path) -> None:
    """Start the command, SIGKILL it as soon as `state` (a trainer_state.json) exists."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not state.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before its first checkpoint: {proc.stderr.read()[-2000:]}")
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def restore_interrupted_save(run_checkpoint: Path) -> None:
    """A kill between a save's two renames leaves the previous checkpoint aside: restore it as
    the resume error says (and check that it says so)."""
    try:
        checkpoint.can_resume(run_checkpoint)
    except Exception as err:
        aside = sorted(run_checkpoint.parent.glob(f".{run_checkpoint.name}.old-*"))
        assert aside and str(aside[-1]) in str(err), err
        if run_checkpoint.exists():
            os.rename(run_checkpoint, run_checkpoint.parent / ".broken")
        os.rename(aside[-1], run_checkpoint)


def assert_same_state(a: Path, b: Path) -> None:
    """Parameters, optimizer moments, step, optimizer step and RNG state: equal bit for bit."""
    for name in ("model.safetensors", "optimizer.safetensors"):
        x, y = read_tensors(a / name), read_tensors(b / name)
        assert sorted(x) == sorted(y)
        for key in x:
            numpy.testing.assert_array_equal(x[key], y[key], err_msg=f"{a.parent.name}: {name} {key}")
    sa, sb = (json.loads((d / "trainer_state.json").read_text()) for d in (a, b))
    assert sa == sb, f"{a}: trainer states differ"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Data files, a pretrained run, an SFT run and a reward model (in this process: they are inputs)."""
    root = tmp_path_factory.mktemp("resume")
    write_tiny_data(root, PAIRS)
    train_tiny_runs(root)
    return root


def phase_args(root: Path, phase: str) -> list:
    """The command line of each phase, checkpointing every step (the first checkpoint comes early)."""
    data = ["--data", root / "pairs.jsonl", "--val", root / "pairs.jsonl"]
    often = ["--checkpoint-interval", "1", "--eval-interval", "3", "--quiet"]
    rl = ["rlhf", "--policy", root / "sft", "--rm", root / "rm", "--prompts", root / "pairs.jsonl",
          "--heldout", root / "pairs.jsonl", "--steps", "4", "--batch-prompts", "2", "--group-size", "2",
          "--max-new-tokens", "6", "--eval-prompts", "1", *often]
    return {
        # the tiny preset's batch of 8: its products are large enough to be split over threads
        "pretrain": ["pretrain", "--preset", "tiny", "--data", root / "corpus.txt", "--max-steps", "12", *often],
        "sft": ["sft", "--init", root / "pt", *data, "--test", root / "pairs.jsonl", "--eval-prompts", "1",
                "--max-steps", "6", "--batch-size", "2", *often],
        "reward": ["reward", "--init", root / "sft", "--data", root / "prefs.jsonl", "--val", root / "prefs.jsonl",
                   "--prompts", root / "pairs.jsonl", "--agreement-prompts", "1", "--max-steps", "6",
                   "--batch-size", "2", *often],
        "rloo": [*rl, "--algo", "rloo"],
        "ppo": [*rl, "--algo", "ppo", "--ppo-epochs", "1", "--ppo-minibatch", "2"],
        "grpo": [*rl, "--algo", "grpo", "--ppo-epochs", "1", "--ppo-minibatch", "2"],
        "dpo": ["dpo", "--policy", root / "sft", "--data", root / "prefs.jsonl", "--val", root / "prefs.jsonl",
                "--heldout", root / "pairs.jsonl", "--max-new-tokens", "6", "--max-steps", "6", "--batch-size", "2",
                *often],
    }[phase]


@pytest.mark.parametrize("phase", ["pretrain", "sft", "reward", "rloo", "ppo", "grpo", "dpo"])
def test_a_killed_run_resumed_in_a_new_process_ends_bit_for_bit_as_an_uninterrupted_one(inputs, phase):
    straight, killed = inputs / f"{phase}-straight", inputs / f"{phase}-killed"
    args = phase_args(inputs, phase)
    run_to_end(cli(*args, "--out", straight))
    kill_after_first_checkpoint(cli(*args, "--out", killed), killed / "checkpoint" / "trainer_state.json")
    restore_interrupted_save(killed / "checkpoint")
    run_to_end(cli(*args, "--out", killed, "--resume"))
    directories = ["checkpoint"] + (["value"] if phase == "ppo" else [])
    for directory in directories:
        assert_same_state(straight / directory, killed / directory)


def test_a_killed_pipeline_rerun_in_a_new_process_ends_bit_for_bit_as_an_uninterrupted_one(inputs):
    straight, killed = inputs / "pipeline-straight", inputs / "pipeline-killed"
    args = ["pipeline", "--preset", "resume-test", "--quiet"]
    run_to_end(cli(*args, "--out", straight))
    # killed inside the SFT phase, after its first checkpoint: pretraining is finished by then
    kill_after_first_checkpoint(cli(*args, "--out", killed), killed / "sft" / "checkpoint" / "trainer_state.json")
    restore_interrupted_save(killed / "sft" / "checkpoint")
    run_to_end(cli(*args, "--out", killed))
    for phase in ("pretrain", "sft", "rm", "rlhf"):
        assert_same_state(straight / phase / "checkpoint", killed / phase / "checkpoint")
