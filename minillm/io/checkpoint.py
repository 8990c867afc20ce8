"""Checkpoints: save a model (and its training state) to one directory, load it back exactly.

Lecture: training takes hours, so a run must be able to stop and resume as if it never
stopped. That needs more than the weights: the optimizer's moments, the step, and the
state of the random generator (dropout draws from it). Arrays go into safetensors files,
everything else into JSON; nothing is ever pickled, because unpickling a file runs code.
A save is atomic: a crash mid-save leaves the previous checkpoint whole.
A checkpoint holds a GPT or a RewardModel; config.json's "model_kind" says which.
Left out: sharded files, async saves, keeping the last k checkpoints. GPT-2 files: io/hf_gpt2.py;
safe reading and atomic writing of files: io/safe_files.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open
from safetensors.numpy import save_file

from minillm.engine import backend
from minillm.errors import MissingFileError, UserError
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.nn import Module
from minillm.model.reward_model import RewardModel
from minillm.io.safe_files import CheckpointError, atomic_directory, host_array, read_json, read_tensors, write_json
from minillm.tokenizers import Tokenizer, chat_template
from minillm.tokenizers import load as load_tokenizer

FORMAT_NAME = "minillm-checkpoint"
FORMAT_VERSION = 1
# The files a checkpoint owns; anything else found in its directory (logs, plots) is kept.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json",
                    "optimizer.safetensors", "trainer_state.json")
# config.json's "model_kind" names the class to build; files without the field hold a GPT.
MODEL_CLASSES = {"gpt": GPT, "reward_model": RewardModel}


@dataclass
class Checkpoint:
    """What `load` returns."""

    model: Module                        # the GPT (or RewardModel), holding the saved parameters
    config: GPTConfig                    # its config (also model.config)
    tokenizer: Tokenizer | None = None   # the saved tokenizer, if one was saved
    step: int = 0                        # the training step given to `save`
    meta: dict = field(default_factory=dict)  # the JSON dict given to `save` (run config, metrics)
    training_state_restored: bool = False     # optimizer state and global RNG state were restored
    model_kind: str = "gpt"              # "gpt" or "reward_model" (see MODEL_CLASSES)


# ----- save ----------------------------------------------------------------------------

def save(model: Module, directory: str | os.PathLike, tokenizer: Tokenizer | None = None,
         optimizer=None, step: int = 0, meta: dict | None = None) -> Path:
    """Write a checkpoint directory; an existing checkpoint there is replaced atomically.

    Args:
        model: the GPT or RewardModel to save (its kind is recorded in config.json).
        directory: where to save (created if missing).
        tokenizer: saved as tokenizer.json when given.
        optimizer: when given, its state and the global RNG state are saved too, so that
            `load(directory, optimizer=...)` resumes training exactly.
        step: the training step, returned by `load`.
        meta: any JSON-serialisable dictionary (training config, metrics).

    Returns:
        The checkpoint directory.
    """
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size} (config.vocab_size): its ids would not fit")
    with atomic_directory(directory, CHECKPOINT_FILES) as tmp:
        _write_config(model, tmp / "config.json", step, meta)
        _write_model(model, tmp / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        if optimizer is not None:
            _write_optimizer(model, optimizer, tmp, step)
    return Path(directory)


def model_kind(model: Module) -> str:
    """The name config.json records for a model's class: "gpt" or "reward_model"."""
    for kind, cls in MODEL_CLASSES.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"cannot save a {type(model).__name__}: checkpoints hold one of "
                    f"{', '.join(cls.__name__ for cls in MODEL_CLASSES.values())}")


def _write_config(model: Module, path: Path, step: int, meta: dict) -> None:
    data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model_kind": model_kind(model),
            "config": model.config.to_dict(), "dtype": str(model.parameters()[0].dtype),
            "step": int(step), "meta": meta}
    write_json(data, path)


def _write_model(model: Module, path: Path) -> None:
    tensors = {name: host_array(array) for name, array in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT_NAME})


