"""GPT-2 interop: the Hugging Face layout round trip always; logits against transformers when installed."""
import json

import numpy
import pytest
from safetensors.numpy import load_file, save_file

from minillm.engine import backend
from minillm.io.checkpoint import CheckpointError
from minillm.io.hf_gpt2 import load_hf_gpt2, save_hf_gpt2
from minillm.model.gpt import GPT, GPTConfig
from minillm.engine.tensor import no_grad

TINY = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)
IDS = numpy.random.default_rng(0).integers(0, 50, (2, 16))


def logits(model) -> numpy.ndarray:
    model.eval()
    with no_grad():
        return backend.to_numpy(model(backend.asarray(IDS)).data)


def randomised(model) -> GPT:
    """Make every parameter non-trivial, so zero biases or unit LayerNorm weights hide nothing."""
    rng = numpy.random.default_rng(1)
    for _, p in model.named_parameters():
        p.data[...] = backend.asarray(rng.standard_normal(p.shape) * 0.2, p.dtype)
    return model


@pytest.mark.parametrize("overrides", [{}, {"tie_weights": False}, {"bias": False}])
def test_export_import_round_trip(tmp_path, overrides):
    model = randomised(GPT(GPTConfig(**TINY, **overrides)))
    save_hf_gpt2(model, tmp_path / "hf")
    loaded = load_hf_gpt2(tmp_path / "hf")
    numpy.testing.assert_array_equal(logits(loaded), logits(model))
    assert loaded.config.tie_weights == model.config.tie_weights


def test_export_uses_gpt2_names_and_layout(tmp_path):
    model = randomised(GPT(GPTConfig(**TINY, tie_weights=False)))
    save_hf_gpt2(model, tmp_path / "hf")
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: (in, out)
    assert tensors["lm_head.weight"].shape == (50, 32)                      # nn.Linear: (out, in)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_positions"], config["activation_function"]) == (16, "gelu_new")


def test_import_accepts_keys_without_prefix_and_ignores_mask_buffers(tmp_path):
    model = randomised(GPT(GPTConfig(**TINY)))
    save_hf_gpt2(model, tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(path)).items()}
    tensors["h.0.attn.bias"] = numpy.tril(numpy.ones((1, 1, 16, 16), numpy.float32))
    tensors["h.0.attn.masked_bias"] = numpy.array(-1e4, numpy.float32)
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()  # a tied head some files still hold
    save_file(tensors, str(path))
    numpy.testing.assert_array_equal(logits(load_hf_gpt2(tmp_path / "hf")), logits(model))


def _edit(directory, **changes):
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("change, message", [
    ({"activation_function": "relu"}, "activation_function 'relu' is not supported"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon is 1e-06; minillm's LayerNorm uses 1e-5"),
    ({"n_inner": 64}, "n_inner is 64"),
    ({"model_type": "llama"}, "model_type is 'llama'"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx = True is not supported"),
    ({"n_embd": 64}, r"transformer.wte.weight has shape \(50, 32\), the config implies \(50, 64\)"),
])
def test_unsupported_configs_are_refused_clearly(tmp_path, change, message):
    save_hf_gpt2(GPT(GPTConfig(**TINY)), tmp_path / "hf")
    _edit(tmp_path / "hf", **change)
    with pytest.raises(CheckpointError, match=message):
        load_hf_gpt2(tmp_path / "hf")


def test_pickled_weights_are_refused(tmp_path):
    save_hf_gpt2(GPT(GPTConfig(**TINY)), tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin, a pickle"):
        load_hf_gpt2(tmp_path / "hf")


# ----- against transformers itself (optional) -------------------------------------------------

def _hf_logits(hf_model) -> numpy.ndarray:
    import torch
    hf_model.eval()
    with torch.no_grad():
        return hf_model(torch.as_tensor(IDS)).logits.numpy()


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_transformers_both_ways(tmp_path, tied):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=16, vocab_size=50,
                                         tie_word_embeddings=tied)
    hf_model = transformers.GPT2LMHeadModel(hf_config)
    with torch.no_grad():  # HF zero-initialises biases and LayerNorms: make them count
        for p in hf_model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf_model.save_pretrained(tmp_path / "from_hf", safe_serialization=True)
    imported = load_hf_gpt2(tmp_path / "from_hf")
    assert numpy.abs(logits(imported) - _hf_logits(hf_model)).max() <= 1e-4

    ours = randomised(GPT(GPTConfig(**TINY, tie_weights=tied)))
    save_hf_gpt2(ours, tmp_path / "to_hf")
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "to_hf")
    assert numpy.abs(logits(ours) - _hf_logits(exported)).max() <= 1e-4
