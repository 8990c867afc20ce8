"""Plots: PNG loss curves written next to checkpoints from a run's JSONL log, and the lessons'
figures of the loss mask and of next-token distributions, drawn on axes the caller owns (host-only)."""
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


# ----- figures the lessons draw on their own axes (no pyplot here: the notebook owns the figure) -----

def plot_loss_mask(ax, rows: list[tuple[list[str], list[int]]], labels: list[str] | None = None,
                   title: str | None = None) -> None:
    """The loss mask over encoded tokens: green cells are scored, red cells are context.

    Each row is (token pieces, mask), drawn as one line of cells with the piece written in it:
    one row for a single-turn example (its mask values under the cells), or one row per turn
    of a conversation (`explore.turn_rows`), labelled by `labels`, so the turns read top to bottom.
    """
    import numpy as np

    grid = np.full((len(rows), max(len(p) for p, _ in rows)), np.nan)  # (rows, longest); NaN stays blank
    for r, (pieces, mask) in enumerate(rows):
        grid[r, :len(mask)] = mask
        for t, piece in enumerate(pieces):
            ax.text(t, r, piece.replace("<|", "<|\n"), ha="center", va="center", fontsize=7)
    ax.imshow(grid, cmap="RdYlGn", vmin=-0.3, vmax=1.3, aspect="auto")
    if len(rows) == 1:
        ax.set_xticks(range(len(rows[0][1])), [str(m) for m in rows[0][1]])
    else:
        ax.set_xticks([])
    ax.set_yticks(range(len(rows)), labels or [""] * len(rows))
    if title:
        ax.set_title(title)


def plot_next_token_distributions(axes, distributions: dict) -> None:
    """One horizontal bar chart per model of its top next tokens (`explore.next_token_distributions`).

    The most probable token is on top and red; every axis runs from probability 0 to 1, so the
    panels compare at a glance.
    """
    for ax, (name, tokens) in zip(axes, distributions.items()):
        labels = [repr(t.text) for t in tokens][::-1]
        probs = [t.prob for t in tokens][::-1]
        ax.barh(range(len(tokens)), probs, color=["tab:blue"] * (len(tokens) - 1) + ["tab:red"])
        ax.set_yticks(range(len(tokens)), labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("P(next token)")
        ax.set_title(f"{name}: top {len(tokens)}, sum {sum(probs):.2f}")


PROJECTOR_STYLE = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.framealpha": 0.9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
}


def use_projector_style() -> dict:
    """The lessons' one figure style, readable from the back of a room: 7x4 inches at 100 dpi,
    large labels, a light grid. Every lesson calls it once before its first figure."""
    import matplotlib

    matplotlib.rcParams.update(PROJECTOR_STYLE)
    return dict(PROJECTOR_STYLE)
