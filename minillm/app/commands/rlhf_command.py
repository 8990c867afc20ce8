"""`minillm rlhf`: Phase 3, policy-gradient optimisation of the SFT model against a reward model.

    minillm rlhf --policy runs/sft --rm runs/rm --out runs/rlhf
    minillm rlhf --policy runs/sft --rm runs/rm --algo ppo --group-size 4 --target-kl 6 --out runs/rlhf_ppo
    minillm rlhf --policy runs/sft --rm gold --beta 0.03 --out runs/rlhf_oracle  # the ceiling
    minillm rlhf --policy runs/sft --rm runs/rm --algo grpo --reward exact --out runs/grpo
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from minillm.app.commands.train_flags import add_training_flags, setting_overrides
from minillm.phases import presets
from minillm.phases.rl.rlhf import ALGORITHMS, REWARDS, RLHFConfig, RLHFRun

DEFAULTS = presets.get(presets.COMMAND_PRESET).rlhf


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rlhf", help="Phase 3: optimise an SFT model against a reward model (REINFORCE, RLOO, PPO, GRPO)",
        description="Sample responses from the policy (starting as the SFT model), score them with the "
                    "reward model minus a KL penalty to the frozen SFT model, and update the policy by "
                    "policy gradient; then compare held-out answers of SFT and RLHF (report.md). The "
                    "settings start from the preset's for the algorithm (its ppo or grpo settings for "
                    "those, its rlhf settings for the others).")
    p.add_argument("--policy", required=True, help="the SFT run directory (minillm sft --out)")
    p.add_argument("--rm", required=True, help="the reward model's run directory (minillm reward --out), or "
                                                "'gold': the simulated labeler as the reward, an oracle upper "
                                                "bound for any learned reward model")
    p.add_argument("--prompts", help="training prompts .jsonl: a 'prompt' field, or demonstrations or "
                                     "preference pairs whose prompts are used (default: data/rl/train.jsonl)")
    p.add_argument("--heldout", help="held-out prompts for the report (default: data/rl/heldout.jsonl)")
    p.add_argument("--algo", choices=tuple(ALGORITHMS), default=None,
                   help="reinforce: batch-mean baseline; rloo: leave-one-out baseline; ppo: InstructGPT's PPO "
                        "(per-token KL rewards, a value model from the reward model, GAE); ppo-seq: PPO's "
                        "clipped ratio on RLOO's per-response advantages; grpo: group-normalised advantages, "
                        f"KL in the loss (default {DEFAULTS.algo})")
    p.add_argument("--reward", choices=REWARDS, default=None,
                   help="rm: the --rm reward model (or gold); exact: 1 when the answer states the right value "
                        "(the world's facts and sums only), the verifiable reward GRPO was made for "
                        "(default: the preset's for the algorithm)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, rlhf.png, report.md")
    p.add_argument("--normalize-adv", action="store_true", default=None, help="divide advantages by their std")
    add_training_flags(p, RLHFConfig, DEFAULTS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chosen = {k: v for k, v in (("reward", args.reward), ("normalize_adv", args.normalize_adv)) if v is not None}
    config = replace(presets.get(args.preset).rl(args.algo), **setting_overrides(args, RLHFConfig), **chosen)
    RLHFRun(policy=args.policy, reward_model=args.rm, out=args.out, config=config, prompts=args.prompts,
            heldout=args.heldout, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet).run()
    return 0
