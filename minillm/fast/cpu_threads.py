"""Threads on the CPU: a step's row-wise work in blocks of rows, on every core.

NumPy runs its element-wise loops on one core, and OpenBLAS's own threads spin while they
wait, losing their cores to any other process. `parallel_rows` splits the rows of the fused
ops' arrays (and the layers' matrix products) into one block per thread on a small pool whose
idle threads sleep; NumPy releases the interpreter lock inside its loops and BLAS calls, so
the blocks run at once. Row-wise work gives the same numbers, bit for bit, however the rows
are split (tests/test_parallel.py). `minillm.fast.enable()` starts them: `MINILLM_THREADS`
sets the count (default: the cores, up to 8; 1 is everything on the calling thread, with
BLAS's own threads). With more than one, NumPy's OpenBLAS is set to one thread right then,
for the whole process, so every product rounds the same way whether it comes before or after
the first split, in a fresh process or a long-running one (exact resume).
Left out: processes (the arrays would have to be copied), splitting work on a GPU.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from minillm.engine import backend
from minillm.errors import UserError


def threads_from_environment() -> int:
    """MINILLM_THREADS, or the number of cores up to 8."""
    value = os.environ.get("MINILLM_THREADS", "").strip()
    if not value:
        return max(1, min(os.cpu_count() or 1, 8))
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"MINILLM_THREADS must be a positive integer (the threads a CPU step uses), "
                        f"got {value!r}")
    return int(value)


_threads = 1  # set from MINILLM_THREADS by `minillm.fast.enable()`
# Below these sizes a block's hand-off to a thread (tens of microseconds) costs more than the
# thread saves (benchmarks/README.md): element-wise work compared by its elements, products by
# their output's elements (each of which costs a whole dot product, so they split far sooner).
_parallel_min_size = 1 << 18
_product_min_size = 1 << 15
_pool: ThreadPoolExecutor | None = None
_in_worker = threading.local()


def set_threads(count: int, min_size: int | None = None, product_min_size: int | None = None) -> None:
    """Run the row-wise work of the fused ops, the layers' products and AdamW on `count`
    threads (1: all on the calling thread, and NumPy's BLAS gets its own threads back);
    arrays smaller than `min_size` elements are never split, nor products whose output is
    smaller than `product_min_size` (default: `min_size` too, when that is given)."""
    global _threads, _parallel_min_size, _product_min_size, _pool
    if not isinstance(count, int) or count < 1:
        raise UserError(f"the thread count must be a positive integer, got {count!r}")
    if _pool is not None and count != _threads:
        _pool.shutdown()
        _pool = None
    if count == 1:
        _give_back_blas()
    else:
        _take_over_blas()  # now, not at the first split: see the module's docstring
    _threads = count
    if min_size is not None:
        _parallel_min_size = int(min_size)
    if product_min_size is not None or min_size is not None:
        _product_min_size = int(min_size if product_min_size is None else product_min_size)


def get_threads() -> int:
    """How many threads `parallel_rows` uses (MINILLM_THREADS, or the cores up to 8)."""
    return _threads


@contextlib.contextmanager
def threads(count: int, min_size: int | None = None) -> Iterator[None]:
    """Context manager: `set_threads(count, min_size)` inside the block, the previous setting after."""
    previous = (_threads, _parallel_min_size, _product_min_size)
    set_threads(count, min_size)
    try:
        yield
    finally:
        set_threads(*previous)


def _run_in_worker(fn: Callable, chunks, shared: dict) -> Any:
    _in_worker.active = True  # a nested parallel_rows runs serially: no worker waits on its own pool
    try:
        return fn(*chunks, **shared)
    finally:
        _in_worker.active = False


_blas_functions: Any = None  # (set, get) thread count of the OpenBLAS NumPy loaded; False: none found
_openblas_paths: list | None = None


def openblas_function(*names: str):
    """The first of these functions found in the OpenBLAS that NumPy loaded (a ctypes
    function), looked up among the process's shared libraries; None where there is none
    (another BLAS, or a platform without /proc/self/maps)."""
    global _openblas_paths
    if _openblas_paths is None:
        try:
            with open("/proc/self/maps") as maps:
                _openblas_paths = sorted({line.split()[5] for line in maps
                                          if len(line.split()) == 6 and "openblas" in line.split()[5].lower()})
        except OSError:
            _openblas_paths = []
    for path in _openblas_paths:
        library = ctypes.CDLL(path)  # already loaded: this only looks its symbols up
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                return function
    return None


def _openblas():
    """openblas_set_num_threads and openblas_get_num_threads of NumPy's OpenBLAS, or None."""
    global _blas_functions
    if _blas_functions is None:
        pairs = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                 ("openblas_set_num_threads", "openblas_get_num_threads")]
        found = [(openblas_function(s), openblas_function(g)) for s, g in pairs]
        _blas_functions = next((pair for pair in found if all(pair)), False)
    return _blas_functions or None


