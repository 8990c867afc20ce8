"""Checkpoints: round trips, bit-exact resume, atomic saves, refusing pickles, clear errors."""
import json
import os
import pickle

import numpy
import pytest
from safetensors.numpy import load_file, save_file

from minillm.engine import backend
from minillm.io import checkpoint
from minillm.model import functional as F
from minillm.io.checkpoint import CheckpointError
from minillm.model.gpt import GPT, GPTConfig
from minillm.io.safe_files import read_tensors
from minillm.engine.optim import SGD, AdamW
from minillm.tokenizers import CharTokenizer

TEXT = "hello checkpoints, hello resume"


def tiny_config(**overrides) -> GPTConfig:
    values = dict(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**values, **overrides})


def params(model) -> dict:
    return {name: backend.to_numpy(p.data).copy() for name, p in model.named_parameters()}


def assert_same_params(a, b) -> None:
    pa, pb = params(a), params(b)
    assert list(pa) == list(pb)
    for name in pa:
        numpy.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def train_steps(model, optimizer, n: int, first_step: int = 0) -> None:
    """n AdamW steps on fixed batches; dropout draws from the global generator."""
    data = numpy.random.default_rng(1).integers(0, model.config.vocab_size, (16, 2, 9))
    model.train()
    for step in range(first_step, first_step + n):
        batch = backend.asarray(data[step])
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, model.config.vocab_size), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_round_trip_keeps_parameters_tokenizer_step_and_meta(tmp_path):
    tok = CharTokenizer.train(TEXT)
    model = GPT(tiny_config(vocab_size=tok.vocab_size))
    checkpoint.save(model, tmp_path / "ckpt", tokenizer=tok, step=7, meta={"lr": 0.1, "note": "x"})
    rng_before = backend.get_rng_state()
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert backend.get_rng_state() == rng_before  # loading draws no random numbers
    assert_same_params(model, loaded.model)
    assert loaded.config == model.config and loaded.step == 7 and loaded.meta == {"lr": 0.1, "note": "x"}
    assert not loaded.training_state_restored
    assert loaded.tokenizer.encode(TEXT) == tok.encode(TEXT)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_untied_head_and_float64_round_trip(tmp_path):
    with backend.default_dtype(numpy.float64):
        model = GPT(tiny_config(tie_weights=False, bias=False))
    checkpoint.save(model, tmp_path / "ckpt")
    loaded = checkpoint.load(tmp_path / "ckpt").model
    assert loaded.lm_head.weight.dtype == numpy.float64
    assert_same_params(model, loaded)


@pytest.mark.filterwarnings("ignore:the global random generator", "ignore:.*dropout will draw")
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_resume_continues_bit_for_bit(tmp_path, dropout):
    """N steps straight == N/2 steps, save, rebuild everything from disk, N/2 steps."""
    if dropout and checkpoint._rng_state() is None:
        pytest.skip(f"backend.get_rng_state() gives no saveable state on {backend.device!r}")
    config = tiny_config(dropout=dropout)
    backend.manual_seed(3)
    straight = GPT(config)
    train_steps(straight, AdamW(straight.parameters(), lr=1e-2), 8)

    backend.manual_seed(3)
    first = GPT(config)
    opt = AdamW(first.parameters(), lr=1e-2)
    train_steps(first, opt, 4)
    checkpoint.save(first, tmp_path / "ckpt", optimizer=opt, step=4)
    del first, opt

    backend.manual_seed(999)  # a "new process" whose generator is somewhere else entirely
    fresh_opt = AdamW(GPT(checkpoint.read_config(tmp_path / "ckpt")).parameters(), lr=1e-2)
    resumed = checkpoint.load(tmp_path / "ckpt", optimizer=fresh_opt)
    assert resumed.training_state_restored and resumed.step == 4 and fresh_opt.step_count == 4
    train_steps(resumed.model, fresh_opt, 4, first_step=resumed.step)
    assert_same_params(straight, resumed.model)