def _write_optimizer(model: Module, optimizer, directory: Path, step: int) -> None:
    """optimizer.safetensors: "<parameter name>.<slot>" -> array (e.g. "wte.weight.m");
    trainer_state.json: hyperparameters, which parameters each group holds, the RNG state."""
    names = {id(p): name for name, p in model.named_parameters()}
    state = optimizer.state_dict()
    tensors, groups, i = {}, [], 0
    for group, hyper in zip(optimizer.param_groups, state["groups"]):
        group_names = []
        for p in group["params"]:
            if id(p) not in names:
                raise UserError("the optimizer updates a parameter that is not part of the model "
                                 "being saved; build the optimizer from model.parameters()")
            group_names.append(names[id(p)])
            for slot, array in state["state"][i].items():
                tensors[f"{names[id(p)]}.{slot}"] = host_array(array)
            i += 1
        groups.append({**hyper, "params": group_names})
    save_file(tensors, str(directory / "optimizer.safetensors"), metadata={"format": FORMAT_NAME})
    rng = {"device": backend.device, "state": _rng_state()}
    if rng["state"] is None:
        warnings.warn(f"the global random generator on {backend.device!r} has no saveable state: a run "
                      "resumed from this checkpoint will draw different dropout masks")
    trainer = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "step": int(step),
               "optimizer": {"type": type(optimizer).__name__, "step": state["step"], "groups": groups},
               "rng": rng}
    write_json(trainer, directory / "trainer_state.json")


# ----- load ----------------------------------------------------------------------------

def load(directory: str | os.PathLike, optimizer=None) -> Checkpoint:
    """Load a checkpoint written by `save`.

    Args:
        directory: the checkpoint directory.
        optimizer: to resume training, an optimizer of the saved type, built with the same
            parameter groups (e.g. `AdamW(GPT(read_config(directory)).parameters())`, or a
            RewardModel's for a reward-model checkpoint). Its
            parameters are re-pointed, by name, at the loaded model's, and its state, step
            and the global random state are restored.

    Returns:
        A Checkpoint whose model is a GPT or a RewardModel, as config.json's "model_kind"
        says, in eval mode (no dropout). Loading without an optimizer leaves the global
        random state untouched.
    """
    directory = _existing_directory(directory)
    info = _read_checkpoint_config(directory)
    config = config_from_dict(info["config"], directory / "config.json")
    kind = info.get("model_kind", "gpt")
    with backend.default_dtype(info.get("dtype", "float32")):
        model = build_model(config, kind)
    load_tensors(model, read_tensors(directory / "model.safetensors"), "model.safetensors")
    tokenizer_path = directory / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path.exists() else None
    if optimizer is not None:
        _restore_training_state(directory, model, optimizer)
    model.eval()  # as transformers' from_pretrained: training code switches to train mode itself
    return Checkpoint(model, config, tokenizer, int(info.get("step", 0)), info.get("meta", {}),
                      optimizer is not None, kind)


KIND_NAMES = {"gpt": "a language model (GPT)", "reward_model": "a reward model"}


def load_kind(directory: str | os.PathLike, kind: str, flag: str) -> Checkpoint:
    """`load`, refusing a checkpoint of another kind in one sentence that names the flag.

    Example: a reward model passed as --policy -> "--policy runs/rm holds a reward model,
    not a language model (GPT)".
    """
    ckpt = load(directory)
    if ckpt.model_kind != kind:
        raise UserError(f"{flag} {directory} holds {KIND_NAMES[ckpt.model_kind]}, not {KIND_NAMES[kind]}: "
                        f"pass the run directory of a command that trains {KIND_NAMES[kind]}")
    return ckpt


def load_sft(directory: str | os.PathLike, flag: str, starts: str) -> Checkpoint:
    """`load_kind` for a GPT that phase 3 starts from: it must be an SFT model (chat template and
    tokenizer saved with it). `starts` ends the error: "DPO starts from", "best-of-n samples from"."""
    ckpt = load_kind(directory, "gpt", flag)
    if not chat_template.uses_chat_template(ckpt.meta) or ckpt.tokenizer is None:
        raise UserError(f"{directory} is not an SFT checkpoint (no chat template in its meta): "
                        f"{starts} `minillm sft --out`")
    return ckpt


