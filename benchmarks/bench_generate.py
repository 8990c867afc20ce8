"""Benchmark: generation speed with the KV cache against full recompute (no cache).

Run:  python benchmarks/bench_generate.py [--device cpu|cuda] [--batch 1] [--repeats 3]

For each config, a randomly initialised GPT fills its whole context (a 1-token prompt, then
block_size - 1 greedy tokens) twice: with the KV cache (one position per step) and with the
twin that reruns the whole growing sequence every step. Prints new tokens per second (best
of --repeats) and the speed-up. Both paths produce the same tokens (checked).
Timings on a busy machine vary a lot; set OPENBLAS_NUM_THREADS to the free cores.
"""
from __future__ import annotations

import argparse
import platform
import time

import minillm.fast

minillm.fast.enable()  # the speed wing, as the `minillm` command runs; before NumPy loads

import minillm  # noqa: E402
from minillm.engine import backend  # noqa: E402
from minillm.model.sampling import generate  # noqa: E402
from minillm.model.gpt import GPT, GPTConfig  # noqa: E402

CONFIGS = {
    "small (shakespeare-char)": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    "medium": GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=256),
}


def tokens_per_second(model, batch: int, use_cache: bool, repeats: int) -> tuple[float, list]:
    """Best-of-`repeats` new tokens per second (all rows counted) and the generated ids."""
    new = model.config.block_size - 1
    prompts = [[i % model.config.vocab_size] for i in range(batch)]
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = generate(model, prompts, new, temperature=0, use_cache=use_cache)
        backend.to_numpy(backend.xp.zeros(1))  # wait for the GPU, if any
        best = min(best, time.perf_counter() - start)
    return batch * new / best, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=1, help="prompts generated at once")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    minillm.use_device(args.device)
    print(f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}; device {args.device}, batch {args.batch}, greedy, "
          f"best of {args.repeats}")
    print(f"{'config':<26}{'params':>10}{'new tok':>9}{'cache tok/s':>13}{'no-cache tok/s':>16}{'speed-up':>10}")
    for name, config in CONFIGS.items():
        minillm.manual_seed(0)
        model = GPT(config)
        generate(model, [[0]], 4, temperature=0)  # warm-up (allocations, CuPy kernels)
        cached, ids_cached = tokens_per_second(model, args.batch, True, args.repeats)
        full, ids_full = tokens_per_second(model, args.batch, False, args.repeats)
        assert ids_cached == ids_full, "the cache changed the generated tokens"
        print(f"{name:<26}{model.num_parameters():>10,}{config.block_size - 1:>9}"
              f"{cached:>13,.0f}{full:>16,.0f}{cached / full:>9.1f}x")


if __name__ == "__main__":
    main()