@pytest.mark.filterwarnings("ignore:the global random generator")
def test_optimizer_state_is_keyed_by_parameter_name(tmp_path):
    model = GPT(tiny_config())
    opt = AdamW(model.parameters())
    train_steps(model, opt, 1)
    checkpoint.save(model, tmp_path / "ckpt", optimizer=opt)
    moments = load_file(str(tmp_path / "ckpt" / "optimizer.safetensors"))
    assert {"wte.weight.m", "wte.weight.v", "h.1.mlp.c_fc.weight.v"} <= set(moments)
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["optimizer"]["groups"][0]["betas"] == [0.9, 0.999]
    assert state["rng"] == {"device": backend.device, "state": checkpoint._rng_state()}


def test_wrong_optimizer_type_or_missing_training_state_is_refused(tmp_path):
    model = GPT(tiny_config())
    opt = AdamW(model.parameters())
    train_steps(model, opt, 1)
    checkpoint.save(model, tmp_path / "with_opt", optimizer=opt)
    with pytest.raises(CheckpointError, match="holds AdamW state, but a SGD was given"):
        checkpoint.load(tmp_path / "with_opt", optimizer=SGD(GPT(tiny_config()).parameters()))
    checkpoint.save(model, tmp_path / "no_opt")
    with pytest.raises(FileNotFoundError, match="trainer_state.json is missing"):
        checkpoint.load(tmp_path / "no_opt", optimizer=AdamW(model.parameters()))


# ----- atomic saves -----------------------------------------------------------------------

def _fail(*args, **kwargs):
    raise OSError("disk full (simulated)")


def test_crash_mid_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    old = GPT(tiny_config())
    checkpoint.save(old, tmp_path / "ckpt", step=1)
    new = GPT(tiny_config())
    opt = AdamW(new.parameters())
    monkeypatch.setattr(checkpoint, "_write_optimizer", _fail)  # config and model already written
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(new, tmp_path / "ckpt", optimizer=opt, step=2)
    loaded = checkpoint.load(tmp_path / "ckpt")
    assert loaded.step == 1
    assert_same_params(old, loaded.model)
    assert os.listdir(tmp_path) == ["ckpt"]  # the temporary directory was removed


def test_failed_swap_puts_previous_checkpoint_back(tmp_path, monkeypatch):
    old = GPT(tiny_config())
    checkpoint.save(old, tmp_path / "ckpt", step=1)
    real_replace, calls = os.replace, []

    def replace_failing_second(src, dst):
        calls.append(src)
        if len(calls) == 2:  # old moved aside; now moving the new one in fails
            raise OSError("rename failed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace_failing_second)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt", step=2)
    monkeypatch.undo()
    assert checkpoint.load(tmp_path / "ckpt").step == 1
    assert os.listdir(tmp_path) == ["ckpt"]


def test_crash_between_renames_is_explained(tmp_path):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    os.replace(tmp_path / "ckpt", tmp_path / ".ckpt.old-0123")  # where a crash would leave it
    with pytest.raises(FileNotFoundError, match=r"interrupted.*\.ckpt\.old-0123"):
        checkpoint.load(tmp_path / "ckpt")


def test_resave_replaces_owned_files_and_keeps_others(tmp_path):
    model = GPT(tiny_config())
    opt = AdamW(model.parameters())
    train_steps(model, opt, 1)
    checkpoint.save(model, tmp_path / "ckpt", optimizer=opt)
    (tmp_path / "ckpt" / "log.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "ckpt" / "plots").mkdir()
    (tmp_path / "ckpt" / "plots" / "config.json").write_text("{}")  # owned names count at the top only
    checkpoint.save(model, tmp_path / "ckpt", step=5)  # this time without training state
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "log.jsonl", "model.safetensors", "plots"]
    assert (tmp_path / "ckpt" / "plots" / "config.json").read_text() == "{}"


def test_unrelated_directory_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a model directory"):
        checkpoint.save(GPT(tiny_config()), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"


# ----- refusing pickles and explaining bad files ----------------------------------------------

class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["pickle", "npy_object_array", "zip"])
def test_pickled_files_are_refused_not_executed(tmp_path, kind):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    target, marker = tmp_path / "ckpt" / "model.safetensors", tmp_path / "pwned"
    if kind == "pickle":
        target.write_bytes(pickle.dumps(Payload(marker)))
    elif kind == "npy_object_array":
        with open(target, "wb") as f:
            numpy.save(f, numpy.array([Payload(marker)], dtype=object), allow_pickle=True)
    else:
        target.write_bytes(b"PK\x03\x04" + pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match="never loads pickled data"):
        checkpoint.load(tmp_path / "ckpt")
    assert not marker.exists()