def can_resume(run_checkpoint: str | os.PathLike) -> bool:
    """Whether a run's checkpoint directory holds a whole training state to resume from.

    False when the run never saved one (nothing to lose: it starts at step 0). A checkpoint
    without its training state, or with a damaged one, or only the intact copy a save left
    aside when it was killed between its two renames, is an error that says where the
    intact copy is and how to restore it: resuming must never silently start over.
    """
    directory = Path(run_checkpoint)
    aside = sorted(directory.parent.glob(f".{directory.name}.old-*"), key=lambda p: p.stat().st_mtime)
    restore = (f"; the previous save is intact at {aside[-1]}: move {directory} away, rename "
               f"{aside[-1].name} to {directory.name} and resume again") if aside else ""
    if not directory.exists():
        if aside:
            raise MissingFileError(f"{directory} is missing because a save was interrupted" + restore)
        return False
    for name in ("config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"):
        if not (directory / name).is_file():
            raise MissingFileError(f"{directory / name} is missing, so the run cannot resume exactly"
                                   + (restore or "; pass --overwrite to start the run over"))
    try:
        state = read_json(directory / "trainer_state.json")
        if not {"step", "optimizer", "rng"} <= set(state):
            raise CheckpointError(f"{directory / 'trainer_state.json'} lacks step, optimizer or rng")
        read_json(directory / "config.json")
        for name in ("model.safetensors", "optimizer.safetensors"):
            _check_header(directory / name)
    except CheckpointError as err:
        raise CheckpointError(f"{err}, so the run cannot resume exactly"
                              + (restore or "; pass --overwrite to start the run over")) from None
    return True


def _check_header(path: Path) -> None:
    """Read a safetensors file's header only (names, shapes, offsets): a cut or garbled file fails here,
    before a run spends any time on its data."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


def read_step(directory: str | os.PathLike) -> int:
    """The training step a checkpoint was saved at, without loading its arrays."""
    return int(_read_checkpoint_config(_existing_directory(directory)).get("step", 0))


def read_config(directory: str | os.PathLike) -> GPTConfig:
    """The GPTConfig saved in a checkpoint, without loading its arrays."""
    directory = _existing_directory(directory)
    return config_from_dict(_read_checkpoint_config(directory)["config"], directory / "config.json")


RUN_SUBDIRECTORY = "checkpoint"  # a training run keeps its checkpoint here, beside its logs


def _existing_directory(directory) -> Path:
    """The checkpoint directory itself, or the checkpoint inside a training run's directory."""
    directory = Path(directory)
    if directory.is_dir() and not (directory / "config.json").exists() \
            and (directory / RUN_SUBDIRECTORY / "config.json").exists():
        return directory / RUN_SUBDIRECTORY
    if directory.is_dir() and not (directory / "config.json").exists() and not (directory / RUN_SUBDIRECTORY).exists():
        raise MissingFileError(f"{directory} holds no minillm checkpoint (neither config.json nor "
                               f"{RUN_SUBDIRECTORY}/config.json): pass a run directory or its checkpoint")
    if directory.is_dir():
        return directory
    if directory.exists():
        raise UserError(f"{directory} is a file, not a run or checkpoint directory")
    hint = ""
    aside = sorted(directory.parent.glob(f".{directory.name}.old-*"))
    if aside:  # a crash between the two renames of `_swap_into_place`
        hint = f"; a save was interrupted, and the previous checkpoint is intact at {aside[-1]}: rename it back"
    raise MissingFileError(f"checkpoint directory {directory} does not exist{hint}")


def _read_checkpoint_config(directory: Path) -> dict:
    path = directory / "config.json"
    data = read_json(path)
    if data.get("format") != FORMAT_NAME:
        hint = " (it looks like a Hugging Face model: use minillm.io.hf_gpt2.load_hf_gpt2)" \
            if "model_type" in data else ""
        raise CheckpointError(f"{path} is not a minillm checkpoint config (format "
                              f"{data.get('format')!r}, expected {FORMAT_NAME!r}){hint}")
    if data.get("model_kind", "gpt") not in MODEL_CLASSES:
        raise CheckpointError(f"{path}: model_kind {data['model_kind']!r} is unknown to this minillm "
                              f"(known: {', '.join(MODEL_CLASSES)})")
    if data.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {data.get('version')!r} is unknown "
                              f"to this minillm, which reads version {FORMAT_VERSION}; upgrade minillm")
    return data


