"""Errors a new user meets, each as the user meets it: one clear sentence for bad input,
before any work starts; a full traceback for anything that is a bug."""
import json
import os
import subprocess
import sys

import numpy
import pytest

import minillm
from minillm.engine import backend
from minillm.io import checkpoint
from minillm.model import sampling as generate
from minillm.phases import losses
from minillm.phases.rl import best_of_n, grpo, reinforce
from minillm.app.cli import main
from minillm.data.folders import check_files, resolve_data
from minillm.errors import UserError
from minillm.model.ngram import NGramLM
from minillm.app.pipeline import Pipeline
from tiny_runs import PAIRS

PACKAGE_ROOT = os.path.dirname(os.path.dirname(minillm.__file__))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-step pretrain and a 3-step SFT of the smallest preset (`tiny`: a block of 32 tokens)."""
    root = tmp_path_factory.mktemp("errors")
    corpus = root / "corpus.txt"
    corpus.write_text("where does anna live? anna lives in rivertown. what is two plus two? four.\n" * 20)
    pairs = write_jsonl(root / "pairs.jsonl", PAIRS)
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(root / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    assert main(["sft", "--init", str(root / "pt"), "--data", pairs, "--val", pairs, "--test", pairs,
                 "--out", str(root / "sft"), "--max-steps", "3", "--batch-size", "2", "--quiet"]) == 0
    return root


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ----- MINILLM_DEVICE=cuda without CuPy --------------------------------------------------

def _without_cupy(tmp_path) -> dict:
    """An environment asking for the GPU, where `import cupy` fails as on a machine without it."""
    fake = tmp_path / "no_cupy" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'cupy'\")\n")
    path = os.pathsep.join([str(tmp_path / "no_cupy"), PACKAGE_ROOT])
    return {**os.environ, "MINILLM_DEVICE": "cuda", "PYTHONPATH": path}


@pytest.mark.parametrize("how", [["-m", "minillm"], ["-c", "import sys; from minillm.app.cli import main; sys.exit(main())"]],
                         ids=["python -m minillm", "the minillm script"])
def test_the_command_says_one_line_when_the_gpu_is_missing(tmp_path, how):
    done = subprocess.run([sys.executable, *how, "--version"], env=_without_cupy(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert "MINILLM_DEVICE=cuda" in done.stderr and "CuPy" in done.stderr


def test_import_in_a_notebook_raises_the_sentence_without_a_chained_import_error(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import minillm; minillm.Tensor"], env=_without_cupy(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "DeviceError: MINILLM_DEVICE=cuda: device 'cuda' needs CuPy" in done.stderr
    assert "ModuleNotFoundError" not in done.stderr and "During handling" not in done.stderr


# ----- bad input is one line; a bug is a traceback ----------------------------------------

def _failing_pipeline(monkeypatch, error):
    def run(args):
        raise error
    monkeypatch.setattr("minillm.app.commands.pipeline_command.run", run)


@pytest.mark.parametrize("bug", [ValueError("shapes (2,3) and (4,5) not aligned"), TypeError("'NoneType' object"),
                                 RuntimeError("broken"), IndexError("index 9 is out of bounds")],
                         ids=lambda e: type(e).__name__)
def test_a_bug_shows_its_traceback(monkeypatch, bug):
    _failing_pipeline(monkeypatch, bug)
    with pytest.raises(type(bug)):
        main(["pipeline"])


def test_bad_input_is_one_line_and_debug_shows_its_traceback(monkeypatch, capsys):
    _failing_pipeline(monkeypatch, UserError("--preset nope: choose quick, classroom or full"))
    assert main(["pipeline"]) == 2
    assert one_line_error(capsys) == "minillm pipeline: error: --preset nope: choose quick, classroom or full"
    with pytest.raises(UserError):
        main(["--debug", "pipeline"])


# ----- sizes against the smallest preset -----------------------------------------------

def test_rlhf_fits_its_default_response_length_to_a_small_block(tiny, capsys):
    pairs = str(tiny / "pairs.jsonl")
    out = tiny / "rl"
    code = main(["rlhf", "--policy", str(tiny / "sft"), "--rm", "gold", "--prompts", pairs, "--heldout", pairs,
                 "--out", str(out), "--steps", "1", "--group-size", "2", "--batch-prompts", "2", "--eval-interval", "1"])
    assert code == 0
    assert "--max-new-tokens 40 leaves no room for a prompt in the policy's block of 32 tokens: using 16" \
        in capsys.readouterr().err
    assert checkpoint.load(out).meta["rlhf_config"]["max_new_tokens"] == 16


def test_reward_and_generate_defaults_fit_the_smallest_preset(tiny, capsys):
    pairs = write_jsonl(tiny / "prefs.jsonl", [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "no."}
                                               for r in PAIRS])
    assert main(["reward", "--init", str(tiny / "sft"), "--data", pairs, "--val", pairs,
                 "--prompts", str(tiny / "pairs.jsonl"), "--out", str(tiny / "rm"), "--max-steps", "2",
                 "--quiet"]) == 0
    assert main(["generate", "--ckpt", str(tiny / "sft"), "--prompt", "where does anna live?"]) == 0


@pytest.mark.parametrize("flag, value, message", [("--batch-size", "0", "argument --batch-size: must be a positive integer, got 0"),
                                                  ("--lr", "-1", "argument --lr: must be a positive finite number, got -1.0")])
def test_training_flags_no_run_can_use_are_one_sentence(tiny, tmp_path, capsys, flag, value, message):
    assert main(["pretrain", "--preset", "tiny", "--data", str(tiny / "corpus.txt"), "--out", str(tmp_path / "pt"),
                 flag, value]) == 2
    assert message in one_line_error(capsys)


# ----- refused at the boundary with UserError; a plain ValueError inside the math ------------

@pytest.mark.parametrize("algo", ["rloo", "ppo-seq", "grpo"])
def test_a_group_too_small_for_its_advantages_is_refused_by_the_command(tiny, tmp_path, capsys, algo):
    """Leave-one-out and group-normalised advantages need G >= 2: the command says so in one line
    before any work; the advantages' own check, inside the math, is a plain ValueError."""
    pairs = str(tiny / "pairs.jsonl")
    assert main(["rlhf", "--policy", str(tiny / "sft"), "--rm", "gold", "--prompts", pairs, "--heldout", pairs,
                 "--out", str(tmp_path / "rl"), "--algo", algo, "--group-size", "1"]) == 2
    assert f"--algo {algo} compares the G samples of a prompt with each other: --group-size must be at least 2, " \
           "got 1" in one_line_error(capsys)
    assert not (tmp_path / "rl").exists()
    with pytest.raises(ValueError, match="G >= 2") as inside:
        (grpo.group_normalized_advantages if algo == "grpo" else reinforce.leave_one_out_baseline)(numpy.ones(3), 1)
    assert type(inside.value) is ValueError


