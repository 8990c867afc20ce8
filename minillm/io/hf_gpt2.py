"""GPT-2 interop: read and write Hugging Face `GPT2LMHeadModel` checkpoints.

Lecture: minillm's GPT is GPT-2's architecture with GPT-2's parameter names, so OpenAI's
released weights (as Hugging Face stores them: `model.safetensors` + `config.json`) load
into it, and a model trained here can be opened with `transformers`. Only the names and a
few config keys need translating; no array needs a transpose except an untied LM head.
A reward model is written (not read) as a GPT2ForSequenceClassification. Left out: sharded and pickled (`pytorch_model.bin`) files, bfloat16. The tokenizer files and
whole run directories: io/hf_dir.py.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy
from safetensors.numpy import save_file

from minillm.io.checkpoint import build_model, load_tensors
from minillm.errors import MissingFileError, UserError
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.reward_model import RewardModel
from minillm.io.safe_files import CheckpointError, atomic_directory, host_array, read_json, read_tensors, write_json

# The files an export writes; other files already in the directory are kept.
HF_FILES = ("config.json", "model.safetensors", "generation_config.json")

# Weight layout, checked against transformers' GPT-2 code (pytorch_utils.Conv1D and
# models/gpt2/modeling_gpt2.py): c_attn, c_proj and c_fc are `Conv1D` layers whose weight
# is created as torch.empty(nx, nf) = (in, out) and applied as addmm(bias, x, weight) =
# x @ W + b. minillm's Linear also stores (in, out) and computes x @ W + b, so these copy
# across unchanged. c_attn's 3C outputs are q, k, v side by side and each is cut into
# heads as (H, D) on both sides. The one exception is an untied `lm_head`: it is a torch
# nn.Linear, stored (out, in) = (V, C), while minillm's Linear head is (C, V): transpose.
# `attn.bias` / `attn.masked_bias` are HF's causal-mask buffers, not parameters: skipped.
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def load_hf_gpt2(directory: str | os.PathLike) -> GPT:
    """Load a Hugging Face GPT-2 directory (config.json + model.safetensors) as a minillm GPT.

    Keys may carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model).
    The parameters take minillm's default dtype (float32 unless changed).
    """
    directory = Path(directory)
    config, tied = config_from_hf(read_json(directory / "config.json"), directory / "config.json")
    model_path = directory / "model.safetensors"
    if not model_path.exists():
        _explain_missing_weights(directory)
    state = _state_from_hf(read_tensors(model_path), tied)
    model = build_model(config)
    load_tensors(model, state, "model.safetensors", display=_hf_name)
    return model


def save_hf_gpt2(model: GPT | RewardModel, directory: str | os.PathLike, token_ids: dict | None = None,
                 extra_files: dict[str, dict] | None = None) -> Path:
    """Write `model` as a Hugging Face GPT-2 directory that transformers opens: a GPT as a
    `GPT2LMHeadModel`, a RewardModel as a `GPT2ForSequenceClassification` with one label
    (see `_classifier_tensors`).

    Args:
        model: the GPT or RewardModel.
        directory: where to write (created; an existing model directory is replaced).
        token_ids: {"bos_token_id", "eos_token_id", "pad_token_id"} for config.json and
            generation_config.json (eos may be a list: generation stops at any of them);
            default: GPT-2's <|endoftext|> (50256) for a 50,257-token vocabulary, else none.
        extra_files: more JSON files to write in the same step, name -> data (the tokenizer's).

    Written atomically (see `safe_files.atomic_directory`). A model without biases
    (config.bias False) is written with zero biases, which compute the same function.
    """
    hf_config = config_to_hf(model.config, str(model.parameters()[0].dtype))
    hf_config.update(token_ids or {})
    if isinstance(model, RewardModel):
        tensors = _classifier_tensors(model)
        hf_config.update(architectures=["GPT2ForSequenceClassification"], id2label={"0": "score"},
                         label2id={"score": 0})
    else:
        tensors = _lm_tensors(model)
    generation = {key: hf_config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")
                  if hf_config.get(key) is not None}
    extra_files = extra_files or {}
    with atomic_directory(directory, HF_FILES + tuple(extra_files)) as tmp:
        # transformers reads the "format" metadata to know the arrays follow torch's layout.
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(hf_config, tmp / "config.json")
        write_json(generation, tmp / "generation_config.json")
        for name, data in extra_files.items():
            write_json(data, tmp / name)
    return Path(directory)


def _lm_tensors(model: GPT) -> dict[str, numpy.ndarray]:
    """GPT2LMHeadModel's tensors: minillm's under HF names, zero biases for a bias-free model."""
    tensors = {_hf_name(name): host_array(array.T if name == "lm_head.weight" else array)
               for name, array in model.state_dict().items()}
    if not model.config.bias:
        tensors.update({_hf_name(name): numpy.zeros(shape, model.wte.weight.dtype)
                        for name, shape in _bias_shapes(model.config).items()})
    return tensors


def _classifier_tensors(model: RewardModel) -> dict[str, numpy.ndarray]:
    """GPT2ForSequenceClassification's tensors for a reward model r = w·h + b, h = LN_f(x) = γ⊙n + β.

    That class's score layer has no bias, so b moves into β, the only other term added after
    the last normalisation: w·(γ⊙n + β) + b = w·(γ⊙n + β + b·w/(w·w)). Exact in real numbers
    (float32 rounding aside); impossible only when w = 0 and b ≠ 0, which is refused.
    """
    tensors = _lm_tensors(model.transformer)
    w = host_array(model.score_head.weight.data)[:, 0].astype(numpy.float64)  # (C, 1) -> (C,)
    b = float(host_array(model.score_head.bias.data)[0])
    beta = tensors["transformer.ln_f.bias"]
    if b != 0.0:
        if not w.any():
            raise UserError(f"the reward model's score head has weight 0 and bias {b:g}: a constant score, "
                            "which GPT2ForSequenceClassification (no bias in its score layer) cannot give")
        tensors["transformer.ln_f.bias"] = (beta + b * w / (w @ w)).astype(beta.dtype)
    tensors["score.weight"] = w[None, :].astype(beta.dtype)  # (C,) -> (1, C): nn.Linear is (out, in)
    return tensors


# ----- config -----------------------------------------------------------------------------

def config_from_hf(hf: dict, source="config.json") -> tuple[GPTConfig, bool]:
    """GPTConfig from a Hugging Face GPT-2 config dict, and whether the LM head is tied.

    Refuses, with the reason, every setting that would make minillm compute a different function.
    """
    if any("SequenceClassification" in name for name in hf.get("architectures") or []):
        raise CheckpointError(f"{source}: this is a {hf['architectures'][0]} (a reward model); minillm "
                              "imports GPT2LMHeadModel directories (language models) only")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{source}: model_type is {hf['model_type']!r}; only 'gpt2' can be loaded")
    # gelu_pytorch_tanh is the same tanh approximation as gelu_new, computed by torch.
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"{source}: activation_function {activation!r} is not supported; minillm's "
                              "MLP uses GPT-2's tanh-approximated GELU ('gelu_new')")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if not math.isclose(eps, 1e-5, rel_tol=1e-9):
        raise CheckpointError(f"{source}: layer_norm_epsilon is {eps}; minillm's LayerNorm uses 1e-5")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise CheckpointError(f"{source}: n_inner is {hf['n_inner']}; minillm's MLP width is 4 * n_embd "
                              f"= {4 * n_embd}")
    for key, default in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False)):
        if hf.get(key, default) != default:
            raise CheckpointError(f"{source}: {key} = {hf[key]} is not supported (minillm computes "
                                  f"GPT-2's attention, as with {key} = {default})")
    tied = bool(hf.get("tie_word_embeddings", True))
    config = GPTConfig(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
                       n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=n_embd,
                       dropout=float(hf.get("resid_pdrop", 0.1)), bias=True, tie_weights=tied)
    return config, tied


def config_to_hf(config: GPTConfig, dtype: str = "float32") -> dict:
    """The config.json of a GPT2LMHeadModel equal to a minillm GPT with `config`."""
    end_of_text = 50256 if config.vocab_size == 50257 else None
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size, "n_positions": config.block_size,
        "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "initializer_range": 0.02, "scale_attn_weights": True, "use_cache": True,
        "tie_word_embeddings": config.tie_weights, "torch_dtype": dtype,
        # GPT-2's tokenizer ends its 50257 ids with <|endoftext|>; other vocabularies have no known one.
        "bos_token_id": end_of_text, "eos_token_id": end_of_text,
    }


# ----- names and arrays -------------------------------------------------------------------

def _hf_name(name: str) -> str:
    """minillm name -> GPT2LMHeadModel name: the same, under `transformer.` except the head."""
    return name if name.startswith("lm_head.") else "transformer." + name


def _state_from_hf(tensors: dict, tied: bool) -> dict:
    """HF names and layout -> minillm names and layout (see the note at the top)."""
    state = {}
    for key, array in tensors.items():
        if key.endswith(_BUFFER_SUFFIXES):
            continue
        name = key.removeprefix("transformer.")
        if name == "lm_head.weight":
            if tied:  # HF ties it to wte on load whatever the file says; so do we
                continue
            array = array.T  # nn.Linear (V, C) -> minillm Linear (C, V)
        state[name] = array
    return state


def _bias_shapes(config: GPTConfig) -> dict:
    """Every bias a GPT2LMHeadModel has, for exporting a model built without biases."""
    C = config.n_embd
    per_layer = {"ln_1.bias": C, "attn.c_attn.bias": 3 * C, "attn.c_proj.bias": C,
                 "ln_2.bias": C, "mlp.c_fc.bias": 4 * C, "mlp.c_proj.bias": C}
    shapes = {f"h.{i}.{name}": (size,) for i in range(config.n_layer) for name, size in per_layer.items()}
    return {**shapes, "ln_f.bias": (C,)}


def _explain_missing_weights(directory: Path) -> None:
    if (directory / "model.safetensors.index.json").exists():
        raise CheckpointError(f"{directory} holds a sharded checkpoint (model.safetensors.index.json); "
                              "minillm reads one model.safetensors file only")
    if (directory / "pytorch_model.bin").exists():
        raise CheckpointError(f"{directory} holds only pytorch_model.bin, a pickle; minillm never "
                              "unpickles files (it can run code). Re-save it with transformers' "
                              "save_pretrained(..., safe_serialization=True)")
    raise MissingFileError(f"{directory / 'model.safetensors'} is missing")