def config_from_dict(values: dict, source) -> GPTConfig:
    """A GPTConfig from saved values; an unknown field is an error, a missing one takes its default."""
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CheckpointError(f"{source}: {unknown[0]!r} is not a GPTConfig field of this minillm "
                              f"(known: {', '.join(sorted(known))})")
    return GPTConfig(**values)


def build_model(config: GPTConfig, kind: str = "gpt") -> Module:
    """A GPT (or, with kind="reward_model", a RewardModel) for `config` whose random
    initialisation does not move the global generator, so loading a checkpoint never
    changes the numbers a run draws afterwards."""
    state = _rng_state()
    try:
        return MODEL_CLASSES[kind](config)
    finally:
        if state is not None:
            backend.set_rng_state(state)


def _rng_state() -> dict | None:
    """The global generator's state as JSON data, or None where the backend cannot give it
    (CuPy's generators expose no saveable state)."""
    state = backend.get_rng_state()
    try:
        return json.loads(json.dumps(state)) if isinstance(state, dict) else None
    except (TypeError, ValueError):
        return None


def load_tensors(model: Module, tensors: dict, source: str, display=lambda name: name) -> None:
    """Copy `tensors` into the model after checking names and shapes; the error names the
    first mismatch, in the model's parameter order (`display` maps names for messages)."""
    expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{source}: tensor {display(name)} is missing; the config implies "
                                  f"one of shape {shape}")
        got = tuple(tensors[name].shape)
        if got != shape:
            raise CheckpointError(f"{source}: {display(name)} has shape {got}, the config implies {shape}")
    unexpected = [name for name in tensors if name not in expected]
    if unexpected:
        raise CheckpointError(f"{source}: tensor {display(unexpected[0])} is not a parameter of the "
                              "model the config describes")
    model.load_state_dict({name: tensors[name] for name in expected})


def _restore_training_state(directory: Path, model: Module, optimizer) -> None:
    state_path = directory / "trainer_state.json"
    if not state_path.exists():
        raise MissingFileError(f"{state_path} is missing: this checkpoint was saved without an "
                                "optimizer, so training cannot resume exactly; load it without one")
    trainer = read_json(state_path)
    saved = trainer["optimizer"]
    if saved["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{state_path}: the checkpoint holds {saved['type']} state, "
                              f"but a {type(optimizer).__name__} was given")
    sizes = [len(g["params"]) for g in saved["groups"]]
    if sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise CheckpointError(f"{state_path}: the saved optimizer has parameter groups of sizes {sizes}, "
                              f"the given one {[len(g['params']) for g in optimizer.param_groups]}")
    moments = _moments_by_name(read_tensors(directory / "optimizer.safetensors"), model)
    params = dict(model.named_parameters())
    hypers, states = [], []
    for group, saved_group in zip(optimizer.param_groups, saved["groups"]):
        group["params"] = [params[name] for name in saved_group["params"]]
        states += [moments.get(name, {}) for name in saved_group["params"]]
        # JSON turned tuples (AdamW's betas) into lists: give them back their type.
        hypers.append({k: tuple(v) if isinstance(group.get(k), tuple) else v
                       for k, v in saved_group.items() if k != "params"})
    optimizer.load_state_dict({"step": saved["step"], "groups": hypers, "state": states})
    _restore_rng(trainer["rng"], state_path)


def _moments_by_name(tensors: dict, model: Module) -> dict:
    """{"wte.weight.m": array} -> {"wte.weight": {"m": array}}, checking names and shapes."""
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    moments: dict = {}
    for key, array in tensors.items():
        name, slot = key.rsplit(".", 1)
        if shapes.get(name) != tuple(array.shape):
            raise CheckpointError(f"optimizer.safetensors: {key} has shape {tuple(array.shape)}, "
                                  f"the model's {name} has shape {shapes.get(name)}")
        moments.setdefault(name, {})[slot] = array
    return moments


def _restore_rng(rng: dict, source: Path) -> None:
    if rng.get("state") is None or rng.get("device") != backend.device:
        why = "holds no random state" if rng.get("state") is None else \
            f"holds the random state of device {rng.get('device')!r}, not of {backend.device!r}"
        warnings.warn(f"{source} {why}: dropout will draw different numbers than an uninterrupted run")
        return
    backend.set_rng_state(rng["state"])
