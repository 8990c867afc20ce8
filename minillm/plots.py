"""Plots written next to checkpoints: PNG loss curves from a run's JSONL log (host-only)."""
from __future__ import annotations

import json


def plot_loss_curves(log_path: str, png_path: str, baseline: float | None = None,
                     title: str = "training") -> str:
    """Train loss (every logged step) and validation loss (every evaluation) against step.

    A horizontal line marks the baseline (e.g. the n-gram model's validation loss) if given.
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook's own plotting backend is left alone

    with open(log_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval" and "val_loss" in r]
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", ms=3)
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"baseline {baseline:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path
