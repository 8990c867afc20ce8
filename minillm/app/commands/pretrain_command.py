"""`minillm pretrain`: Phase 1 from the command line."""
from __future__ import annotations

import argparse

from minillm.app.commands.train_flags import add_training_flags, number_flag, setting_overrides
from minillm.phases import presets
from minillm.phases.pretrain import MODEL_RULES, PretrainRun
from minillm.phases.trainer import TrainConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="Phase 1: pretrain a GPT for completion on a text corpus",
        description="Pretrain a GPT on a text corpus, with a preset's model, tokenizer and settings "
                    "(phases/presets.py); each flag below overrides one of them.")
    p.add_argument("--data", help="a UTF-8 text file, or a directory (all its .txt files); "
                                  "default: the shipped tiny-world corpus")
    p.add_argument("--val", help="a validation text (default: the last 10%% of --data)")
    p.add_argument("--tokenizer", help="char | word[:MAX_VOCAB] | bpe[:VOCAB] (default: the preset's)")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, loss.png")
    add_training_flags(p, TrainConfig, presets.get(presets.COMMAND_PRESET).pretrain)
    number_flag(p, "--block-size", MODEL_RULES["block_size"], dest="block_size", default=None)
    number_flag(p, "--dropout", MODEL_RULES["dropout"], default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = setting_overrides(args, TrainConfig)  # a shorter run's schedule is fitted by PretrainRun
    model_overrides = {k: getattr(args, k) for k in ("block_size", "dropout") if getattr(args, k) is not None}
    PretrainRun(out=args.out, preset=args.preset, data=args.data, val=args.val, tokenizer=args.tokenizer,
                overrides=overrides, model_overrides=model_overrides, resume=args.resume,
                overwrite=args.overwrite, quiet=args.quiet).run()
    return 0
