"""Checkpoints: save a model (and its training state) to one directory, load it back exactly.

Lecture: training takes hours, so a run must be able to stop and resume as if it never
stopped. That needs more than the weights: the optimizer's moments, the step, and the
state of the random generator (dropout draws from it). Arrays go into safetensors files,
everything else into JSON; nothing is ever pickled, because unpickling a file runs code.
A save is atomic: a crash mid-save leaves the previous checkpoint whole.
Left out: sharded files, async saves, keeping the last k checkpoints. GPT-2 files: hf_gpt2.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy
from safetensors.numpy import load_file, save_file

from minillm import backend
from minillm.model import GPT, GPTConfig
from minillm.tokenizers import Tokenizer
from minillm.tokenizers import load as load_tokenizer

FORMAT_NAME = "minillm-checkpoint"
FORMAT_VERSION = 1
# The files a checkpoint owns; anything else found in its directory (logs, plots) is kept.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json",
                    "optimizer.safetensors", "trainer_state.json")


class CheckpointError(ValueError):
    """A checkpoint file exists but does not hold what this code expects."""


@dataclass
class Checkpoint:
    """What `load` returns."""

    model: GPT                           # the GPT, holding the saved parameters
    config: GPTConfig                    # its config (also model.config)
    tokenizer: Tokenizer | None = None   # the saved tokenizer, if one was saved
    step: int = 0                        # the training step given to `save`
    meta: dict = field(default_factory=dict)  # the JSON dict given to `save` (run config, metrics)
    training_state_restored: bool = False     # optimizer state and global RNG state were restored


# ----- save ----------------------------------------------------------------------------

def save(model: GPT, directory: str | os.PathLike, tokenizer: Tokenizer | None = None,
         optimizer=None, step: int = 0, meta: dict | None = None) -> Path:
    """Write a checkpoint directory; an existing checkpoint there is replaced atomically.

    Args:
        model: the GPT to save.
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
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model.config.vocab_size} (config.vocab_size): its ids would not fit")
    with atomic_directory(directory, CHECKPOINT_FILES) as tmp:
        _write_config(model, tmp / "config.json", step, meta)
        _write_model(model, tmp / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        if optimizer is not None:
            _write_optimizer(model, optimizer, tmp, step)
    return Path(directory)


def _write_config(model: GPT, path: Path, step: int, meta: dict) -> None:
    data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": model.config.to_dict(),
            "dtype": str(model.wte.weight.dtype), "step": int(step), "meta": meta}
    write_json(data, path)


def _write_model(model: GPT, path: Path) -> None:
    tensors = {name: host_array(array) for name, array in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT_NAME})


