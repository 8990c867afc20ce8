"""Experiment: how best-of-n's held-out gold depends on n and on the sampling temperature, and why.

Run:  python benchmarks/best_of_n_sweep.py runs/pipeline [--setting 4:1.0 --setting 4:0.5 ...]

For each `n:τ` setting, `BestOfNRun` samples n answers per held-out prompt from RUN_DIR/sft at
temperature τ, keeps the reward model's (RUN_DIR/rm) favourite, and judges it against the SFT
model's greedy answer exactly as `minillm pipeline --methods best-of-n` does. Beside the reward
model's pick, each row shows two figures on the same n samples (`best_of_n.diagnose`):
  one sample  the mean gold of a single sample at τ: what sampling costs against the greedy answer;
  oracle      the mean gold of the gold labeler's pick: the ceiling a perfect reward model reaches.
A pick below greedy SFT although its oracle is above says the reward model picks badly; an
oracle near or below greedy SFT says the samples themselves are worse than the greedy answer.
"RM = oracle" is the share of prompts where the reward model picked a sample with the top gold.
KL: to π_τ (the distribution sampled, which the closed form log n − (n−1)/n predicts) and to
the SFT model itself. Each setting's report lands in RUN_DIR/best-of-n-sweep/n{n}_t{τ}.
"""
from __future__ import annotations

import argparse
import os

import minillm.fast

minillm.fast.enable()  # the speed wing, as the `minillm` command runs; before NumPy loads

from minillm.phases.rl.best_of_n_run import BestOfNRun  # noqa: E402

COLUMNS = (("n", 3), ("τ", 4), ("greedy SFT", 10), ("one sample", 10), ("RM pick", 7), ("oracle", 7),
           ("RM = oracle", 11), ("wins–losses", 11), ("win rate", 8), ("RM", 6), ("KL to π_τ", 9),
           ("formula", 7), ("KL to SFT", 9))


def parse_setting(text: str) -> tuple[int, float]:
    """"4:0.5" -> (4, 0.5)."""
    try:
        n, temperature = text.split(":")
        return int(n), float(temperature)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:TEMPERATURE such as 4:0.5, got {text!r}") from None


def row(n: int, temperature: float, s: dict) -> list[str]:
    """One setting's summary as the table's cells."""
    return [str(n), str(temperature), f"{s['mean_gold_sft']:+.3f}", f"{s['sample_gold']:+.3f}",
            f"{s['rm_pick_gold']:+.3f}", f"{s['oracle_gold']:+.3f}", f"{s['rm_pick_is_oracle']:.0%}",
            f"{s['rlhf_vs_sft_wins']}–{s['rlhf_vs_sft_losses']}", f"{s['rlhf_vs_sft_win_rate']:.1%}",
            f"{s['rm_score_rlhf']:+.2f}", f"{s['kl_to_sampled']:.3f}", f"{s['kl_formula']:.3f}",
            f"{s['kl_to_reference']:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a pipeline run directory holding sft/ and rm/")
    parser.add_argument("--setting", type=parse_setting, action="append",
                        help="N:TEMPERATURE (repeatable; default n in {1, 4} at τ in {1.0, 0.7, 0.5}, and 16:1.0)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    settings = args.setting or [(n, t) for t in (1.0, 0.7, 0.5) for n in (1, 4)] + [(16, 1.0)]
    print(" ".join(f"{name:>{width}}" for name, width in COLUMNS), flush=True)
    for n, temperature in settings:
        out = os.path.join(args.run_dir, "best-of-n-sweep", f"n{n}_t{temperature}")
        s = BestOfNRun(policy=os.path.join(args.run_dir, "sft"), reward_model=os.path.join(args.run_dir, "rm"),
                       out=out, n=n, temperature=temperature, seed=args.seed, quiet=True).run()
        print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(row(n, temperature, s), COLUMNS)), flush=True)


if __name__ == "__main__":
    main()
