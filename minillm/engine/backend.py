"""The array backend: NumPy on the CPU, CuPy on a CUDA GPU, behind one module `xp`.

Every piece of array code in minillm reaches its array library through this module, so
the same lines run on either device (the CuPy "generic code" pattern). This is the only
module that imports CuPy. It also owns the default floating dtype, the seeded random
generators, and the transfers between device and host (which it counts, so a test can
prove that a training step makes no hidden device -> host copies).

Left out on purpose: multiple GPUs, mixed precision, and any array library but these two.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy

from minillm.errors import UserError

DEVICES = ("cpu", "cuda")
# The target id every cross entropy skips: the SFT batches write it at prompt, template and
# padding positions, the losses read it. It lives here, in the module everything may
# import, so data code and autograd code share one definition (PyTorch's value).
IGNORE_INDEX = -100

xp: Any = numpy               # the array module in use: numpy or cupy
device: str = "cpu"
_default_dtype = numpy.float32
_rng: Any = numpy.random.default_rng(0)
_debug_nan = os.environ.get("MINILLM_DEBUG_NAN", "") not in ("", "0")
_device_checks = os.environ.get("MINILLM_DEVICE_CHECKS", "") not in ("", "0")
transfers = {"device_to_host": 0, "host_to_device": 0}


class DeviceError(UserError, RuntimeError):
    """The requested device cannot be used (unknown name, CuPy missing, no GPU)."""


def _load_cupy():
    try:
        import cupy  # the one place CuPy is imported
    except ImportError:
        # from None: the sentence says everything; a chained ModuleNotFoundError only adds scrolling
        raise DeviceError(
            "device 'cuda' needs CuPy, which is not installed: run "
            "pip install -e \".[gpu]\" (cupy-cuda12x) on a machine with an NVIDIA GPU"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise DeviceError(f"device 'cuda' was requested but no usable GPU was found ({err})") from err
    if count == 0:
        raise DeviceError("device 'cuda' was requested but no GPU was found")
    return cupy


def use_device(name: str) -> None:
    """Select the array library for all later work: "cpu" (NumPy) or "cuda" (CuPy).

    Arrays made before the switch stay where they are; make models after choosing the device.
    """
    global xp, device, _rng
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: expected one of {', '.join(DEVICES)}")
    xp = numpy if name == "cpu" else _load_cupy()
    device = name
    _rng = make_rng(0)


def get_array_module(*arrays) -> Any:
    """The array module (numpy or cupy) that owns these arrays; numpy for plain Python values."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            return xp
    return numpy


# ----- dtype ---------------------------------------------------------------------------

def get_default_dtype():
    """The floating dtype used for new tensors and parameters (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the default floating dtype: float32 for training, float64 for gradient checks."""
    global _default_dtype
    dtype = numpy.dtype(dtype).type
    if dtype not in (numpy.float16, numpy.float32, numpy.float64):
        raise TypeError(f"default dtype must be a floating type (float16/32/64), got {dtype.__name__}")
    _default_dtype = dtype


@contextlib.contextmanager
def default_dtype(dtype) -> Iterator[None]:
    """Context manager: use `dtype` as the default floating dtype inside the block."""
    previous = _default_dtype
    set_default_dtype(dtype)
    try:
        yield
    finally:
        set_default_dtype(previous)


# ----- random numbers ------------------------------------------------------------------

class CupyGenerator:
    """A seeded generator for CuPy arrays whose whole state is plain data.

    CuPy's own generators keep their state in GPU memory with no way to save and restore it,
    which would make a resumed run on a GPU draw different numbers than an uninterrupted
    one. Here a host NumPy PCG64 stream (whose state is a small dict) hands each draw a
    fresh seed, and cuRAND fills the array on the device from that seed: same seed, same
    numbers, and `bit_generator.state` saves and restores exactly, as on NumPy.
    """

    def __init__(self, seed: int | None = None):
        self._host = numpy.random.default_rng(seed)
        self.bit_generator = self._host.bit_generator

    def _device(self):
        return xp.random.RandomState(int(self._host.integers(2 ** 63)))

    def random(self, size=None, dtype=numpy.float64):
        return self._device().random_sample(size, dtype)

    def standard_normal(self, size=None, dtype=numpy.float64):
        return self._device().standard_normal(size, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=numpy.float64):
        return self._device().uniform(low, high, size, dtype)

    def integers(self, low, high=None, size=None):
        return self._device().randint(low, high, size, dtype=numpy.int64)

    def permutation(self, n: int):
        return self._device().permutation(n)


