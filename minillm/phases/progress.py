"""A progress display: a tqdm bar in a terminal, a plain line now and then when piped.

Long work shows progress, but a log file full of carriage returns helps no one, so when
stderr is not a terminal the display prints one line every `every` steps instead.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """Shows step, loss, tokens/s and the ETA of a run of `total` steps."""

    def __init__(self, total: int, initial: int = 0, quiet: bool = False, desc: str = "train"):
        self.total, self.quiet, self.desc = total, quiet, desc
        self.start, self.initial = time.perf_counter(), initial
        self.every = max(1, total // 10)
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    def update(self, step: int, **values: float) -> None:
        if self.quiet:
            return
        shown = {k: (f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}") for k, v in values.items()}
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(shown, refresh=False)
        elif step % self.every == 0 or step == self.total:
            done = step - self.initial
            eta = (time.perf_counter() - self.start) / max(done, 1) * (self.total - step)
            fields = " ".join(f"{k} {v}" for k, v in shown.items())
            print(f"{self.desc} step {step}/{self.total} {fields} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
