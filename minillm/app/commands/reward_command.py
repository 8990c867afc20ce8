"""`minillm reward` and `minillm score`: Phase 3's reward model from the command line.

    minillm reward --init runs/sft --out runs/rm
    minillm reward --init runs/sft --data my_pairs.jsonl --val my_val.jsonl --out runs/rm --epochs 2
    minillm score --rm runs/rm --prompt "Where does Anna live?" --response "Rivertown." --response "Dunno."
"""
from __future__ import annotations

import argparse

from minillm.app import labeling
from minillm.io import checkpoint
from minillm.errors import UserError
from minillm.phases.reward import RewardRun, score_responses
from minillm.io import checks
from minillm.app.commands.train_flags import add_training_flags, number_flag, setting_overrides
from minillm.phases import presets
from minillm.phases.trainer import TrainConfig

DEFAULTS = presets.get(presets.COMMAND_PRESET).rm



def register(subparsers) -> None:
    _register_reward(subparsers)
    p = subparsers.add_parser(
        "score", help="Phase 3: score responses to a prompt with a trained reward model",
        description="Print r_θ(prompt, response) for each --response; several are printed ranked, "
                    "highest first.")
    p.add_argument("--rm", required=True, help="the reward-model run directory (minillm reward --out)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--response", action="append", required=True,
                   help="a response to score; repeat the option to rank several")
    p.set_defaults(func=run_score)


def _register_reward(subparsers) -> None:
    p = subparsers.add_parser(
        "reward", help="Phase 3: train a reward model on preference pairs (chosen, rejected)",
        description="Turn an SFT (or pretrained) checkpoint into a reward model r_θ(x, y) and train it "
                    "with -log σ(s_w - s_l) on preference pairs (any layout minillm reads, Anthropic HH "
                    "included); report validation accuracy, the margin histogram (margins.png) and the "
                    "agreement with the gold labeler on freshly sampled responses (report.md). Defaults: "
                    f"{DEFAULTS.max_steps} steps, batch {DEFAULTS.batch_size} pairs, lr {DEFAULTS.lr}.")
    p.add_argument("--init", required=True, help="the SFT run directory (minillm sft --out), or a pretrained one")
    p.add_argument("--data", nargs="+", help="preference pairs .jsonl (default: the shipped data/preferences/train.jsonl); "
                   "several files (`minillm label` files among them) are mixed into OUT.pairs.jsonl beside OUT, and "
                   "label files add class_report.md: agreement between raters and with gold, RM accuracy on class and gold pairs")
    p.add_argument("--val", help="validation pairs (default: the shipped validation.jsonl with the shipped "
                                 "data, else every 10th pair of --data)")
    p.add_argument("--prompts", help="held-out prompts for the RM-gold agreement (default: data/rl/heldout.jsonl)")
    number_flag(p, "--agreement-prompts", checks.POSITIVE_INT, default=None,
                help="use only the first N held-out prompts for the agreement check")
    p.add_argument("--out", required=True, help="run directory: checkpoint, log.jsonl, loss.png, margins.png, report.md")
    number_flag(p, "--epochs", checks.POSITIVE, default=None, help="train this many passes over the pairs (sets --max-steps)")
    number_flag(p, "--on-policy-prompts", checks.NONNEGATIVE_INT, default=0,
                help="also train on N pairs of the init model's own sampled answers, labelled by gold_score")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable or unencodable pairs")
    add_training_flags(p, TrainConfig, DEFAULTS)
    p.set_defaults(func=run_reward)


def run_reward(args: argparse.Namespace) -> int:
    overrides = setting_overrides(args, TrainConfig)
    data, labels = labeling.mix_for_reward(args.data, args.out)
    RewardRun(init=args.init, out=args.out, data=data, val=args.val, prompts=args.prompts,
              epochs=args.epochs, preset=args.preset, overrides=overrides, agreement_prompts=args.agreement_prompts,
              on_policy_prompts=args.on_policy_prompts, skip_bad=args.skip_bad, resume=args.resume,
              overwrite=args.overwrite, quiet=args.quiet).run()
    if labels:  # the class's labels: what they agree on, and what the reward model learned from them
        print(labeling.write_class_report(args.out, labels))
    return 0


def run_score(args: argparse.Namespace) -> int:
    ckpt = checkpoint.load(args.rm)
    if ckpt.model_kind != "reward_model":
        raise UserError(f"{args.rm} holds a {ckpt.model_kind} checkpoint, not a reward model: "
                         "train one with `minillm reward --init RUN --out DIR` and pass --rm DIR")
    scores = score_responses(ckpt.model, ckpt.tokenizer, args.prompt, args.response)
    if len(scores) == 1:
        print(f"{scores[0]:+.4f}")
        return 0
    ranked = sorted(zip(scores, args.response), key=lambda pair: -pair[0])
    for rank, (score, response) in enumerate(ranked, start=1):
        print(f"{rank}. {score:+.4f}  {response}")
    return 0
