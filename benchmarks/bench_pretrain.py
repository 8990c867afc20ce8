"""Pretraining step speed: minillm against a PyTorch twin of the same GPT, in one process.

One training step = forward, cross-entropy loss, backward, gradient clipping, AdamW. Both
implementations run the same config on the same random batches in float32 with 2 threads;
they alternate, and the best of several repeats is reported, because shared machines are
noisy. Also prints the peak resident memory and checks it does not grow step to step.

    python benchmarks/bench_pretrain.py                 # the char and bpe configs
    python benchmarks/bench_pretrain.py --config classroom --one-thread  # one config; and on 1 thread
    python benchmarks/bench_pretrain.py --profile classroom  # where one step's time goes, beside PyTorch's
    python benchmarks/bench_pretrain.py --device cuda --config bpe --config gpt2-small

On `--device cuda` minillm runs on CuPy and the twin on PyTorch's CUDA backend (eager, float32,
TF32 off on both sides), and the report adds achieved TFLOP/s (≈ 6·N·D + attention), peak
device memory, and from one profiled step on each side (CUPTI through torch.profiler, which
records CuPy's kernels too): kernels launched per step, the share of the step the GPU is
busy, the kernel time by kind, and minillm's kernels per generated token (batch 8, KV cache).
PyTorch (torch==2.13.0, CPU build) is needed only for the comparison.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import minillm.fast

minillm.fast.enable()  # first: it picks OpenBLAS's kernels before NumPy loads them (fast/blas_kernels.py)

import numpy  # noqa: E402
import minillm  # noqa: E402
from minillm.fast import blas_kernels, cpu_threads  # noqa: E402
from minillm.model import functional as F  # noqa: E402
from minillm.engine import optim  # noqa: E402
from minillm.model.gpt import GPT, GPTConfig  # noqa: E402

CONFIGS = {
    # the shakespeare-char preset: 4 layers, 4 heads, 128 channels, block 64, batch 12
    "char": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12),
    # a BPE config: 512-token vocabulary, 4 layers, 4 heads, 256 channels, block 128, batch 16
    "bpe": (GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=256), 16),
    # the classroom pipeline's pretraining: BPE-1024, 4 layers, 4 heads, 128 channels, block 128, batch 8
    "classroom": (GPTConfig(vocab_size=1024, block_size=128, n_layer=4, n_head=4, n_embd=128), 8),
    # GPT-2 small's shape: 12 layers, 12 heads, 768 channels, block 1024, GPT-2's BPE vocabulary
    "gpt2-small": (GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 8),
}
DEVICE = "cpu"
ONE_THREAD = False  # --one-thread: also time minillm with MINILLM_THREADS=1, alternating


def batches(cfg: GPTConfig, batch: int, count: int = 8):
    rng = numpy.random.default_rng(0)
    return [rng.integers(0, cfg.vocab_size, (batch, cfg.block_size + 1)) for _ in range(count)]


class MinillmStep:
    def __init__(self, cfg: GPTConfig):
        minillm.manual_seed(0)
        self.model = GPT(cfg)
        self.opt = optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.1)
        self.V = cfg.vocab_size

    def __call__(self, window) -> float:
        window = minillm.engine.backend.asarray(window)  # on the device, as the training loop's batches are
        x, y = window[:, :-1], window[:, 1:]
        logits = self.model(x)
        loss = F.cross_entropy(logits.reshape(-1, self.V), y.reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.item()


def torch_step_factory(cfg: GPTConfig):
    import torch
    from torch import nn
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as CuPy's
    device = torch.device(DEVICE)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg.n_embd
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, cfg.n_head, C // cfg.n_head).transpose(1, 2) for t in (q, k, v))
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
            return x + self.mlp_proj(nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.h = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(cfg.n_embd)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=device))
            for block in self.h:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.T

    model = TorchGPT().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

    def step(window) -> float:
        w = torch.from_numpy(window).to(device)
        logits = model(w[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def time_steps(step, data, steps: int) -> float:
    """Mean seconds per step over `steps` steps."""
    start = time.perf_counter()
    for i in range(steps):
        step(data[i % len(data)])
    return (time.perf_counter() - start) / steps


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_memory_mb() -> dict:
    """Peak device memory: CuPy's pool size (it keeps what it allocated) and PyTorch's peak reserved."""
    if DEVICE == "cpu":
        return {}
    import cupy
    out = {"minillm_pool_mb": cupy.get_default_memory_pool().total_bytes() / 2 ** 20}
    try:
        import torch
        out["torch_reserved_mb"] = torch.cuda.max_memory_reserved() / 2 ** 20
    except ImportError:
        pass
    return out


def synchronize() -> None:
    if DEVICE == "cuda":
        import cupy
        cupy.cuda.Device().synchronize()
        try:
            import torch
            torch.cuda.synchronize()
        except ImportError:
            pass


def kernel_kind(name: str) -> str:
    low = name.lower()
    if any(w in low for w in ("gemm", "cutlass", "xmma", "cublas", "sm90_", "sm80_")):
        return "matrix products"
    if any(w in low for w in ("flash", "fmha", "attention", "efficient")):
        return "fused attention"
    if name.startswith("minillm_") or any(w in name for w in (
            "layer_norm_", "causal_softmax", "softmax_backward", "cross_entropy_forward")):
        return "minillm's own kernels"
    if any(w in low for w in ("reduce", "cupy_sum", "cupy_max", "cupy_min", "cupy_argmax", "cupy_mean",
                              "norm", "softmax", "nll", "cupy_all", "cupy_any")):
        return "reductions"
    if any(w in low for w in ("copy", "cupy_concatenate", "cat", "scatter", "gather", "index", "take")):
        return "copies, gathers"
    return "element-wise"


def kernel_profile(run) -> dict:
    """Kernels launched by run() and their GPU time, recorded by CUPTI through torch.profiler
    (it records every kernel of the process, CuPy's too)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile as torch_profile
    synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        synchronize()
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA
               and not e.name.startswith(("Memcpy", "Memset"))]
    by_kind, by_name = {}, {}
    for e in kernels:
        us = e.time_range.elapsed_us()
        by_kind[kernel_kind(e.name)] = by_kind.get(kernel_kind(e.name), 0.0) + us / 1e3
        count, total = by_name.get(e.name[:60], (0, 0.0))
        by_name[e.name[:60]] = (count + 1, total + us / 1e3)
    top = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:12]
    return {"kernels": len(kernels), "busy_ms": sum(by_kind.values()), "by_kind": by_kind, "top": top}


