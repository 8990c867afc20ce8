"""`minillm dpo`: Phase 3 by Direct Preference Optimisation, no reward model and no sampling.

    minillm dpo --policy runs/sft --out runs/dpo
    minillm dpo --policy runs/sft --data my_pairs.jsonl --beta 0.1 --max-steps 200 --lr 1e-5 --out runs/dpo
    minillm dpo --policy runs/sft --on-policy-prompts 1123 --rm runs/rm --out runs/dpo   # + the SFT model's own pairs
"""
from __future__ import annotations

import argparse

from minillm.io import checks
from minillm.app.commands.train_flags import add_training_flags, number_flag, setting_overrides
from minillm.phases import presets
from minillm.phases.presets import DPOConfig
from minillm.phases.rl.dpo import DPORun

DEFAULTS = presets.get(presets.COMMAND_PRESET).dpo


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dpo", help="Phase 3: train the SFT model directly on preference pairs (DPO)",
        description="Optimise the policy (starting as the SFT model) with DPO's loss, the reward model's "
                    "pairwise loss on the implicit reward β·log π(y|x)/π_ref(y|x) against the frozen SFT "
                    "model; log the loss, the implicit reward's accuracy and margin and the chosen and "
                    "rejected log-probabilities; then compare held-out answers of SFT and DPO (report.md). "
                    f"Defaults: {DEFAULTS.max_steps} steps, batch {DEFAULTS.batch_size} pairs, "
                    f"lr {DEFAULTS.lr}, β {DEFAULTS.beta}.")
    p.add_argument("--policy", required=True, help="the SFT run directory (minillm sft --out)")
    p.add_argument("--data", help="preference pairs .jsonl (default: the shipped data/preferences/train.jsonl)")
    p.add_argument("--val", help="validation pairs (default: the shipped data/preferences/validation.jsonl)")
    p.add_argument("--heldout", help="held-out prompts for the report (default: data/rl/heldout.jsonl)")
    number_flag(p, "--on-policy-prompts", checks.NONNEGATIVE_INT, default=0,
                help="also train on pairs of 2 sampled SFT answers to N prompts of data/rl/train.jsonl, "
                        "labelled by gold_score (as `minillm reward --on-policy-prompts`)")
    p.add_argument("--rm", help="optional reward-model run: the report shows the RM score of the answers too")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, loss.png, report.md")
    add_training_flags(p, DPOConfig, DEFAULTS)  # --beta, --max-new-tokens and the supervised loop's flags
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    DPORun(policy=args.policy, out=args.out, data=args.data, val=args.val, heldout=args.heldout, preset=args.preset,
           overrides=setting_overrides(args, DPOConfig), on_policy_prompts=args.on_policy_prompts,
           reward_model=args.rm, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet).run()
    return 0
