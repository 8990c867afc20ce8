"""Experiment: which held-out answers each phase-3 method made right, by the verifiable reward.

Run:  python benchmarks/exact_by_kind.py runs/pipeline [--methods rlhf ppo dpo grpo]

Reads RUN_DIR/<method>/report.json (written by `minillm pipeline --methods ...`), scores the SFT
model's and the method's greedy held-out answers with `gold.exact_reward` (1 when the answer
states the right value and no wrong one; prompts without one right value are left out) and
prints, per task kind, how many answers were right before and after. It separates what RL can
change (how an answer is said) from what it cannot (a sum the model does not know).
"""
from __future__ import annotations

import argparse
import json
import os

from minillm.app.results import right_by_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a pipeline run directory with phase-3 methods")
    parser.add_argument("--methods", nargs="+", default=["rlhf", "ppo", "dpo", "grpo"])
    args = parser.parse_args()
    for method in args.methods:
        path = os.path.join(args.run_dir, method, "report.json")
        if not os.path.exists(path):
            print(f"{method}: no {path}, skipped")
            continue
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        before = right_by_kind(report["prompts"], report["answers"]["sft"])
        after = right_by_kind(report["prompts"], report["answers"]["rlhf"])   # "rlhf": the phase-3 policy
        cells = [f"{kind} {int(sum(before[kind]))} → {int(sum(after[kind]))} of {len(before[kind])}"
                 for kind in sorted(before)]
        print(f"{method:5s} right answers, SFT → method: " + "; ".join(cells))


if __name__ == "__main__":
    main()
