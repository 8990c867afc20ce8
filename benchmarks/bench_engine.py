"""Benchmark: the autograd engine's time per training step, beside the same work in PyTorch.

Run:  python benchmarks/bench_engine.py                  (add --help for the options)
      python benchmarks/bench_engine.py --profile chain  (cProfile of one case instead)

Two cases, each timed as the best of --repeats runs of --steps steps, after --warmup steps:

  mlp    a 2-layer MLP, x (B, 256) -> Linear -> GELU -> Linear -> (B, 256), MSE loss, float32,
         B = 64: forward + backward, then forward + backward + AdamW step. Dominated by the
         six matrix products (BLAS), so it measures how little the engine adds around them.
  chain  10,000 elementwise ops in a row (×0.5, +0.1, tanh, repeated) on a (16,) tensor, then
         sum and backward. The arrays are tiny, so this measures the engine's own overhead per
         op: building the graph, the topological sort, and the Python of each backward.

NumPy's BLAS threads are set before the run by the usual variables, for example
OPENBLAS_NUM_THREADS=2 to match the torch twin; the script prints what it finds. On a busy
machine, timings with several BLAS threads vary a lot: the best of several repeats helps.

Where torch is importable (it is not a minillm dependency: `pip install torch`), the same
cases run in PyTorch on the CPU with torch.set_num_threads(--torch-threads) and the ratio
minillm / torch is printed; the MLP starts from the same weights, and its first loss is
compared as a check that both sides compute the same thing. CPU only: minillm runs on NumPy.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats

import minillm.fast

minillm.fast.enable()  # first: it picks OpenBLAS's kernels before NumPy loads them (fast/blas_kernels.py)

import numpy  # noqa: E402
import minillm  # noqa: E402
from minillm import Tensor
from minillm.fast import blas_kernels
from minillm.model import functional as F
from minillm.model.nn import Linear, Module
from minillm.engine.optim import AdamW
from timing import best_ms  # benchmarks/timing.py


# ----- minillm -------------------------------------------------------------------------------

class MLP(Module):
    def __init__(self, sizes, rng):
        self.fc1 = Linear(sizes[0], sizes[1], rng=rng)
        self.fc2 = Linear(sizes[1], sizes[2], rng=rng)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # (B, in) -> (B, hidden) -> (B, out)


def mlp_data(batch: int, sizes, seed: int = 0):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(numpy.float32)       # (B, in)
    target = rng.standard_normal((batch, sizes[2])).astype(numpy.float32)  # (B, out)
    return x, target


def minillm_mlp_steps(batch: int, sizes):
    """(forward+backward step, forward+backward+AdamW step, first loss, the model)."""
    model = MLP(sizes, rng=minillm.make_rng(0))
    x_np, target_np = mlp_data(batch, sizes)
    x, target = Tensor(x_np), Tensor(target_np)
    optimizer = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def loss_fn():
        return ((model(x) - target) ** 2).mean()

    def fwd_bwd():
        optimizer.zero_grad()
        loss_fn().backward()

    def train_step():
        fwd_bwd()
        optimizer.step()

    return fwd_bwd, train_step, loss_fn().item(), model


def chain_ops(y, n_ops: int):
    """n_ops elementwise ops in a row: ×0.5, +0.1, tanh, ×0.5, ... (works on either library)."""
    for i in range(n_ops):
        kind = i % 3
        y = y * 0.5 if kind == 0 else (y + 0.1 if kind == 1 else y.tanh())
    return y


def minillm_chain_step(n_ops: int, width: int):
    x = Tensor(numpy.linspace(-1, 1, width, dtype=numpy.float32), requires_grad=True)

    def step():
        x.grad = None
        chain_ops(x, n_ops).sum().backward()

    return step


# ----- torch (optional) ----------------------------------------------------------------------

def torch_cases(args, model: MLP):
    """The same two cases in PyTorch, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(args.torch_threads)
    sizes = args.sizes
    fc1, fc2 = torch.nn.Linear(sizes[0], sizes[1]), torch.nn.Linear(sizes[1], sizes[2])
    with torch.no_grad():  # same weights as minillm; torch stores W as (out, in), minillm as (in, out)
        for layer, ours in ((fc1, model.fc1), (fc2, model.fc2)):
            layer.weight.copy_(torch.from_numpy(minillm.to_numpy(ours.weight.data).T.copy()))
            layer.bias.copy_(torch.from_numpy(minillm.to_numpy(ours.bias.data)))
    net = torch.nn.Sequential(fc1, torch.nn.GELU(approximate="tanh"), fc2)
    x_np, target_np = mlp_data(args.batch, sizes)
    x, target = torch.from_numpy(x_np), torch.from_numpy(target_np)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)

    def loss_fn():
        return ((net(x) - target) ** 2).mean()

    def fwd_bwd():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()

    def train_step():
        fwd_bwd()
        optimizer.step()

    chain_x = torch.linspace(-1, 1, args.chain_width, dtype=torch.float32, requires_grad=True)

    def chain_step():
        chain_x.grad = None
        chain_ops(chain_x, args.chain_ops).sum().backward()

    with torch.no_grad():
        first_loss = loss_fn().item()
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "first_loss": first_loss,
            "mlp fwd+bwd": fwd_bwd, "mlp fwd+bwd+adamw": train_step, "chain fwd+bwd": chain_step}