def test_best_of_zero_is_refused_by_the_command_and_a_plain_value_error_inside(tiny, capsys):
    assert main(["generate", "--ckpt", str(tiny / "sft"), "--prompt", "hi", "--best-of", "0"]) == 2
    assert "argument --best-of: must be a positive integer, got 0" in one_line_error(capsys)
    with pytest.raises(ValueError, match="n >= 1") as inside:
        best_of_n.best_of_n_candidates(None, None, [[1]], 0, 4, 0)
    assert type(inside.value) is ValueError


def test_ids_longer_than_the_block_are_the_users_input(tiny):
    """Token ids a user hands the model are checked where they enter: their values and their length."""
    model = checkpoint.load(tiny / "pt").model
    too_long = numpy.zeros((1, model.config.block_size + 1), dtype=numpy.int64)
    with pytest.raises(UserError, match="crop the input"):
        model(too_long)
    with pytest.raises(ValueError, match="integers") as not_ids:
        model(too_long.astype(numpy.float32))
    assert type(not_ids.value) is ValueError  # an array of the wrong kind is a bug in the calling code


# ----- every input checked before any work --------------------------------------------------

def test_sft_reports_a_missing_field_before_answering_any_prompt(tiny, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")
    monkeypatch.setattr("minillm.phases.common.answer_prompts", no_work)
    no_responses = write_jsonl(tmp_path / "prompts_only.jsonl", [{"prompt": r["prompt"]} for r in PAIRS])
    assert main(["sft", "--init", str(tiny / "pt"), "--data", no_responses, "--out", str(tmp_path / "sft")]) == 2
    assert "prompts_only.jsonl, line 1: missing field 'response'" in one_line_error(capsys)


def test_reward_reads_its_prompt_files_before_sampling_or_training(tiny, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")
    monkeypatch.setattr("minillm.phases.trainer.Trainer.run", no_work)
    monkeypatch.setattr("minillm.phases.reward.sample_responses", no_work)
    pairs = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "where?", "chosen": "rivertown.", "rejected": "four."}] * 4)
    assert main(["reward", "--init", str(tiny / "sft"), "--data", pairs, "--val", pairs,
                 "--prompts", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "rm")]) == 2
    assert "missing.jsonl: no such file" in one_line_error(capsys)


