"""Choose OpenBLAS's matrix-product kernels where its own choice is the slower one.

Why this module exists: NumPy's OpenBLAS picks its kernels for the CPU once, when NumPy
loads it. On AMD Zen 4 (CPU family 25 with AVX-512) it picks its AVX-512 kernels (the ones
written for Intel's Skylake-X), but Zen 4 executes a 512-bit instruction as two 256-bit
halves, and OpenBLAS's AVX2 kernels (written for Haswell) multiply float32 matrices faster
there: about 10% on one product on one core, 1 to 5% on the layers' products and about 5%
on a whole training step of the `bpe` benchmark (benchmarks/README.md has the measurements). The environment variable
OPENBLAS_CORETYPE=Haswell selects them.

OpenBLAS reads that variable only when it is loaded, so `minillm.fast.enable()` sets it only
where nothing has imported NumPy yet (the `minillm` command enables the wing first thing; in a
script or notebook, call it before `import numpy`) and where the environment does not set it:
set OPENBLAS_CORETYPE yourself to choose otherwise (`OPENBLAS_CORETYPE=SkylakeX` keeps
OpenBLAS's own choice on Zen 4). Child processes inherit the choice.
Left out: other CPUs (measured nowhere else), other BLAS libraries (they ignore the variable).
"""
from __future__ import annotations

import os
import sys

# (vendor, CPU family, a CPU flag it must have) -> OpenBLAS core type to use instead of its own choice
FASTER_KERNELS = {("AuthenticAMD", 25, "avx512f"): "Haswell"}  # Zen 4: AVX2 kernels beat its AVX-512 ones

chosen: str | None = None    # the core type `choose_kernels` set in this process, if any


def preferred_core(cpuinfo: str) -> str | None:
    """The OpenBLAS core type to use for the CPU described by /proc/cpuinfo's text, or None
    (OpenBLAS's own choice is the right one, or the CPU is not one we measured)."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry
    if not fields.get("cpu family", "").isdigit():
        return None
    vendor, family, flags = fields.get("vendor_id"), int(fields["cpu family"]), fields.get("flags", "").split()
    for (want_vendor, want_family, flag), core in FASTER_KERNELS.items():
        if vendor == want_vendor and family == want_family and flag in flags:
            return core
    return None


def choose_kernels() -> str | None:
    """Set OPENBLAS_CORETYPE for this CPU if it has a measured better choice, the variable is
    unset and NumPy is not loaded yet; returns the core type set, else None."""
    global chosen
    if chosen or "numpy" in sys.modules or os.environ.get("OPENBLAS_CORETYPE"):
        return chosen
    try:
        with open("/proc/cpuinfo") as info:  # Linux only: elsewhere nothing is chosen
            core = preferred_core(info.read())
    except OSError:
        return None
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = chosen = core
    return chosen


def loaded_core() -> str | None:
    """The kernels NumPy's OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), or None if NumPy uses
    another BLAS; for benchmark and bug reports."""
    import ctypes

    from minillm.fast.cpu_threads import openblas_function
    corename = openblas_function("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                                 "openblas_get_corename")
    if corename is None:
        return None
    corename.restype = ctypes.c_char_p
    return corename().decode()
