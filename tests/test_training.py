"""The shared trainer and `minillm pretrain`: the loss falls, resume is exact, NaN stops
cleanly, and bad input gets one clear sentence before any work starts."""
import json
import os

import numpy
import pytest

import minillm
from minillm.io import checkpoint
from minillm.app.cli import main
from minillm.phases.trainer import TrainConfig, Trainer, TrainingDiverged, read_log
from minillm.phases.pretrain import PretrainRun
from tiny_runs import interrupted_at_call

TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on the mat. " * 60)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def tiny_run(out, corpus, **overrides):
    settings = dict(max_steps=30, eval_interval=10, checkpoint_interval=10, log_interval=5)
    settings.update(overrides)
    return PretrainRun(out=str(out), preset="tiny", data=corpus, overrides=settings, quiet=True)


def test_a_tiny_run_learns_and_writes_its_files(tmp_path, corpus):
    summary = tiny_run(tmp_path / "run", corpus, lr=1e-2).run()
    log = read_log(tmp_path / "run" / "log.jsonl")
    train = [r["loss"] for r in log if r["kind"] == "train"]
    assert train[-1] < train[0] - 0.5, "the training loss should fall"
    assert summary["val_loss"] < summary["baseline_val_loss"] + 1.0
    assert {"step", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s", "elapsed"} <= set(log[0])
    for name in ("loss.png", "summary.json", "checkpoint/model.safetensors"):
        assert (tmp_path / "run" / name).exists()
    assert summary["training_flops"] == summary["tokens_seen"] * checkpoint.load(tmp_path / "run").model.flops_per_token()


def test_grad_norm_is_logged_when_clipping_is_off(tmp_path, corpus):
    tiny_run(tmp_path / "run", corpus, max_steps=5, log_interval=1, grad_clip=0.0).run()
    norms = [r["grad_norm"] for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "train"]
    assert len(norms) == 5 and all(n > 0 for n in norms)


def test_resume_is_exact(tmp_path, corpus):
    straight = tiny_run(tmp_path / "a", corpus, max_steps=12, checkpoint_interval=6).run()

    from minillm.data.windows import TokenWindows
    # step 9 never finishes; the last checkpoint is step 6
    with interrupted_at_call(TokenWindows, "batch", 9), pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path / "b", corpus, max_steps=12, checkpoint_interval=6).run()
    assert checkpoint.load(tmp_path / "b").step == 6
    run = tiny_run(tmp_path / "b", corpus, max_steps=12, checkpoint_interval=6)
    run.resume = True
    resumed = run.run()
    a, b = checkpoint.load(tmp_path / "a").model, checkpoint.load(tmp_path / "b").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        numpy.testing.assert_array_equal(x, y, err_msg=name)
    assert resumed["tokens_seen"] == straight["tokens_seen"]
    steps = [r["step"] for r in read_log(tmp_path / "b" / "log.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "the log holds each step once after a resume"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    minillm.manual_seed(0)
    model = minillm.model.nn.Linear(2, 1)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        out = (m(minillm.Tensor(numpy.ones((1, 2), dtype=numpy.float32))) ** 2).sum()
        return (out * float("nan") if calls["n"] == 5 else out), 1

    # a Linear is not a GPT, so checkpoints are skipped here by saving only at the end
    config = TrainConfig(max_steps=10, eval_interval=100, checkpoint_interval=100, warmup_steps=1)
    trainer = Trainer(model, config, str(tmp_path / "nan"), train_batch=lambda rng: None,
                      loss_fn=loss_fn, quiet=True)
    before = model.weight.numpy().copy()
    with pytest.raises(TrainingDiverged, match="became nan at step 5"):
        trainer.run()
    assert trainer.step == 4
    assert not numpy.array_equal(before, model.weight.numpy())


def test_nan_with_checkpoints_keeps_the_previous_one(tmp_path, corpus, monkeypatch):
    from minillm.phases import losses
    original, calls = losses.sequence_cross_entropy, {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr("minillm.phases.pretrain.sequence_cross_entropy", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 7"):
        tiny_run(tmp_path / "run", corpus, max_steps=10, checkpoint_interval=3, eval_interval=100).run()
    assert checkpoint.load(tmp_path / "run").step == 6  # saved at steps 3 and 6; step 7 diverged


def test_pretrain_command_runs(tmp_path, corpus, capsys):
    out = tmp_path / "cli"
    assert main(["pretrain", "--data", corpus, "--preset", "tiny", "--out", str(out),
                 "--max-steps", "6", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["step"] == 6


@pytest.mark.parametrize("args, message", [
    (["--data", "/no/such/file.txt"], "no such file"),
    (["--data", "EMPTY"], "holds no text"),
    (["--data", "SHORT"], "fewer than one block"),
    (["--tokenizer", "morse"], "unknown tokenizer"),
])
def test_pretrain_bad_input_one_clear_sentence(tmp_path, capsys, args, message):
    (tmp_path / "empty.txt").write_text("   ", encoding="utf-8")
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    args = [{"EMPTY": str(tmp_path / "empty.txt"), "SHORT": str(tmp_path / "short.txt")}.get(a, a) for a in args]
    if "--data" not in args:
        args = ["--data", str(tmp_path / "short.txt")] + args
    code = main(["pretrain", "--preset", "tiny", "--out", str(tmp_path / "o")] + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o" / "checkpoint")


def test_unknown_preset_is_refused(tmp_path, capsys):
    assert main(["pretrain", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_truncate_log_keeps_the_records_up_to_the_checkpoint_step(tmp_path):
    from minillm.phases.trainer import append_log, truncate_log
    path = str(tmp_path / "log.jsonl")
    for step in (1, 2, 3, 4):
        append_log(path, {"kind": "train", "step": step, "loss": 1.0 / step})
    truncate_log(path, 2)
    assert [r["step"] for r in read_log(path)] == [1, 2]
    truncate_log(str(tmp_path / "missing.jsonl"), 2)  # no log yet: nothing to do, no error
