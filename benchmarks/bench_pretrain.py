"""Pretraining step speed: minillm against a PyTorch twin of the same GPT, in one process.

One training step = forward, cross-entropy loss, backward, gradient clipping, AdamW. Both
implementations run the same config on the same random batches in float32 with 2 threads;
they alternate, and the best of several repeats is reported, because shared machines are
noisy. Also prints the peak resident memory and checks it does not grow step to step.

    python benchmarks/bench_pretrain.py                 # both configs
    python benchmarks/bench_pretrain.py --config char   # one of them
    python benchmarks/bench_pretrain.py --profile char  # cProfile of minillm's step
    python benchmarks/bench_pretrain.py --device cuda --config bpe --config gpt2-small

On `--device cuda` minillm runs on CuPy and the twin on PyTorch's CUDA backend (eager, float32,
TF32 off on both sides), and the report adds achieved TFLOP/s (≈ 6·N·D + attention) and peak
device memory. PyTorch (torch==2.13.0, CPU build) is needed only for the comparison.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy

import minillm
from minillm import functional as F
from minillm import optim
from minillm.model import GPT, GPTConfig

CONFIGS = {
    # the shakespeare-char preset: 4 layers, 4 heads, 128 channels, block 64, batch 12
    "char": (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12),
    # a BPE config: 512-token vocabulary, 4 layers, 4 heads, 256 channels, block 128, batch 16
    "bpe": (GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=256), 16),
    # GPT-2 small's shape: 12 layers, 12 heads, 768 channels, block 1024, GPT-2's BPE vocabulary
    "gpt2-small": (GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 8),
}
DEVICE = "cpu"


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
    best_ours, best_theirs, rss = float("inf"), float("inf"), []
    for _ in range(repeats):
        best_ours = min(best_ours, time_steps(ours, data, steps))
        rss.append(peak_rss_mb())
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
    memory = {k: round(v) for k, v in result.items() if k.endswith("_mb")}
    print(line + f"  memory {memory} (RSS after each repeat: {', '.join(f'{r:.0f}' for r in rss)})")
    return result


def profile(name: str) -> None:
    import cProfile
    import pstats
    cfg, batch = CONFIGS[name]
    data, step = batches(cfg, batch), MinillmStep(cfg)
    time_steps(step, data, 2)
    profiler = cProfile.Profile()
    profiler.enable()
    time_steps(step, data, 10)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile", choices=sorted(CONFIGS))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    minillm.use_device(args.device)
    if args.profile:
        return profile(args.profile)
    import platform
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python {sys.version.split()[0]} numpy {numpy.__version__}")
    for name in args.config or ["char", "bpe"]:
        bench(name, args.repeats, args.steps)


if __name__ == "__main__":
    main()