def manual_seed(seed: int) -> None:
    """Seed the global generator: the same seed gives the same numbers, bit for bit, on one backend."""
    global _rng
    _rng = make_rng(seed)


def make_rng(seed: int | None = None):
    """An explicit generator for code that takes its own seed.

    On the CPU a NumPy `Generator`; on a GPU a `CupyGenerator`, which has the same methods
    (random, standard_normal, uniform, integers, permutation) and a saveable state.
    """
    if seed is not None and (not isinstance(seed, (int, numpy.integer)) or seed < 0):
        raise UserError(f"a seed must be a non-negative integer, got {seed!r}")
    return numpy.random.default_rng(seed) if xp is numpy else CupyGenerator(seed)


def get_rng():
    """The global generator that `manual_seed` seeds."""
    return _rng


def get_rng_state() -> dict:
    """The global generator's state as plain data (for checkpoints)."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore the global generator's state saved by `get_rng_state`."""
    _rng.bit_generator.state = state


# ----- arrays and transfers ------------------------------------------------------------

def asarray(data, dtype=None):
    """`data` as an array on the current device; floats default to the default dtype."""
    if isinstance(data, (float, list, tuple)) and dtype is None:
        probe = numpy.asarray(data)
        dtype = _default_dtype if probe.dtype.kind == "f" else None
    array = xp.asarray(data, dtype=dtype)
    transfers["host_to_device"] += isinstance(data, numpy.ndarray) and not on_host(array)  # a copy to the GPU
    return array


def to_numpy(array) -> numpy.ndarray:
    """Copy an array to the host as a NumPy array (counted when it leaves the GPU)."""
    if isinstance(array, numpy.ndarray):
        return array
    if hasattr(array, "get"):  # a CuPy array
        transfers["device_to_host"] += 1
        return array.get()
    return numpy.asarray(array)


def scalar(array) -> float | int | bool:
    """A one-element array as a Python number: the explicit, counted way to read a value back."""
    return to_numpy(array).item()


def on_host(array) -> bool:
    """True for NumPy arrays and plain Python data: values can be checked without a transfer."""
    return not type(array).__module__.startswith("cupy")


def as_checkable(data):
    """Host data (lists, NumPy) as a NumPy array, a device array as itself.

    Inputs are checked where they are: host data before it moves to the device (so the check
    costs no round trip), see `out_of_range`.
    """
    return data if not on_host(data) else numpy.asarray(data)


def out_of_range(ids, low: int, high: int):
    """(min, max) of an integer array when some value lies outside [low, high), else None.

    Arrays on the host are always checked. Arrays already on the GPU are checked only when
    `set_device_checks(True)` (or MINILLM_DEVICE_CHECKS=1): each check reads a value back, a
    device -> host round trip the training step must not pay; their values come from checked
    host data anyway (token files, tokenizers).
    """
    if ids.size == 0 or not checks_values(ids):
        return None
    lo, hi = scalar(ids.min()), scalar(ids.max())
    return (lo, hi) if lo < low or hi >= high else None


def checks_values(array) -> bool:
    """Whether `out_of_range` reads this array's values: host arrays always, GPU arrays only
    with device checks on. Lets a caller skip building an array only a check would read."""
    return on_host(array) or _device_checks


def set_device_checks(enabled: bool) -> None:
    """Check values of arrays on the GPU too (slower: each check is a device -> host read)."""
    global _device_checks
    _device_checks = bool(enabled)


# ----- debugging -----------------------------------------------------------------------

def set_debug_nan(enabled: bool) -> None:
    """When on, every op checks its output and names itself if it produced NaN (slow)."""
    global _debug_nan
    _debug_nan = bool(enabled)


def debug_nan_enabled() -> bool:
    return _debug_nan


def _init_from_environment() -> None:
    """Apply MINILLM_DEVICE; a bad value raises a DeviceError that names the variable."""
    name = os.environ.get("MINILLM_DEVICE", "").strip().lower()
    try:
        if name:
            use_device(name)
    except DeviceError as err:
        raise DeviceError(f"MINILLM_DEVICE={name}: {err}") from None


_init_from_environment()
