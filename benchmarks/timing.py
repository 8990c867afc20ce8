"""The benchmarks' timing rule: the best mean time of a run of calls, over several runs.

The best run is the fair figure on a shared machine: other processes can only slow a run down.
"""
from __future__ import annotations

import time


def best_ms(fn, calls: int = 10, repeats: int = 7, warmup: int = 1) -> float:
    """Call `fn` `warmup` times, then time `repeats` runs of `calls` calls: the best mean, in ms."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3