def print_kernel_profile(label: str, prof: dict, step_ms: float) -> None:
    kinds = ", ".join(f"{k} {v:.1f}" for k, v in sorted(prof["by_kind"].items(), key=lambda kv: -kv[1]))
    print(f"  {label}: {prof['kernels']} kernels per step, GPU busy {prof['busy_ms']:.1f} of "
          f"{step_ms:.1f} ms ({100 * prof['busy_ms'] / step_ms:.0f}%); ms by kind: {kinds}")
    for name, (count, ms) in prof["top"]:
        print(f"      {ms:7.2f} ms {count:5d}x {name}")


def generation_kernels(model, tokens: int = 32, batch: int = 8) -> float:
    """minillm's kernels per generated token: a batch of prompts, KV cache, sampling."""
    from minillm.model.sampling import generate
    prompts = [[1 + (i + j) % 50 for j in range(16)] for i in range(batch)]
    model.eval()
    generate(model, prompts, 4, temperature=1.0, seed=0)  # warm up (compiles the kernels)
    prof = kernel_profile(lambda: generate(model, prompts, tokens, temperature=1.0, seed=0))
    model.train()
    return prof["kernels"] / tokens


def gpu_profile(name: str, ours, theirs, data, best_ours: float, best_theirs: float) -> dict:
    try:
        import torch  # noqa: F401
    except ImportError:
        return {}
    mine = kernel_profile(lambda: ours(data[0]))
    print_kernel_profile("minillm", mine, best_ours * 1e3)
    result = {"minillm_kernels": mine["kernels"], "minillm_busy": mine["busy_ms"] / (best_ours * 1e3)}
    if theirs:
        other = kernel_profile(lambda: theirs(data[0]))
        print_kernel_profile("torch  ", other, best_theirs * 1e3)
        result.update(torch_kernels=other["kernels"], torch_busy=other["busy_ms"] / (best_theirs * 1e3))
    if name != "gpt2-small":  # a 1024-token block: generation is not what this shape measures
        result["kernels_per_token"] = generation_kernels(ours.model)
        print(f"  minillm generation: {result['kernels_per_token']:.0f} kernels per generated token "
              f"(batch 8, KV cache, sampling)")
    return result


