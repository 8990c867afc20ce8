"""Keep freed memory for reuse, so NumPy's big temporaries stop costing page faults.

Why this module exists: a training step creates and frees hundreds of arrays of a few
megabytes (activations, gradients and their temporaries). glibc's malloc hands out blocks
above its *mmap threshold* as fresh pages from the kernel and gives them back on `free`,
and it trims the top of its heap back to the kernel too. Every fresh page is zeroed by the
kernel the first time it is touched, so the same megabytes were zeroed again at every op of
every step. On a 2-core laptop that was about a third of the classroom model's step, spent
in the kernel (`sys` time), and it kept the second core from helping the matrix products
(benchmarks/README.md has the measurement).

`mallopt` raises both thresholds, so big blocks come from the heap and a freed block stays
there for the next array of its size. The price: the process keeps its peak memory instead
of returning it between steps, which a training run reaches anyway.

Only glibc (Linux) has these knobs; elsewhere `tune_allocator` does nothing. Opt out with
`MINILLM_MALLOC=system` in the environment. `minillm.fast.enable()` calls it.
Left out: a memory pool of our own (the CuPy backend already has one on the GPU).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 256 << 20   # blocks up to 256 MiB come from the heap and are reused
TRIM_THRESHOLD = 512 << 20   # keep up to 512 MiB of free heap top instead of returning it
TOP_PAD = 64 << 20           # grow the heap 64 MiB at a time (fewer brk calls)

tuned = False                # whether this process's allocator was tuned


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds once; True if this process's malloc is now tuned."""
    global tuned
    if tuned or os.environ.get("MINILLM_MALLOC", "") == "system" or not sys.platform.startswith("linux"):
        return tuned
    libc = _glibc()
    if libc is None:
        return False
    tuned = all(libc.mallopt(param, value) == 1 for param, value in
                ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return tuned


def _glibc():
    """The C library if it is glibc (it has `mallopt` and `gnu_get_libc_version`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it: musl's mallopt does nothing
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None