# ----- machine report --------------------------------------------------------------------------

def blas_info() -> str:
    """NumPy's BLAS library and how many threads it uses (threadpoolctl if installed, else env vars)."""
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        name = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info
        threads = ", ".join(f"{p['internal_api']}: {p['num_threads']} threads" for p in threadpool_info())
    except ImportError:
        env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
        threads = (f"env {env}" if env else "no thread env vars set: BLAS picks its default (usually "
                   "one per core)") + "; pip install threadpoolctl to see the live count"
    return f"{name} ({threads})"


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # A load above the core count means other processes share the CPU: timings are inflated.
    return (f"{platform.system()} {platform.machine()}, processor {cpu!r}, os.cpu_count() = "
            f"{os.cpu_count()}, load average (1 min) {load:.2f}; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, OpenBLAS kernels {blas_kernels.loaded_core()}")


# ----- main ------------------------------------------------------------------------------------

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="MLP batch size B")
    p.add_argument("--sizes", type=int, nargs=3, default=[256, 512, 256], metavar=("IN", "HIDDEN", "OUT"))
    p.add_argument("--chain-ops", type=int, default=10_000, help="ops in the chain")
    p.add_argument("--chain-width", type=int, default=16, help="elements of the chain's tensor")
    p.add_argument("--steps", type=int, default=20, help="MLP steps per timed run (the chain runs 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the best is reported")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads for the twin")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--profile", choices=["mlp", "chain"], help="print a cProfile of one minillm case and exit")
    return p.parse_args()


def profile(step, n: int) -> None:
    step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        step()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    args = parse_args()
    minillm.use_device("cpu")
    minillm.manual_seed(0)
    B, (n_in, n_hidden, n_out) = args.batch, args.sizes
    fwd_bwd, train_step, first_loss, model = minillm_mlp_steps(B, args.sizes)
    chain_step = minillm_chain_step(args.chain_ops, args.chain_width)
    if args.profile:
        profile(train_step if args.profile == "mlp" else chain_step, args.steps if args.profile == "mlp" else 3)
        return

    print(f"machine: {machine_info()}")
    print(f"numpy BLAS: {blas_info()}")
    cases = {  # name -> (minillm step, steps per timed run)
        "mlp fwd+bwd": (fwd_bwd, args.steps),
        "mlp fwd+bwd+adamw": (train_step, args.steps),
        "chain fwd+bwd": (chain_step, 1),
    }
    twin = None if args.no_torch else torch_cases(args, model)
    if twin is None:
        print("torch: " + ("skipped (--no-torch)" if args.no_torch else "not installed, comparison skipped"))
    else:
        agree = abs(twin["first_loss"] - first_loss) <= 1e-4 * abs(first_loss)
        print(f"torch: {twin['version']}, {twin['threads']} threads; first MLP loss minillm "
              f"{first_loss:.6f}, torch {twin['first_loss']:.6f} ({'agree' if agree else 'DIFFER'})")
    print(f"mlp: B={B}, {n_in} -> {n_hidden} -> {n_out}, GELU, MSE, float32; "
          f"chain: {args.chain_ops:,} ops on ({args.chain_width},)")
    print(f"best of {args.repeats} runs after {args.warmup} warmup steps\n")
    print(f"{'case':<20} {'minillm ms/step':>16} {'torch ms/step':>14} {'minillm/torch':>14}")
    for name, (step, steps) in cases.items():
        ours = best_ms(step, steps, args.repeats, args.warmup)
        row = f"{name:<20} {ours:>16.3f}"
        if twin is not None:
            theirs = best_ms(twin[name], steps, args.repeats, args.warmup)
            row += f" {theirs:>14.3f} {ours / theirs:>13.2f}x"
        if name.startswith("chain"):
            row += f"   ({ours * 1e3 / args.chain_ops:.1f} µs per op, minillm)"
        print(row)


if __name__ == "__main__":
    main()
