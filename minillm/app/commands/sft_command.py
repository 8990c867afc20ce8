"""`minillm sft`: Phase 2 from the command line.

    minillm sft --init runs/pretrain --out runs/sft
    minillm sft --init runs/pretrain --data my_pairs.jsonl --val my_val.jsonl --out runs/sft --epochs 2
    minillm sft --init runs/pretrain --data pairs.jsonl conversations.jsonl --out runs/sft
"""
from __future__ import annotations

import argparse

from minillm.phases.losses import NORMALIZATIONS
from minillm.phases.sft import SFTRun
from minillm.io import checks
from minillm.app.commands.train_flags import add_training_flags, number_flag, setting_overrides
from minillm.phases import presets
from minillm.phases.trainer import TrainConfig

DEFAULTS = presets.get(presets.COMMAND_PRESET).sft



def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sft", help="Phase 2: supervised finetuning of a pretrained model on demonstrations",
        description="Finetune a pretrained checkpoint on (prompt, response) demonstrations and "
                    "multi-turn conversations with the chat template and a loss on the assistant's "
                    "tokens only; then compare held-out answers before "
                    f"and after (report.md). Defaults: {DEFAULTS.max_steps} steps, batch "
                    f"{DEFAULTS.batch_size}, lr {DEFAULTS.lr}.")
    p.add_argument("--init", required=True, help="the pretrained run directory (minillm pretrain --out)")
    p.add_argument("--data", nargs="+", help="demonstrations .jsonl, one or more files: pairs, or "
                                             "`messages` conversations of any number of turns (default: "
                                             "the shipped data/sft/train.jsonl and data/chat/train.jsonl)")
    p.add_argument("--val", nargs="+", help="validation demonstrations (default: the shipped validation "
                                            "files with the shipped data, else every 10th record of --data)")
    p.add_argument("--test", help="held-out prompts for the before/after report (default: data/sft/test.jsonl)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, loss.png, report.md")
    number_flag(p, "--epochs", checks.POSITIVE, default=None,
                help="train this many passes over the pairs (sets --max-steps)")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default="token",
                   help="loss mean over all response tokens of a batch (token) or per answer (sequence)")
    number_flag(p, "--eval-prompts", checks.POSITIVE_INT, default=None,
                help="evaluate only the first N held-out prompts")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable lines of the data")
    add_training_flags(p, TrainConfig, DEFAULTS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = setting_overrides(args, TrainConfig)
    SFTRun(init=args.init, out=args.out, data=args.data, val=args.val, test=args.test, epochs=args.epochs,
           normalize=args.normalize, preset=args.preset, overrides=overrides, eval_prompts=args.eval_prompts,
           skip_bad=args.skip_bad, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet).run()
    return 0
