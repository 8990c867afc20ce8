"""A catalogue of bad input, one class at a time (file, run kind, number, signal, chat, overwrite):
each case ends in one clear line and exit 2 (130 for a signal), and leaves nothing half-written:
a new output directory is never made, an existing one is left byte for byte as it was."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minillm.app.cli import main
from minillm.io import checkpoint
from tiny_runs import PAIRS, cli_main, train_tiny_runs, write_tiny_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Data files and three tiny runs: pt (pretrained), sft, rm (reward model)."""
    root = tmp_path_factory.mktemp("trust")
    write_tiny_data(root, PAIRS)
    (root / "broken.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "resp')
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    (root / "notes").mkdir()
    (root / "notes" / "mine.txt").write_text("a user's own file")
    train_tiny_runs(root)
    return root


def snapshot(root: Path) -> dict:
    """Every file under root: its bytes (what 'left as it was' compares)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(runs: Path, args: list, expected: str, capsys, code: int = 2) -> str:
    """Run the command; check exit code, one line naming `expected`, and that no file changed or appeared."""
    before = snapshot(runs)
    assert main([str(a).replace("{R}", str(runs)) for a in args]) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert expected in err, err
    assert snapshot(runs) == before, "a refused command changed or left files"
    assert not (runs / "new").exists()
    return err


SFT = ["sft", "--data", "{R}/pairs.jsonl", "--val", "{R}/pairs.jsonl", "--test", "{R}/pairs.jsonl", "--max-steps", "2"]
RL = ["rlhf", "--prompts", "{R}/pairs.jsonl", "--heldout", "{R}/pairs.jsonl", "--steps", "1"]
PT = ["pretrain", "--preset", "tiny", "--data", "{R}/corpus.txt", "--max-steps", "2"]

FILE_CASES = [
    ([*PT[:3], "--data", "{R}/missing.txt", "--out", "{R}/new"], "missing.txt"),
    ([*PT[:3], "--data", "{R}/latin1.txt", "--out", "{R}/new"], "UTF-8"),
    (["sft", "--init", "{R}/pt", "--data", "{R}/broken.jsonl", "--out", "{R}/new"], "broken.jsonl"),
    (["generate", "--ckpt", "{R}/missing", "--prompt", "hi"], "missing"),
    (["tokenizer", "train", "--kind", "char", "--input", "{R}/latin1.txt", "--out", "{R}/new/tok.json"], "UTF-8"),
    (["export", "{R}/notes", "{R}/new"], "holds no minillm checkpoint"),
    (["sft", "--init", "{R}/pairs.jsonl", "--out", "{R}/new"], "is a file, not a run or checkpoint directory"),
]
KIND_CASES = [
    (["sft", "--init", "{R}/rm", "--out", "{R}/new"], "holds a reward model, not a language model"),
    (["reward", "--init", "{R}/rm", "--out", "{R}/new"], "holds a reward model, not a language model"),
    ([*RL, "--policy", "{R}/rm", "--rm", "{R}/rm", "--out", "{R}/new"], "holds a reward model, not a language model"),
    ([*RL, "--policy", "{R}/sft", "--rm", "{R}/sft", "--out", "{R}/new"], "holds a language model (GPT), not a reward model"),
    (["dpo", "--policy", "{R}/rm", "--out", "{R}/new"], "holds a reward model, not a language model"),
    (["dpo", "--policy", "{R}/sft", "--rm", "{R}/pt", "--out", "{R}/new"], "not a reward model"),
    (["generate", "--ckpt", "{R}/rm", "--prompt", "hi"], "holds a reward model, not a language model"),
    (["chat", "--ckpt", "{R}/rm"], "reward_model"),
    (["score", "--rm", "{R}/sft", "--prompt", "a", "--response", "b"], "not a reward model"),
    ([*RL, "--policy", "{R}/pt", "--rm", "{R}/rm", "--out", "{R}/new"], "not an SFT checkpoint"),
    ([*SFT, "--init", "{R}/pt", "--out", "{R}/rm", "--resume"], "holds a `minillm reward` run, not a `minillm sft` one"),
    (["generate", "--ckpt", "{R}/pt", "--prompt", "hi", "--stop", "FOO"], "--stop takes special tokens"),
]
NUMBER_CASES = [(PT + [flag, value, "--out", "{R}/new"], f"argument {flag}") for flag, value in
                [("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1"), ("--max-steps", "0"), ("--batch-size", "-2"),
                 ("--seed", "-1"), ("--dropout", "1"), ("--block-size", "0"), ("--warmup-steps", "1.5"),
                 ("--grad-accum", "0"), ("--eval-interval", "0"), ("--checkpoint-interval", "nan")]]
NUMBER_CASES += [([*RL, "--policy", "{R}/sft", "--rm", "{R}/rm", flag, value, "--out", "{R}/new"], f"argument {flag}")
                 for flag, value in [("--lr", "nan"), ("--batch-prompts", "0"), ("--temperature", "0"),
                                     ("--grad-clip", "-1"), ("--beta", "-0.1"), ("--target-kl", "0"),
                                     ("--gamma", "2"), ("--eval-interval", "0"), ("--ppo-epochs", "0"),
                                     ("--clip-eps", "inf"), ("--max-new-tokens", "0"), ("--value-lr", "-1"),
                                     ("--temperature", "-inf"), ("--lr", "-1e-5")]]
NUMBER_CASES += [
    ([*SFT, "--init", "{R}/pt", "--epochs", "nan", "--out", "{R}/new"], "argument --epochs"),
    (["dpo", "--policy", "{R}/sft", "--beta", "0", "--out", "{R}/new"], "argument --beta"),
    (["dpo", "--policy", "{R}/sft", "--max-new-tokens", "0", "--out", "{R}/new"], "argument --max-new-tokens"),
    (["reward", "--init", "{R}/sft", "--on-policy-prompts", "-1", "--out", "{R}/new"], "argument --on-policy-prompts"),
    (["generate", "--ckpt", "{R}/pt", "--top-p", "2"], "argument --top-p"),
    (["generate", "--ckpt", "{R}/pt", "--top-k", "0"], "argument --top-k"),
    (["generate", "--ckpt", "{R}/pt", "--temperature", "-1"], "argument --temperature"),
    (["generate", "--ckpt", "{R}/sft", "--best-of", "2", "--rm", "{R}/rm", "--temperature", "0"], "--temperature > 0"),
    (["chat", "--ckpt", "{R}/sft", "--temperature", "inf"], "argument --temperature"),
    (["pipeline", "--preset", "quick", "--seed", "-1", "--out", "{R}/new"], "argument --seed"),
    (["data", "make-world", "--scale", "0", "--out", "{R}/new"], "argument --scale"),
]
OVERWRITE_CASES = [
    ([*SFT, "--init", "{R}/pt", "--out", "{R}/pt"], "is (or holds) the --init input"),
    ([*SFT, "--init", "{R}/pt/checkpoint", "--out", "{R}/pt", "--overwrite"], "is (or holds) the --init input"),
    (["reward", "--init", "{R}/sft", "--out", "{R}/sft"], "is (or holds) the --init input"),
    ([*RL, "--policy", "{R}/sft", "--rm", "{R}/rm", "--out", "{R}/rm"], "is (or holds) the --rm input"),
    (["dpo", "--policy", "{R}/sft", "--out", "{R}/sft"], "is (or holds) the --policy input"),
    ([*PT, "--out", "{R}/pt"], "already holds a `minillm pretrain` run: pass --resume"),
    ([*PT, "--out", "{R}/sft"], "already holds a `minillm sft` run"),
    ([*PT, "--out", "{R}/notes"], "minillm did not write it"),
    ([*PT, "--out", "{R}/notes", "--overwrite"], "--overwrite never deletes them"),
    ([*PT, "--out", "{R}/pt", "--resume", "--overwrite"], "pass one of them"),
    ([*PT[:-1], "5", "--out", "{R}/pt", "--resume"], "overrides.max_steps: 2 when started, 5 now"),
    (["export", "{R}/sft", "{R}/sft/checkpoint"], "is (or holds) the RUN_DIR input"),
    ([*SFT, "--init", "{R}/pt", "--out", "{R}/pt/checkpoint", "--overwrite"], "is (or holds) the --init input"),
    (["export", "{R}/sft", "{R}/pt"], "pass --overwrite to replace it"),
    (["import-hf", "{R}/notes", "{R}/pt"], "pass --overwrite to replace it"),
    (["data", "make-world", "--out", "{R}/notes"], "is not empty"),
    (["pipeline", "--preset", "quick", "--out", "{R}/notes"], "is not empty"),
]


@pytest.mark.parametrize("args, expected", FILE_CASES, ids=lambda v: None)
def test_file(runs, capsys, args, expected):
    refused(runs, args, expected, capsys)


@pytest.mark.parametrize("args, expected", KIND_CASES)
def test_run_kind(runs, capsys, args, expected):
    refused(runs, args, expected, capsys)


@pytest.mark.parametrize("args, expected", NUMBER_CASES)
def test_number(runs, capsys, args, expected):
    refused(runs, args, expected, capsys)


@pytest.mark.parametrize("args, expected", OVERWRITE_CASES)
def test_overwrite(runs, capsys, args, expected):
    refused(runs, args, expected, capsys)


def test_a_damaged_training_state_is_an_error_that_points_at_the_intact_copy(runs, capsys, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(runs / "pt", run)
    aside = tmp_path / "run" / ".checkpoint.old-0123456789ab"
    shutil.copytree(run / "checkpoint", aside)
    (run / "checkpoint" / "trainer_state.json").write_text('{"step": 2, "optim')
    args = [*PT, "--out", str(run), "--resume", "--quiet"]
    err = refused(tmp_path, [str(a).replace("{R}", str(runs)) for a in args], "is not valid JSON", capsys)
    assert str(aside) in err and "rename" in err
    (run / "checkpoint" / "trainer_state.json").unlink()
    err = refused(tmp_path, [str(a).replace("{R}", str(runs)) for a in args], "trainer_state.json is missing", capsys)
    assert str(aside) in err
    shutil.copy(aside / "trainer_state.json", run / "checkpoint")
    (run / "checkpoint" / "model.safetensors").write_bytes(b"cut")
    err = refused(tmp_path, [str(a).replace("{R}", str(runs)) for a in args], "model.safetensors is not a readable", capsys)
    assert str(aside) in err


def test_a_torn_last_log_line_is_dropped_with_a_notice(runs, capsys, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(runs / "pt", run)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"kind": "train", "st')
    args = [str(a).replace("{R}", str(runs)) for a in [*PT, "--out", run, "--resume", "--quiet"]]
    assert main(args) == 0
    assert "cut short by an interrupted write; dropped it" in capsys.readouterr().err
    assert all(json.loads(line) for line in (run / "log.jsonl").read_text().splitlines())


def test_a_diverged_run_exits_2_and_keeps_only_finite_checkpoints(runs, capsys, tmp_path):
    out = tmp_path / "nan"
    args = [str(a).replace("{R}", str(runs)) for a in
            [*PT[:-1], "6", "--lr", "1e5", "--checkpoint-interval", "1", "--out", out, "--quiet"]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "became" in err and "Traceback" not in err
    if (out / "checkpoint").exists():
        import numpy
        ckpt = checkpoint.load(out)
        assert all(numpy.isfinite(p.data).all() for p in ckpt.model.parameters())


def test_sigterm_saves_the_step_says_so_and_leaves_no_temporary_directory(runs, tmp_path):
    out = tmp_path / "term"
    args = [sys.executable, "-m", "minillm", *[str(a).replace("{R}", str(runs)) for a in PT[:-1]], "400",
            "--checkpoint-interval", "1000", "--eval-interval", "1000", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (out / "log.jsonl").exists():  # training has started
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM: saved step" in err.strip().splitlines()[-1]
    step = checkpoint.load(out).step
    assert 0 < step < 400 and not list(out.glob(".*.tmp-*"))


# ----- chat ---------------------------------------------------------------------------------

def chat_session(runs, lines: list[str]) -> list[str]:
    """Run `minillm chat` on the SFT model with typed lines; return its output lines."""
    stdin, stdout = io.StringIO("\n".join(lines) + "\n"), io.StringIO()
    old = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = stdin, stdout
    try:
        assert main(["chat", "--ckpt", str(runs / "sft"), "--max-new-tokens", "4", "--seed", "1"]) == 0
    finally:
        sys.stdin, sys.stdout = old
    return stdout.getvalue().splitlines()


@pytest.mark.parametrize("command, expected", [("/temp inf", "/temp takes a finite number >= 0"),
                                               ("/temp nan", "/temp takes a finite number >= 0"),
                                               ("/topk 0", "/topk takes a positive integer or off"),
                                               ("/topk 2.5", "/topk takes a positive integer or off"),
                                               ("/topp 2", "/topp takes a number in (0, 1] or off")])
def test_chat_refuses_a_bad_setting_and_keeps_the_conversation(runs, tmp_path, command, expected):
    saved = tmp_path / "chats.jsonl"
    lines = chat_session(runs, ["where does anna live?", command, "and anna?", f"/save {saved}"])
    assert any(line.startswith(f"error: {expected}") for line in lines), lines
    record = json.loads(saved.read_text())
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]


def test_chat_save_appends_a_whole_line_to_a_file_without_a_final_newline(runs, tmp_path):
    saved = tmp_path / "chats.jsonl"
    saved.write_text('{"messages": []}')  # no newline at the end
    chat_session(runs, ["hello", f"/save {saved}"])
    lines = saved.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines[1:]) and json.loads(lines[0]) == {"messages": []}


def test_the_pretraining_split_never_cuts_a_special_token(tmp_path, capsys):
    from minillm.phases.pretrain import split_text
    text = "z" * 500 + "x" * 89 + "<|endoftext|>" + "y" * 60  # a plain 90% cut (595) falls inside the token
    train, val = split_text(text, 0.1, ["<|endoftext|>"])
    assert train + val == text and val.startswith("<|endoftext|>")
    (tmp_path / "split.txt").write_text(text)
    assert cli_main(["pretrain", "--preset", "tiny", "--data", tmp_path / "split.txt", "--tokenizer", "char",
                     "--max-steps", "1", "--out", tmp_path / "run", "--quiet"]) == 0


def test_a_loaded_model_is_in_eval_mode(runs):
    assert checkpoint.load(runs / "sft").model.training is False
