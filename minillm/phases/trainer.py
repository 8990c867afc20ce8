"""The shared training loop every phase uses: a plain loop you can read top to bottom.

Lecture: each phase minimises its own loss by gradient descent; only the data and the loss
change. A phase hands the `Trainer` a model, a way to draw a training batch, a loss
function and an evaluation; the Trainer does the rest: AdamW with warmup + cosine decay,
gradient accumulation and clipping, periodic evaluation, a JSONL log, a progress display,
atomic checkpoints with exact resume, a loss-curve PNG, and a clean stop on NaN.
Left out: callbacks, distributed training, mixed precision.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy

from minillm.io import checks
from minillm.io.checks import setting
from minillm.engine import backend, optim
from minillm.io import checkpoint
from minillm.errors import UserError
from minillm.io.plots import plot_loss_curves
from minillm.engine.tensor import no_grad
from minillm.phases.progress import Progress


@dataclass
class TrainConfig:
    """The settings of a supervised phase (pretraining, SFT, the reward model; DPO adds its own).

    Each numeric field has its rule (minillm/io/checks.py): `minillm pretrain`, `sft`, `reward`
    and `dpo` make one flag per field from it (--max-steps, --lr, ...), with the help below."""

    max_steps: int = setting(1000, "optimizer steps in the whole run", checks.POSITIVE_INT)
    batch_size: int = setting(12, "sequences per micro-batch", checks.POSITIVE_INT)
    grad_accum: int = setting(1, "micro-batches per optimizer step", checks.POSITIVE_INT)
    lr: float = setting(1e-3, "peak learning rate", checks.POSITIVE)
    min_lr: float = setting(1e-4, "floor of the cosine decay", checks.NONNEGATIVE)
    warmup_steps: int = setting(100, "linear warmup from 0 to lr, in steps", checks.NONNEGATIVE_INT)
    weight_decay: float = setting(0.1, "AdamW decay of matrices (not of biases or norms)", checks.NONNEGATIVE)
    beta1: float = setting(0.9, "AdamW's β1, the decay of the gradient's running mean", checks.BETA)
    beta2: float = setting(0.99, "AdamW's β2, the decay of the squared gradient's running mean", checks.BETA)
    grad_clip: float = setting(1.0, "max global gradient norm (0 disables)", checks.NONNEGATIVE)
    eval_interval: int = setting(250, "evaluate every this many steps (and at the end)", checks.POSITIVE_INT)
    log_interval: int = setting(10, "write a train record every this many steps", checks.POSITIVE_INT)
    checkpoint_interval: int = setting(500, "save every this many steps (and at the end)", checks.POSITIVE_INT)
    seed: int = setting(1337, "seeds the global generator: batches, dropout", checks.SEED)

    def __post_init__(self):
        """Refuse settings no run can use, naming the field and its command-line flag."""
        checks.check_fields(self, checks.rules_of(type(self)))


TRAIN_RULES = checks.rules_of(TrainConfig)

# The intervals a short run fits inside itself, each with the share of the run it may take.
FITTED = (("warmup_steps", 10), ("eval_interval", 1), ("checkpoint_interval", 1), ("log_interval", 1))


def fit_schedule(cfg: TrainConfig, default_steps: int, examples: int, epochs: float | None,
                 overrides: dict) -> tuple[TrainConfig, dict]:
    """The run's TrainConfig once `--epochs` and a short run are taken into account, and what
    the short run changed: {field: (preset's value, fitted value)}.

    --epochs E sets max_steps = ceil(E · examples / (batch_size · grad_accum)). A run shorter
    than the preset's (`default_steps`) gets warmup (a tenth), evaluation, checkpoints and logs
    that fit inside it, unless the user set those explicitly (`overrides`); the phase prints
    the changes (`short_run_note`).
    Example: 40 steps of a preset with warmup 100 and eval_interval 250 -> warmup 4, eval_interval 40.
    """
    if epochs is not None:
        cfg = replace(cfg, max_steps=max(1, math.ceil(epochs * examples / (cfg.batch_size * cfg.grad_accum))))
    if cfg.max_steps >= default_steps:
        return cfg, {}
    fit = {k: min(getattr(cfg, k), max(1, cfg.max_steps // d)) for k, d in FITTED if k not in overrides}
    changes = {k: (getattr(cfg, k), v) for k, v in fit.items() if v != getattr(cfg, k)}
    return replace(cfg, **fit), changes


def short_run_note(changes: dict) -> str | None:
    """One line naming what a short run changed, or None when it changed nothing.

    Example: "short run: warmup_steps 100 -> 4, eval_interval 250 -> 40 (set them to keep yours)".
    """
    if not changes:
        return None
    return ("short run: " + ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
            + " (set them to keep yours)")


class TrainingDiverged(UserError, RuntimeError):
    """The loss, a gradient or a parameter became NaN or infinite; the last finite checkpoint is kept."""


def check_finite(model, where: str) -> None:
    """Refuse to go on (or to save) when a parameter holds NaN or infinity."""
    xp = backend.xp
    for name, p in model.named_parameters():
        if not bool(xp.isfinite(p.data).all()):
            raise TrainingDiverged(f"the parameter {name} holds NaN or infinite values {where}")


def last_checkpoint_note(checkpoint_dir: str) -> str:
    """Where the last (finite) checkpoint is, for a run that stopped: "step 20 is in runs/x/checkpoint"."""
    try:
        step = checkpoint.read_step(checkpoint_dir)
    except UserError:
        return "no checkpoint was saved"
    return f"the last checkpoint (finite, step {step}) is kept in {checkpoint_dir}"


def quiet_overflow():
    """NumPy's overflow warnings off inside a training loop: the loop itself stops on the first
    non-finite loss, gradient norm or parameter, in one sentence that says where the last checkpoint is."""
    return numpy.errstate(over="ignore", invalid="ignore", divide="ignore")


class StopSignals:
    """Ctrl-C (SIGINT) or SIGTERM during a training loop: finish the step, save, then stop.

    The loop asks `received` after each step; a second signal stops at once. Only the main
    thread can own signal handlers: elsewhere (a notebook's worker thread) nothing changes.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received:
            raise KeyboardInterrupt(f"{self.received} and {signal.Signals(signum).name}: stopped at once")
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def stop(self, step: int, checkpoint_dir: str) -> None:
        """After the step's checkpoint is saved: stop with a sentence that says where it is."""
        raise KeyboardInterrupt(f"{self.received}: saved step {step} in {checkpoint_dir}; "
                                "continue the run with --resume")


@dataclass
class Trainer:
    """Runs the loop for one phase.

    Args:
        model: the Module to train.
        config: a TrainConfig.
        out_dir: the run directory: log.jsonl, loss.png, and the checkpoint in out_dir/checkpoint
            (which `checkpoint.load(out_dir)` finds).
        train_batch: rng -> one micro-batch (any object the loss understands).
        loss_fn: (model, batch) -> (loss Tensor, number of tokens the loss counted), or with a third
            item, a dict of floats about the step (DPO's entropy) logged beside the loss (their
            mean over micro-batches).
        evaluate: model -> {"val_loss": ..., other metrics}; called in eval mode, no grad.
        tokenizer, meta: saved with every checkpoint.
    """

    model: object
    config: TrainConfig
    out_dir: str
    train_batch: Callable
    loss_fn: Callable
    evaluate: Callable | None = None
    tokenizer: object = None
    meta: dict = field(default_factory=dict)
    quiet: bool = False

    def __post_init__(self):
        if self.config.warmup_steps > self.config.max_steps:
            raise UserError(f"warmup_steps (--warmup-steps) must be at most max_steps (--max-steps), got "
                            f"{self.config.warmup_steps} > {self.config.max_steps}")
        self.optimizer = optim.AdamW(self._param_groups(), lr=self.config.lr,
                                     betas=(self.config.beta1, self.config.beta2),
                                     weight_decay=self.config.weight_decay)
        self.schedule = optim.WarmupCosineSchedule(self.config.lr, self.config.warmup_steps,
                                                   self.config.max_steps, self.config.min_lr)
        self.log_path = os.path.join(self.out_dir, "log.jsonl")
        self.checkpoint_dir = os.path.join(self.out_dir, checkpoint.RUN_SUBDIRECTORY)
        self.step, self.tokens_seen, self.last_eval = 0, 0, {}

    def _param_groups(self) -> list[dict]:
        """Decay matrices (weights, embeddings); leave biases and norm gains undecayed."""
        params = self.model.parameters()
        return [{"params": [p for p in params if p.ndim >= 2]},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]

    # ----- the loop -------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Train to config.max_steps (from the saved step when resuming); return the last metrics."""
        if not resume and os.path.exists(self.checkpoint_dir):  # the phases' RunDir cleared it on --overwrite
            raise UserError(f"{self.out_dir} already holds a checkpoint: pass resume=True to continue that run, "
                            "or give the Trainer a new directory")
        os.makedirs(self.out_dir, exist_ok=True)
        backend.manual_seed(self.config.seed)
        if resume and checkpoint.can_resume(self.checkpoint_dir):
            self._resume()
        else:
            if resume and not self.quiet:
                print(f"nothing was saved in {self.out_dir} yet: starting at step 0", file=sys.stderr)
            if os.path.exists(self.log_path):
                os.remove(self.log_path)  # a fresh run starts a fresh log
        progress = Progress(self.config.max_steps, self.step, quiet=self.quiet)
        with StopSignals() as signals, quiet_overflow():
            self._loop(progress, signals)
        progress.close()
        self._plot()
        return {"step": self.step, "tokens_seen": self.tokens_seen, **self.last_eval}

    def _loop(self, progress, signals: StopSignals) -> None:
        start_time, start_tokens = time.perf_counter(), self.tokens_seen
        while self.step < self.config.max_steps:
            try:
                loss, grad_norm, lr, tokens, stats = self._train_step()
            except TrainingDiverged as err:
                raise TrainingDiverged(f"{err} at step {self.step + 1}; stopped: {last_checkpoint_note(self.checkpoint_dir)}. "
                                       "Lower the learning rate or check the data") from None
            self.step += 1
            self.tokens_seen += tokens
            elapsed = time.perf_counter() - start_time
            rate = (self.tokens_seen - start_tokens) / max(elapsed, 1e-9)
            progress.update(self.step, loss=loss, tok_s=rate)
            if self.step % self.config.log_interval == 0 or self.step == self.config.max_steps:
                self._log(kind="train", step=self.step, loss=loss, lr=lr, grad_norm=grad_norm,
                          tokens_seen=self.tokens_seen, tokens_per_s=rate, elapsed=elapsed, **stats)
            if self.step % self.config.eval_interval == 0 or self.step == self.config.max_steps:
                self._evaluate(progress)
            if self.step % self.config.checkpoint_interval == 0 or self.step == self.config.max_steps:
                self.save()
            elif signals.received:
                self.save()
            if signals.received:
                signals.stop(self.step, self.checkpoint_dir)

    def _train_step(self):
        """One optimizer step: accumulate gradients over micro-batches, clip, update."""
        self.model.train()
        lr = self.schedule(self.step)
        self.optimizer.set_lr(lr)
        self.optimizer.zero_grad()
        total, tokens, stats = 0.0, 0, {}
        for _ in range(self.config.grad_accum):
            loss, n, *more = self.loss_fn(self.model, self.train_batch(backend.get_rng()))
            (loss * (1.0 / self.config.grad_accum)).backward()
            total += loss.item() / self.config.grad_accum  # the one host sync per micro-batch: a logged scalar
            tokens += int(n)
            for key, value in (more[0] if more else {}).items():
                stats[key] = stats.get(key, 0.0) + float(value) / self.config.grad_accum
        if not math.isfinite(total):
            raise TrainingDiverged(f"the training loss became {total}")
        grad_norm = clip_and_step(self.model.parameters(), self.optimizer, self.config.grad_clip)
        return total, grad_norm, lr, tokens, stats

    def _evaluate(self, progress) -> None:
        if self.evaluate is None:
            return
        self.model.eval()
        with no_grad():
            metrics = {k: float(v) for k, v in self.evaluate(self.model).items()}
        self.model.train()
        bad = {k: v for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v)}
        if bad:
            raise TrainingDiverged(f"{', '.join(bad)} became {', '.join(map(str, bad.values()))} at step "
                                   f"{self.step}; stopped: "
                                   f"{last_checkpoint_note(self.checkpoint_dir)}. Lower the learning rate")
        self.last_eval = metrics
        self._log(kind="eval", step=self.step, tokens_seen=self.tokens_seen, **metrics)
        progress.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    # ----- logs, checkpoints, plots --------------------------------------------------
    def _log(self, **record) -> None:
        append_log(self.log_path, record)

    def save(self) -> None:
        """Save the checkpoint; a model holding NaN or infinity is never saved over a finite one."""
        try:
            check_finite(self.model, f"after step {self.step}")
        except TrainingDiverged as err:
            raise TrainingDiverged(f"{err}; not saved: {last_checkpoint_note(self.checkpoint_dir)}. "
                                   "Lower the learning rate") from None
        meta = {**self.meta, "train_config": asdict(self.config), "tokens_seen": self.tokens_seen,
                "last_eval": self.last_eval}
        checkpoint.save(self.model, self.checkpoint_dir, tokenizer=self.tokenizer, optimizer=self.optimizer,
                        step=self.step, meta=meta)

    def _resume(self) -> None:
        """Continue exactly where the checkpoint left off: weights, optimizer, RNG, counters."""
        saved = checkpoint.load(self.checkpoint_dir, optimizer=self.optimizer)
        self.model = saved.model  # the optimizer now updates the loaded model's parameters
        self.step = saved.step
        self.tokens_seen = int(saved.meta.get("tokens_seen", 0))
        self.last_eval = saved.meta.get("last_eval", {})
        truncate_log(self.log_path, self.step)
        if not self.quiet:
            print(f"resuming from step {self.step} in {self.out_dir}", file=sys.stderr)

    def _plot(self) -> None:
        plot_loss_curves(self.log_path, os.path.join(self.out_dir, "loss.png"),
                         baseline=self.meta.get("baseline_val_loss"))


# ----- the plumbing every loop shares: the Trainer here, the RL loops in phases/rl/rlhf.py ----

def clip_and_step(params, optimizer, grad_clip: float) -> float:
    """Clip the global gradient norm to grad_clip (0: no clipping), then update; returns the norm
    before clipping (measured even when clipping is off)."""
    norm = optim.clip_grad_norm(params, grad_clip) if grad_clip else optim.grad_norm(params)
    if not math.isfinite(norm):  # an update with it would turn every weight it touches into NaN
        raise TrainingDiverged(f"the gradient norm became {norm} (the update was not applied)")
    optimizer.step()
    return norm


def gradient_step(params, optimizer, loss, grad_clip: float) -> float:
    """One whole update from one loss: zero the gradients, backpropagate, clip, step."""
    optimizer.zero_grad()
    loss.backward()
    return clip_and_step(params, optimizer, grad_clip)


def append_log(path: str, record: dict) -> None:
    """Add one record to a JSONL log."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_log(path: str, step: int) -> None:
    """Drop log records written after the checkpoint (step) by the run that was interrupted,
    and a last line a kill cut in half (with a notice); the log is rewritten whole."""
    if not os.path.exists(path):
        return
    kept = [r for r in read_log(path, drop_torn=True) if r.get("step", 0) <= step]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_log(path: str, drop_torn: bool = False) -> list[dict]:
    """The records of a JSONL training log.

    A last line that is not whole JSON is what a kill during a write leaves: with drop_torn
    it is dropped with a notice, otherwise (and for a bad line anywhere else) it is an error.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [(number, line) for number, line in enumerate(f, start=1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if drop_torn and index == len(lines) - 1:
                print(f"{path}: line {number} was cut short by an interrupted write; dropped it", file=sys.stderr)
                break
            raise UserError(f"{path}: line {number} is not a log record ({err})") from None
        records.append(record)
    return records