_blas_given_back: int | None = None  # BLAS's own thread count while minillm's threads replace it


def _take_over_blas() -> bool:
    """Set NumPy's OpenBLAS to one thread for as long as minillm's threads split the products
    (until `set_threads(1)` gives the previous count back); False where it cannot be set.

    Set once, not around each product: every change of OpenBLAS's thread count wakes its
    worker threads, which then spin on the core the other block needs."""
    global _blas_given_back
    functions = _openblas()
    if functions is None:
        return False
    if _blas_given_back is None:
        _blas_given_back = functions[1]()
        functions[0](1)
    return True


def _give_back_blas() -> None:
    global _blas_given_back
    if _blas_given_back is not None:
        _openblas()[0](_blas_given_back)
        _blas_given_back = None


def parallel_rows(fn: Callable, *arrays, products: bool = False, size: int | None = None, **shared) -> list:
    """fn(*chunks, **shared) for contiguous blocks of rows (the leading axis) of `arrays`, at
    once on `get_threads()` threads; returns fn's results, in row order. `shared` (weights,
    constants) goes to every call whole.

    NumPy releases the interpreter lock inside its array loops and its BLAS calls, so blocks
    on different threads run on different cores: this is how the element-wise work of a
    training step uses more than one core (its products too, see below). `fn` must treat
    each row on its own (row-wise formulas, results written into the chunks given) so the
    result is the same, bit for bit, however the rows are split; `fn(*arrays, **shared)` on
    the calling thread is that twin, and what runs on one thread, on a GPU, inside a worker,
    and for arrays smaller than the threshold of `set_threads` (`size` overrides the element
    count compared with it).

    products=True says fn makes matrix products: the first such split sets NumPy's OpenBLAS
    to one thread (until `set_threads(1)`), so the blocks are the parallelism and BLAS's own
    threads (which spin while they wait, and lose badly on a busy machine) stay out of it.
    Where NumPy's BLAS threads cannot be set, such blocks run as one call instead.
    """
    rows = arrays[0].shape[0] if arrays[0].ndim else 1
    parts = min(_threads, rows)
    threshold = _product_min_size if products else _parallel_min_size
    if (parts < 2 or (arrays[0].size if size is None else size) < threshold
            or not backend.on_host(arrays[0]) or getattr(_in_worker, "active", False)):
        return [fn(*arrays, **shared)]
    if products and not _take_over_blas():
        return [fn(*arrays, **shared)]
    return _run_blocks(fn, arrays, parts, shared)


def _run_blocks(fn: Callable, arrays, parts: int, shared: dict) -> list:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="minillm-rows")
    rows = arrays[0].shape[0]
    bounds = [rows * i // parts for i in range(parts + 1)]
    chunks = [[a[lo:hi] for a in arrays] for lo, hi in zip(bounds[:-1], bounds[1:])]
    futures = [_pool.submit(_run_in_worker, fn, chunk, shared) for chunk in chunks[1:]]
    try:
        first = fn(*chunks[0], **shared)
    finally:
        rest = [f.result() for f in futures]  # every block finishes before the arrays are read
    return [first, *rest]