def bench(name: str, repeats: int, steps: int) -> dict:
    cfg, batch = CONFIGS[name]
    data = batches(cfg, batch)
    ours = MinillmStep(cfg)
    try:
        theirs = torch_step_factory(cfg)
    except ImportError:
        theirs = None
    for fn in filter(None, (ours, theirs)):  # warm up both
        time_steps(fn, data, 3)
    best_ours, best_theirs, best_single, rss = float("inf"), float("inf"), float("inf"), []
    one_thread = ONE_THREAD and DEVICE == "cpu"
    kernel_s = wall_s = 0.0  # system (kernel) CPU time and wall time of minillm's timed steps
    for _ in range(repeats):
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
        best_ours = min(best_ours, time_steps(ours, data, steps))
        kernel_s += resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
        wall_s += time.perf_counter() - start
        rss.append(peak_rss_mb())
        if one_thread:  # the same step with the element-wise work on the calling thread only
            with cpu_threads.threads(1):
                best_single = min(best_single, time_steps(ours, data, steps))
        if theirs:
            best_theirs = min(best_theirs, time_steps(theirs, data, steps))
    tokens = batch * cfg.block_size
    flops = ours.model.flops_per_token() * tokens  # per step
    result = {"config": name, "minillm_ms": best_ours * 1e3, "tokens_per_s": tokens / best_ours,
              "params": ours.model.num_parameters(), "peak_rss_mb": rss[-1], **device_memory_mb()}
    line = (f"{name:10s} params {result['params']:,}  minillm {best_ours * 1e3:7.1f} ms/step "
            f"({tokens / best_ours:,.0f} tok/s, {flops / best_ours / 1e12:.2f} TFLOP/s)")
    if theirs:
        result.update(torch_ms=best_theirs * 1e3, ratio=best_ours / best_theirs)
        line += (f"  torch {best_theirs * 1e3:7.1f} ms/step ({tokens / best_theirs:,.0f} tok/s, "
                 f"{flops / best_theirs / 1e12:.2f} TFLOP/s)  ratio {best_ours / best_theirs:.2f}x")
    if DEVICE == "cpu":  # page faults and thread wake-ups show here (minillm/fast/allocator.py says why)
        result.update(kernel_share=kernel_s / wall_s)
        line += f"  kernel time {kernel_s / wall_s:.2f} s per s"
    if one_thread:
        result.update(one_thread_ms=best_single * 1e3)
        line += f"  minillm on 1 thread {best_single * 1e3:7.1f} ms/step ({best_single / best_ours:.2f}x)"
    memory = {k: round(v) for k, v in result.items() if k.endswith("_mb")}
    print(line + f"  memory {memory} (RSS after each repeat: {', '.join(f'{r:.0f}' for r in rss)})")
    if DEVICE == "cuda":
        result.update(gpu_profile(name, ours, theirs, data, best_ours, best_theirs if theirs else 0.0))
    return result


def _op_categories() -> dict:
    """cProfile key (file, line, name) of every op's forward/backward -> the category it counts in."""
    from minillm.fast import fused, attention as fused_attention
    from minillm.engine import ops
    named = {fused_attention.CausalSelfAttention: "attention (batched products + softmax)", fused.LayerNorm: "layer norm",
             fused.Gelu: "GELU", fused.CrossEntropy: "cross entropy", fused.Embedding: "embedding",
             F.Softmax: "softmax", F.LogSoftmax: "softmax", fused.MatMul: "matrix products",
             fused.Linear: "matrix products"}
    by_module = {ops: "other element-wise ops"}
    keys = {}
    for module, default in by_module.items():
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, ops.Function) and cls is not ops.Function:
                for method in ("forward", "backward"):
                    code = getattr(cls, method).__code__
                    keys[(code.co_filename, code.co_firstlineno, code.co_name)] = default
    for cls, category in named.items():
        for method in ("forward", "backward"):
            code = getattr(cls, method).__code__
            keys[(code.co_filename, code.co_firstlineno, code.co_name)] = category
    for fn in (optim.AdamW.step, optim.clip_grad_norm, optim.Optimizer.zero_grad):
        code = fn.__code__
        keys[(code.co_filename, code.co_firstlineno, code.co_name)] = "optimizer (clip, zero_grad, AdamW)"
    return keys