def test_pipeline_reads_every_file_before_the_first_phase(tmp_path, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("pretraining started before the data was checked")
    monkeypatch.setattr("minillm.app.pipeline.PretrainRun.run", no_work)
    (tmp_path / "data" / "pretrain").mkdir(parents=True)
    (tmp_path / "data" / "pretrain" / "train.txt").write_text("some text to pretrain on.\n")
    for folder in ("sft", "preferences", "rl"):
        (tmp_path / "data" / folder).mkdir()
    write_jsonl(tmp_path / "data" / "sft" / "train.jsonl", [{"prompt": "p", "respone": "typo"}])
    write_jsonl(tmp_path / "data" / "preferences" / "train.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    write_jsonl(tmp_path / "data" / "rl" / "train.jsonl", [{"prompt": "p"}])
    with pytest.raises(UserError, match=r"sft/train.jsonl holds no usable record \(1 bad ones skipped\)"):
        Pipeline(out=str(tmp_path / "run"), preset="quick", data=str(tmp_path / "data"), quiet=True).run()


def test_the_shipped_data_passes_the_check():
    check_files(resolve_data(None), skip_bad=False)


# ----- arrays of either kind --------------------------------------------------------------

class DeviceArray(numpy.ndarray):
    """An array on the stand-in device: NumPy underneath, another type on top."""


class StandInDevice:
    """NumPy behind CuPy's rule: its functions refuse host (plain NumPy) arrays, as CuPy's
    `exp` did in lesson 02 (`TypeError: Unsupported type <class 'numpy.ndarray'>`)."""

    __name__ = "stand_in_device"

    def __getattr__(self, name):
        attr = getattr(numpy, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, **kwargs):
            if any(type(a) is numpy.ndarray for a in [*args, *kwargs.values()]):
                raise TypeError("Unsupported type <class 'numpy.ndarray'>")
            out = attr(*args, **kwargs)
            return out.view(DeviceArray) if type(out) is numpy.ndarray else out
        return call

    def asarray(self, data, dtype=None):
        return numpy.asarray(data, dtype=dtype).view(DeviceArray)


def test_sampling_takes_an_ngram_models_host_probabilities_on_a_device(monkeypatch):
    ids = [0, 1, 2, 1, 0, 2, 2, 1] * 5
    host_p = NGramLM(2).fit(ids, vocab_size=3).next_token_probs([0, 1])   # NumPy, as lesson 02 has it
    monkeypatch.setattr(backend, "xp", StandInDevice())
    z = numpy.log(host_p)[None, :]                                         # (1, V) host logits
    for kw in ({}, {"temperature": 0.5}, {"top_k": 2}, {"top_p": 0.7}):
        p = generate.sampling_probs(z, **kw)
        assert isinstance(p, DeviceArray) and numpy.isclose(float(p.sum()), 1.0)
    rng = numpy.random.default_rng(0)
    assert isinstance(generate.sample(numpy.asarray(host_p)[None, :], rng), DeviceArray)
    assert isinstance(generate.choose(z, 0.0, None, None, rng), DeviceArray)
    assert isinstance(generate.pick(z, numpy.array([1])), DeviceArray)


def test_loss_helpers_take_host_arrays_on_a_device(monkeypatch):
    monkeypatch.setattr(backend, "xp", StandInDevice())
    targets = numpy.array([[2, -100, 0], [1, 1, -100]])
    assert isinstance(losses.one_hot(numpy.array([2, 0]), 3), DeviceArray)
    assert isinstance(losses.loss_weights(targets, "sequence"), DeviceArray)
    s_w, s_l = numpy.array([2.0, 0.0, 1.0]), numpy.array([1.0, 1.0, 0.0])
    assert losses.pairwise_accuracy(s_w, s_l) == pytest.approx(2 / 3)
    assert losses.mean_margin(s_w, s_l) == pytest.approx(1 / 3)


# ----- data files that look like another layout --------------------------------------------

@pytest.mark.parametrize("record, message", [
    ({"prompt": "a", "chosen": "b"}, "has a 'chosen' field but no 'rejected'"),
    ({"prompt": "a", "rejected": "b"}, "has a 'rejected' field but no 'chosen'"),
    ({"prompt": "a", "respone": "b"}, "unknown field 'respone': did you mean 'response'?"),
    ({"promt": "a", "response": "b"}, "unknown field 'promt': did you mean 'prompt'?"),
])
def test_data_stats_refuses_half_pairs_and_misspelled_fields(tmp_path, capsys, record, message):
    path = write_jsonl(tmp_path / "data.jsonl", [record])
    assert main(["data", "stats", path]) == 2
    assert f"data.jsonl, line 1: {message}" in one_line_error(capsys)


def test_unknown_extra_fields_are_still_fine(tmp_path, capsys):
    path = write_jsonl(tmp_path / "data.jsonl", [{"id": 7, "source": "web", "prompt": "a", "response": "b"}])
    assert main(["data", "stats", path]) == 0
