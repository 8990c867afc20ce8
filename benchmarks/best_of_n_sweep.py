"""Experiment: how best-of-n's held-out gold depends on n and on the sampling temperature.

Run:  python benchmarks/best_of_n_sweep.py runs/pipeline [--setting 4:1.0 --setting 4:0.5 ...]

For each `n:τ` setting, `BestOfNRun` samples n answers per held-out prompt from RUN_DIR/sft at
temperature τ, keeps the reward model's (RUN_DIR/rm) favourite, and judges it against the SFT
model's greedy answer exactly as `minillm pipeline --methods best-of-n` does (τ = 1 there).
Prints one row per setting: mean gold, win rate against greedy SFT, reward-model score and KL
(measured; the closed form log n − (n−1)/n holds against the distribution that was sampled, so
it matches the measured KL to SFT only at τ = 1). Each setting's report lands in
RUN_DIR/best-of-n-sweep/n{n}_t{τ}.
"""
from __future__ import annotations

import argparse
import os

from minillm.training.best_of_n import BestOfNRun


def parse_setting(text: str) -> tuple[int, float]:
    """"4:0.5" -> (4, 0.5)."""
    try:
        n, temperature = text.split(":")
        return int(n), float(temperature)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:TEMPERATURE such as 4:0.5, got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a pipeline run directory holding sft/ and rm/")
    parser.add_argument("--setting", type=parse_setting, action="append",
                        help="N:TEMPERATURE (repeatable; default 4:1.0, 4:0.7, 4:0.5, 16:1.0)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    settings = args.setting or [(4, 1.0), (4, 0.7), (4, 0.5), (16, 1.0)]
    print(f"{'n':>3} {'τ':>4} {'gold':>7} {'SFT gold':>8} {'wins':>5} {'losses':>6} {'win rate':>8} "
          f"{'RM':>6} {'KL':>6} {'KL formula':>10}")
    for n, temperature in settings:
        out = os.path.join(args.run_dir, "best-of-n-sweep", f"n{n}_t{temperature}")
        s = BestOfNRun(policy=os.path.join(args.run_dir, "sft"), reward_model=os.path.join(args.run_dir, "rm"),
                       out=out, n=n, temperature=temperature, seed=args.seed, quiet=True).run()
        print(f"{n:>3} {temperature:>4} {s['mean_gold_rlhf']:>+7.3f} {s['mean_gold_sft']:>+8.3f} "
              f"{s['rlhf_vs_sft_wins']:>5} {s['rlhf_vs_sft_losses']:>6} {s['rlhf_vs_sft_win_rate']:>8.1%} "
              f"{s['rm_score_rlhf']:>+6.2f} {s['kl_to_reference']:>6.3f} {s['kl_formula']:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