def minillm_breakdown(name: str, steps: int) -> dict:
    """ms per step by category, from cProfile's cumulative time of each op's forward/backward;
    what is left of the step is the engine: graph building, topological sort, gradient
    accumulation, module calls, argument checks."""
    import cProfile
    import pstats
    cfg, batch = CONFIGS[name]
    data, step = batches(cfg, batch), MinillmStep(cfg)
    time_steps(step, data, 2)
    profiler = cProfile.Profile()
    profiler.enable()
    total = time_steps(step, data, steps) * 1e3
    profiler.disable()
    categories, table = _op_categories(), {}
    for key, (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():
        if key in categories:
            table[categories[key]] = table.get(categories[key], 0.0) + cumulative * 1e3 / steps
    table["engine (graph, sort, accumulate, modules, checks)"] = total - sum(table.values())
    return {"total": total, **table}


def torch_breakdown(name: str, steps: int) -> dict:
    """ms per step by category from torch.profiler's self CPU time of each aten op."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile
    cfg, batch = CONFIGS[name]
    data, step = batches(cfg, batch), torch_step_factory(cfg)
    time_steps(step, data, 2)
    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(data[i % len(data)])
    total = (time.perf_counter() - start) * 1e3 / steps  # includes the profiler's own cost
    rules = [("matrix products", ("mm", "bmm", "addmm", "matmul", "linear", "baddbmm")),
             ("attention (batched products + softmax)", ("attention", "flash", "sdpa")),
             ("layer norm", ("layer_norm",)), ("GELU", ("gelu",)),
             ("cross entropy", ("nll_loss", "log_softmax", "cross_entropy")),
             ("embedding", ("embedding",)),
             ("optimizer (clip, zero_grad, AdamW)", ("foreach", "adam", "norm", "clamp", "zero_"))]
    table = {}
    for event in prof.key_averages():
        op = event.key.replace("aten::", "")
        category = next((c for c, words in rules if any(w in op for w in words)), "other ops and framework")
        table[category] = table.get(category, 0.0) + event.self_cpu_time_total / 1e3 / steps
    del torch
    return {"total": total, **table}


def profile(name: str, steps: int = 5) -> None:
    """Print where one training step's time goes, minillm beside PyTorch, by category."""
    ours = minillm_breakdown(name, steps)
    try:
        theirs = torch_breakdown(name, steps)
    except ImportError:
        theirs = {}
    rows = [k for k in ours if k != "total"] + [k for k in theirs if k not in ours and k != "total"]
    print(f"one training step of {name!r}, ms per step (mean of {steps}; profilers add their own cost); "
          f"minillm threads={cpu_threads.get_threads()}, load {os.getloadavg()[0]:.2f}")
    print(f"| category | minillm | PyTorch |\n| --- | ---: | ---: |")
    for key in sorted(rows, key=lambda k: -ours.get(k, 0.0)):
        print(f"| {key} | {ours.get(key, 0.0):.1f} | {theirs.get(key, 0.0):.1f} |" if theirs
              else f"| {key} | {ours.get(key, 0.0):.1f} | |")
    print(f"| **whole step** | **{ours['total']:.1f}** | **{theirs.get('total', 0.0):.1f}** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", choices=sorted(CONFIGS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--one-thread", action="store_true",
                        help="also time minillm with its element-wise work on one thread (MINILLM_THREADS=1)")
    args = parser.parse_args()
    global DEVICE, ONE_THREAD
    DEVICE, ONE_THREAD = args.device, args.one_thread
    minillm.use_device(args.device)
    if args.profile:
        return profile(args.profile)
    import platform
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python {sys.version.split()[0]} numpy {numpy.__version__} "
          f"OpenBLAS kernels {blas_kernels.loaded_core()} minillm threads={cpu_threads.get_threads()} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} load {os.getloadavg()[0]:.2f}")
    for name in args.config or ["char", "bpe"]:
        bench(name, args.repeats, args.steps)


if __name__ == "__main__":
    main()
