"""`minillm rlhf`: Phase 3, policy-gradient optimisation of the SFT model against a reward model.

    minillm rlhf --policy runs/sft --rm runs/rm --out runs/rlhf
    minillm rlhf --policy runs/sft --rm runs/rm --algo ppo --group-size 4 --target-kl 6 --out runs/rlhf_ppo
    minillm rlhf --policy runs/sft --rm gold --kl-coef 0.03 --out runs/rlhf_oracle  # the ceiling
    minillm rlhf --policy runs/sft --rm runs/rm --algo grpo --reward exact --out runs/grpo
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from minillm.app.commands.train_flags import add_run_flags, number_flag
from minillm.phases.rl.rlhf import ALGORITHMS, REWARDS, RLHF_RULES, RLHFConfig, RLHFRun

DEFAULTS = RLHFConfig()
FLAGS = [("steps", "rollout-then-update iterations"), ("batch_prompts", "B prompts per step"),
         ("group_size", "G sampled responses per prompt"), ("lr", "AdamW learning rate (constant)"),
         ("kl_coef", "β of the KL penalty (the start value with --target-kl); 0 switches it off"),
         ("target_kl", "adapt β toward this mean KL per response, in nats (default: β fixed)"),
         ("kl_horizon", "horizon of the adaptive β controller, in responses"),
         ("temperature", "sampling temperature τ; the policy is softmax(z/τ)"),
         ("max_new_tokens", "longest response"), ("ppo_epochs", "PPO and GRPO passes over one batch"),
         ("ppo_minibatch", "PPO and GRPO responses per gradient step"),
         ("clip_eps", "PPO and GRPO clip ε (PPO's value clip too)"),
         ("gamma", "PPO: GAE's discount γ"), ("lam", "PPO: GAE's λ"),
         ("value_lr", "PPO: the value model's learning rate"),
         ("grad_clip", "max global gradient norm (0: off)"),
         ("eval_interval", "greedy held-out evaluation every N steps"),
         ("eval_prompts", "held-out prompts in the periodic evaluation"),
         ("checkpoint_interval", "save every N steps"), ("seed", "seeds prompts, samples, minibatches")]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rlhf", help="Phase 3: optimise an SFT model against a reward model (REINFORCE, RLOO, PPO, GRPO)",
        description="Sample responses from the policy (starting as the SFT model), score them with the "
                    "reward model minus a KL penalty to the frozen SFT model, and update the policy by "
                    "policy gradient; then compare held-out answers of SFT and RLHF (report.md).")
    p.add_argument("--policy", required=True, help="the SFT run directory (minillm sft --out)")
    p.add_argument("--rm", required=True, help="the reward model's run directory (minillm reward --out), or "
                                                "'gold': the simulated labeler as the reward, an oracle upper "
                                                "bound for any learned reward model")
    p.add_argument("--prompts", help="training prompts .jsonl: a 'prompt' field, or demonstrations or "
                                     "preference pairs whose prompts are used (default: data/rl/train.jsonl)")
    p.add_argument("--heldout", help="held-out prompts for the report (default: data/rl/heldout.jsonl)")
    p.add_argument("--algo", choices=tuple(ALGORITHMS), default=DEFAULTS.algo,
                   help="reinforce: batch-mean baseline; rloo: leave-one-out baseline; ppo: InstructGPT's PPO "
                        "(per-token KL rewards, a value model from the reward model, GAE); ppo-seq: PPO's "
                        "clipped ratio on RLOO's per-response advantages; grpo: group-normalised advantages, "
                        "KL in the loss")
    p.add_argument("--reward", choices=REWARDS, default=DEFAULTS.reward,
                   help="rm: the --rm reward model (or gold); exact: 1 when the answer states the right value "
                        "(the world's facts and sums only), the verifiable reward GRPO was made for")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, rlhf.png, report.md")
    p.add_argument("--normalize-adv", action="store_true", help="divide advantages by their std")
    add_run_flags(p)
    for name, text in FLAGS:  # each parsed by its rule in RLHF_RULES
        number_flag(p, "--" + name.replace("_", "-"), RLHF_RULES[name], dest=name, default=None,
                    help=f"{text} (default {getattr(DEFAULTS, name)})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    known = {f.name for f in fields(RLHFConfig)}
    values = {name: getattr(args, name) for name, _ in FLAGS if getattr(args, name) is not None}
    config = RLHFConfig(**{k: v for k, v in values.items() if k in known}, algo=args.algo,
                        reward=args.reward, normalize_adv=args.normalize_adv)
    RLHFRun(policy=args.policy, reward_model=args.rm, out=args.out, config=config, prompts=args.prompts,
            heldout=args.heldout, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet).run()
    return 0