def test_a_safetensors_header_length_starting_with_a_pickles_byte_still_loads(tmp_path):
    """The header length is binary: a length of 0x..80 bytes begins the file with 0x80, a
    pickle's first byte. Such a file is safetensors and must load (it once stopped a run)."""
    tensors = {"w": numpy.arange(6, dtype=numpy.float32).reshape(2, 3)}
    path = tmp_path / "model.safetensors"
    for pad in range(256):  # some metadata length makes the header's length end in 0x80
        save_file(tensors, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    numpy.testing.assert_array_equal(read_tensors(path)["w"], tensors["w"])


def test_garbage_file_is_not_safetensors(tmp_path):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        checkpoint.load(tmp_path / "ckpt")


def test_tensor_shape_mismatch_names_the_first_one(tmp_path):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "model.safetensors"
    tensors = load_file(str(path))
    tensors["h.0.attn.c_attn.weight"] = numpy.zeros((16, 48), numpy.float32)
    tensors["h.1.mlp.c_fc.weight"] = numpy.zeros((3, 3), numpy.float32)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"model.safetensors: h.0.attn.c_attn.weight has shape "
                                              r"\(16, 48\), the config implies \(8, 24\)"):
        checkpoint.load(tmp_path / "ckpt")


def _edit_config(directory, **changes):
    path = directory / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "version":
            data[key] = value
        else:
            data["config"][key] = value
    path.write_text(json.dumps(data))


def test_config_that_disagrees_with_the_tensors(tmp_path):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    _edit_config(tmp_path / "ckpt", n_embd=16)
    with pytest.raises(CheckpointError, match=r"wte.weight has shape \(20, 8\), the config implies \(20, 16\)"):
        checkpoint.load(tmp_path / "ckpt")


def test_unknown_version_and_unknown_field(tmp_path):
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    _edit_config(tmp_path / "ckpt", version=99)
    with pytest.raises(CheckpointError, match="format version 99 is unknown"):
        checkpoint.load(tmp_path / "ckpt")
    _edit_config(tmp_path / "ckpt", version=1, rotary=True)
    with pytest.raises(CheckpointError, match="'rotary' is not a GPTConfig field"):
        checkpoint.load(tmp_path / "ckpt")


def test_missing_things_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory .*nowhere does not exist"):
        checkpoint.load(tmp_path / "nowhere")
    checkpoint.save(GPT(tiny_config()), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        checkpoint.load(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="holds no minillm checkpoint .neither config.json nor checkpoint/config.json"):
        checkpoint.load(tmp_path / "ckpt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is a file, not a run or checkpoint directory"):
        checkpoint.load(tmp_path / "notes.txt")


def test_bad_arguments_to_save(tmp_path):
    with pytest.raises(TypeError, match="meta must be JSON-serialisable"):
        checkpoint.save(GPT(tiny_config()), tmp_path / "a", meta={"f": object()})
    with pytest.raises(ValueError, match="the tokenizer has .* tokens but the model only 5"):
        checkpoint.save(GPT(tiny_config(vocab_size=5)), tmp_path / "b", tokenizer=CharTokenizer.train(TEXT))
    assert not os.listdir(tmp_path)


def test_a_single_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from minillm.io import safe_files
    path = tmp_path / "DONE.json"
    safe_files.write_json_atomic(path, {"phase": "sft"})
    assert json.loads(path.read_text()) == {"phase": "sft"} and os.listdir(tmp_path) == ["DONE.json"]

    def crash(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(safe_files.os, "replace", crash)
    with pytest.raises(OSError):
        safe_files.write_text_atomic(path, "half")
    assert json.loads(path.read_text()) == {"phase": "sft"}, "the old file is untouched"
    assert os.listdir(tmp_path) == ["DONE.json"], "no temporary file is left behind"