def _write_optimizer(model: GPT, optimizer, directory: Path, step: int) -> None:
    """optimizer.safetensors: "<parameter name>.<slot>" -> array (e.g. "wte.weight.m");
    trainer_state.json: hyperparameters, which parameters each group holds, the RNG state."""
    names = {id(p): name for name, p in model.named_parameters()}
    state = optimizer.state_dict()
    tensors, groups, i = {}, [], 0
    for group, hyper in zip(optimizer.param_groups, state["groups"]):
        group_names = []
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError("the optimizer updates a parameter that is not part of the model "
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
            parameter groups (e.g. `AdamW(GPT(read_config(directory)).parameters())`). Its
            parameters are re-pointed, by name, at the loaded model's, and its state, step
            and the global random state are restored.

    Returns:
        A Checkpoint. Loading without an optimizer leaves the global random state untouched.
    """
    directory = _existing_directory(directory)
    info = _read_checkpoint_config(directory)
    config = config_from_dict(info["config"], directory / "config.json")
    with backend.default_dtype(info.get("dtype", "float32")):
        model = build_model(config)
    load_tensors(model, read_tensors(directory / "model.safetensors"), "model.safetensors")
    tokenizer_path = directory / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path.exists() else None
    if optimizer is not None:
        _restore_training_state(directory, model, optimizer)
    return Checkpoint(model, config, tokenizer, int(info.get("step", 0)), info.get("meta", {}),
                      optimizer is not None)


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
    if directory.is_dir():
        return directory
    hint = ""
    aside = sorted(directory.parent.glob(f".{directory.name}.old-*"))
    if aside:  # a crash between the two renames of `_swap_into_place`
        hint = f"; a save was interrupted, and the previous checkpoint is intact at {aside[-1]}: rename it back"
    raise FileNotFoundError(f"checkpoint directory {directory} does not exist{hint}")


def _read_checkpoint_config(directory: Path) -> dict:
    path = directory / "config.json"
    data = read_json(path)
    if data.get("format") != FORMAT_NAME:
        hint = " (it looks like a Hugging Face model: use minillm.hf_gpt2.load_hf_gpt2)" \
            if "model_type" in data else ""
        raise CheckpointError(f"{path} is not a minillm checkpoint config (format "
                              f"{data.get('format')!r}, expected {FORMAT_NAME!r}){hint}")
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


def build_model(config: GPTConfig) -> GPT:
    """A GPT for `config` whose random initialisation does not move the global generator,
    so loading a checkpoint never changes the numbers a run draws afterwards."""
    state = _rng_state()
    try:
        return GPT(config)
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


def load_tensors(model: GPT, tensors: dict, source: str, display=lambda name: name) -> None:
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


def _restore_training_state(directory: Path, model: GPT, optimizer) -> None:
    state_path = directory / "trainer_state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{state_path} is missing: this checkpoint was saved without an "
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


def _moments_by_name(tensors: dict, model: GPT) -> dict:
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


# ----- files: safetensors, JSON, atomic directories --------------------------------------

def host_array(array) -> numpy.ndarray:
    """A C-contiguous host copy of a (NumPy or CuPy) array, as safetensors requires."""
    return numpy.ascontiguousarray(backend.to_numpy(array))


# The first bytes of formats that unpickle when loaded: refuse them by name.
_PICKLE_SIGNATURES = {b"\x80": "a Python pickle", b"PK\x03\x04": "a zip archive (PyTorch .bin/.pt)",
                      b"\x93NUMPY": "a NumPy .npy file"}


def read_tensors(path: Path) -> dict[str, numpy.ndarray]:
    """Read a safetensors file as name -> NumPy array; refuse anything else, pickles above all."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    with open(path, "rb") as f:
        head = f.read(8)
    for signature, kind in _PICKLE_SIGNATURES.items():
        if head.startswith(signature):
            raise CheckpointError(f"{path} is {kind}, not safetensors. minillm never loads pickled "
                                  "data, because unpickling a file can run any code; convert the file "
                                  "to safetensors with the tool that wrote it")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def write_json(data: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike, owned: Iterable[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling of `directory` to write into; when the block ends
    without error, swap it into place. On error the temporary directory is deleted and
    `directory` is untouched. Files in an old `directory` not named in `owned` are copied over.
    """
    directory = Path(directory)
    _check_replaceable(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if directory.exists():
            _copy_foreign_files(directory, tmp, set(owned))
        _fsync_tree(tmp)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(directory: Path) -> None:
    """Only replace an empty directory or one that holds a model (a config.json): never a
    directory of unrelated files given by mistake."""
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / "config.json").exists():
        raise FileExistsError(f"{directory} is not empty and holds no config.json, so it is not a "
                              "model directory; refusing to replace it: choose another directory")


def _copy_foreign_files(old: Path, new: Path, owned: set) -> None:
    """Copy everything but the top-level files the writer owns (their new versions are in `new`)."""
    shutil.copytree(old, new, dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if n in owned and Path(folder) == old])


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Rename the old directory aside, the new one in, then delete the old one.

    A crash between the two renames leaves the old checkpoint whole at `.name.old-*`
    (`load` points to it); a failed second rename puts it back at once.
    """
    if not directory.exists():
        os.replace(tmp, directory)
    else:
        aside = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(directory, aside)
        try:
            os.replace(tmp, directory)
        except BaseException:
            os.replace(aside, directory)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync(directory.parent)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under root to disk before it is renamed into place."""
    for path in [*root.rglob("*"), root]:
        _fsync(path)


def _fsync(path: Path) -> None:
    if path.is_dir() and os.name == "nt":  # Windows cannot open a directory to flush it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
