"""Benchmark: single ops of a CPU training step, timed alone (warm arrays, best of 7 repeats).

Run:  OPENBLAS_NUM_THREADS=2 python benchmarks/bench_ops.py
      OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 python benchmarks/bench_ops.py   (OpenBLAS's own
      kernels on a Zen 4 CPU, where `minillm.fast.enable()` would otherwise pick the AVX2 ones)

Prints, for the op-level figures of benchmarks/README.md:
- one float32 product (1,024 × 256) @ (256 × 1,024) on one core, in GFLOP/s, and the kernels
  OpenBLAS runs (they decide it: `minillm/fast/blas_kernels.py`);
- the layers' products of one `bpe` step (forward, input gradient, weight gradient, for the
  four layer shapes and the head), the speed wing's `layer_product` beside PyTorch's where installed;
- layer norm and GELU, forward and backward, at several sizes, split over the cores by
  `cpu_threads.parallel_rows` and on one thread: where a split starts to pay;
- what a hand-off to a thread costs (`parallel_rows` of a function that does nothing), GELU's
  forward and backward on one thread's block of the `bpe` MLP, (1,024 × 1,024), and gradient
  clipping and AdamW over a flat buffer the size of the `bpe` model (3.3M parameters).
"""
from __future__ import annotations


import minillm.fast

minillm.fast.enable()  # first: it picks OpenBLAS's kernels before NumPy loads them (fast/blas_kernels.py)

import numpy  # noqa: E402
import minillm  # noqa: E402
from minillm.fast import blas_kernels, cpu_threads, fused
from minillm.engine import optim
from minillm.model.nn import Parameter
from minillm.fast.fused import layer_product
from timing import best_ms  # benchmarks/timing.py

BPE_ROWS = 2048  # batch 16 × block 128
BPE_LAYERS = ((256, 768), (256, 256), (256, 1024), (1024, 256), (256, 512))  # (in, out); the last is the head
SPLIT_SHAPES = ((1024, 128), (1536, 128), (2048, 128), (2048, 256))


def one_core_product(rng) -> None:
    a = rng.standard_normal((1024, 256), dtype=numpy.float32)
    b = rng.standard_normal((256, 1024), dtype=numpy.float32)
    cpu_threads._take_over_blas()  # NumPy's OpenBLAS on one thread, as in a training step
    ms = best_ms(lambda: a @ b, calls=20)
    print(f"one core, (1,024 × 256) @ (256 × 1,024): {ms:.3f} ms, {2 * 1024 * 256 * 1024 / ms / 1e6:.1f} GFLOP/s "
          f"(OpenBLAS kernels {blas_kernels.loaded_core()})")


def step_products(rng) -> None:
    try:
        import torch
        torch.set_num_threads(2)
    except ImportError:
        torch = None
    total_ours = total_torch = 0.0
    for fan_in, fan_out in BPE_LAYERS:
        x = rng.standard_normal((BPE_ROWS, fan_in), dtype=numpy.float32)
        w = rng.standard_normal((fan_in, fan_out), dtype=numpy.float32)
        g = rng.standard_normal((BPE_ROWS, fan_out), dtype=numpy.float32)
        ours = [best_ms(lambda: layer_product(x, w)), best_ms(lambda: layer_product(g, w.T)),
                best_ms(lambda: layer_product(x.T, g))]
        line = f"  ({fan_in} → {fan_out}) forward, dx, dW: minillm " + " ".join(f"{t:.2f}" for t in ours)
        total_ours += sum(ours)
        if torch is not None:
            tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
            theirs = [best_ms(lambda: tx @ tw), best_ms(lambda: tg @ tw.T), best_ms(lambda: tx.T @ tg)]
            line += "   PyTorch " + " ".join(f"{t:.2f}" for t in theirs)
            total_torch += sum(theirs)
        print(line + " ms")
    print(f"  all five shapes: minillm {total_ours:.2f} ms" + (f", PyTorch {total_torch:.2f} ms" if torch else ""))


def layer_norm_and_gelu(rng) -> None:
    for rows, cols in SPLIT_SHAPES:
        x = rng.standard_normal((rows, cols), dtype=numpy.float32)
        g = rng.standard_normal((rows, cols), dtype=numpy.float32)
        w = rng.standard_normal(cols, dtype=numpy.float32)

        def layer_norm():
            op = fused.LayerNorm()
            op.needs_grad = (True, True, True, False)
            op.forward(x, w, w)
            op.backward(g)

        def gelu():
            op = fused.Gelu()
            op.needs_grad = (True,)
            op.forward(x)
            op.backward(g)

        cpu_threads._take_over_blas()
        times = []
        for min_size in (1, 1 << 40):  # every array split; no array split
            with cpu_threads.threads(2, min_size=min_size):
                times += [best_ms(layer_norm, calls=50), best_ms(gelu, calls=50)]
        print(f"  ({rows:,} × {cols}) = {rows * cols:,} elements: layer norm split {times[0]:.3f}, one thread "
              f"{times[2]:.3f} ms; GELU split {times[1]:.3f}, one thread {times[3]:.3f} ms (forward + backward)")


def small_pieces(rng) -> None:
    rows = numpy.ones((2048, 256), dtype=numpy.float32)
    with cpu_threads.threads(2, min_size=1):
        handoff = best_ms(lambda: cpu_threads.parallel_rows(lambda block: None, rows), calls=200)
    print(f"a hand-off to a thread and back: {handoff * 1e3:.0f} µs")
    x = rng.standard_normal((1024, 1024), dtype=numpy.float32)
    y, t, dx = numpy.empty_like(x), numpy.empty_like(x), numpy.empty_like(x)
    forward = best_ms(lambda: fused._gelu_rows(x, y, t))
    backward = best_ms(lambda: fused._gelu_backward_rows(x, x, t, dx))
    print(f"GELU on one block of (1,024 × 1,024), one thread: forward {forward:.2f} ms, backward {backward:.2f} ms")
    params = [Parameter(rng.standard_normal(3_323_392, dtype=numpy.float32))]
    opt = optim.AdamW(params, lr=1e-3, weight_decay=0.1)
    params[0].grad = params[0].grad_buffer  # AdamW's flat gradient, where backward leaves it
    params[0].grad[...] = rng.standard_normal(3_323_392, dtype=numpy.float32)
    clip = best_ms(lambda: optim.clip_grad_norm(params, 1e9))
    step = best_ms(opt.step)
    print(f"3.3M parameters in AdamW's flat buffer: gradient clipping {clip:.2f} ms, AdamW step {step:.2f} ms")


def main() -> None:
    rng = numpy.random.default_rng(0)
    small_pieces(rng)
    one_core_product(rng)
    print(f"the layers' products of one bpe step ({BPE_ROWS} rows), ms:")
    step_products(rng)
    print("layer norm and GELU, split over the cores or on one thread:")
    layer_norm_and_gelu(rng)


if __name__ == "__main__":
    main()
