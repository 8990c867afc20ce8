"""Experiment: the classroom reward model's validation accuracy under other training settings.

Run:  python benchmarks/reward_sweep.py runs/pipeline --setting "" --setting max_steps=300 \\
          --setting lr=2e-3,min_lr=2e-4 --setting seed=7

Trains the pipeline's reward phase again on RUN_DIR/sft, exactly as `minillm pipeline --preset
classroom` does (the shipped preference pairs, the same on-policy pairs labelled by the gold
labeler, the held-out prompts of RUN_DIR for the gold agreement), once per `--setting`: the
preset's reward-model settings with the given TrainConfig fields changed ("" changes nothing and
reproduces the pipeline's own reward model). Prints one row per setting: validation pairwise
accuracy (a tie counts half) and agreement with the gold labeler on fresh SFT answer pairs.
Each run lands in RUN_DIR/reward-sweep/<setting>.
"""
from __future__ import annotations

import argparse
import os

import minillm.fast

minillm.fast.enable()  # the speed wing, as the `minillm` command runs; before NumPy loads

from minillm.data.folders import shipped  # noqa: E402
from minillm.phases.presets import PRESETS  # noqa: E402
from minillm.phases.reward import RewardRun  # noqa: E402


def parse_setting(text: str) -> dict:
    """"lr=2e-3,max_steps=300" -> {"lr": 0.002, "max_steps": 300}; "" -> {}."""
    changes = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,NAME=VALUE...], got {text!r}")
        value = value.strip()
        changes[name.strip()] = int(value) if value.lstrip("-").isdigit() else float(value)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a classroom pipeline run directory holding sft/ and heldout_prompts.jsonl")
    parser.add_argument("--setting", type=parse_setting, action="append",
                        help='TrainConfig fields to change, e.g. "max_steps=300" (repeatable; "" for none)')
    args = parser.parse_args()
    preset, layout = PRESETS["classroom"], shipped()
    print(f"{'setting':>28} {'val accuracy':>12} {'gold agreement':>14}", flush=True)
    for changes in args.setting or [{}]:
        label = ",".join(f"{k}={v}" for k, v in changes.items()) or "preset"
        overrides = {"seed": 1337, **changes}  # over the classroom preset's reward-model settings
        summary = RewardRun(init=os.path.join(args.run_dir, "sft"), out=os.path.join(args.run_dir, "reward-sweep", label),
                            data=layout.preferences, val=layout.preferences_val,
                            prompts=os.path.join(args.run_dir, "heldout_prompts.jsonl"), preset="classroom",
                            overrides=overrides,
                            on_policy_prompts=preset.rm_on_policy, on_policy_source=layout.rl, skip_bad=True,
                            quiet=True).run()
        agreement = f"{summary['rm_gold_agreement']:.3f} ({summary['agreement_pairs']})"
        print(f"{label:>28} {summary['val_accuracy']:>12.3f} {agreement:>14}", flush=True)


if __name__ == "__main__":
    main()
