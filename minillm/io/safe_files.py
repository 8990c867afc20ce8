"""Files that are safe to read and to write: safetensors without pickles, JSON, atomic files and directories.

Lecture: a checkpoint is hours of training, so writing it must never leave half a file
behind, and reading one must never run code. Arrays are read only from safetensors (a
pickle, which can run any code when loaded, is refused by name); a directory is written in
a temporary sibling, flushed to disk and swapped into place, so a crash leaves the old one whole;
a single file (a marker, a report) is written the same way. Used by io/checkpoint.py (minillm
checkpoints), io/hf_gpt2.py (Hugging Face GPT-2 files), the pipeline's markers and its report.
Left out: file locking between processes, network filesystems' weaker rename guarantees.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import numpy
from safetensors.numpy import load_file

from minillm.engine import backend
from minillm.errors import MissingFileError, UserError


class CheckpointError(UserError):
    """A checkpoint file (minillm's or Hugging Face's) exists but does not hold what this code expects."""


def host_array(array) -> numpy.ndarray:
    """A C-contiguous host copy of a (NumPy or CuPy) array, as safetensors requires."""
    host = backend.to_numpy(array)
    # A transposed or sliced view is not contiguous: copy it into row-major order.
    return host if host.flags["C_CONTIGUOUS"] else host.copy(order="C")


# The first bytes of formats that unpickle when loaded: refuse them by name.
_PICKLE_SIGNATURES = {b"\x80": "a Python pickle", b"PK\x03\x04": "a zip archive (PyTorch .bin/.pt)",
                      b"\x93NUMPY": "a NumPy .npy file"}


def _safetensors_header(head: bytes, file_size: int) -> bool:
    """Whether a file opens as safetensors does: an 8-byte little-endian header length n that
    fits in the file, then the header's JSON object. The length is binary, so its first byte
    can be anything, 0x80 (a pickle's first byte) included: it is checked before signatures."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + n <= file_size


def read_tensors(path: Path) -> dict[str, numpy.ndarray]:
    """Read a safetensors file as name -> NumPy array; refuse anything else, pickles above all."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    with open(path, "rb") as f:
        head = f.read(9)
    for signature, kind in _PICKLE_SIGNATURES.items():
        if head.startswith(signature) and not _safetensors_header(head, path.stat().st_size):
            raise CheckpointError(f"{path} is {kind}, not safetensors. minillm never loads pickled "
                                  "data, because unpickling a file can run any code; convert the file "
                                  "to safetensors with the tool that wrote it")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from err


def read_json(path: Path) -> dict:
    """A JSON object from a file; a clear error if it is missing, malformed or not an object."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def write_json(data: dict, path: Path) -> None:
    """Write a dict as indented UTF-8 JSON (call it inside `atomic_directory` for an atomic save)."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write one UTF-8 file atomically: a reader sees the old file or the whole new one, never half.

    The text goes to a temporary sibling, is flushed to disk, and is renamed over `path`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """`write_text_atomic` of indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


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
    """Ask the OS to write one file's (or directory entry's) data to disk now."""
    if path.is_dir() and os.name == "nt":  # Windows cannot open a directory to flush it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
