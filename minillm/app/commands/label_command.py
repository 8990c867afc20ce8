"""`minillm label`: a person labels preference pairs of a policy's answers, in the terminal.

    minillm label --policy runs/pipeline/sft --out class.jsonl --rater ana
    minillm label --policy runs/pipeline/sft --against runs/pipeline/rlhf --out class.jsonl --rater ben --n 30
    printf 'a\\nb\\nt\\n' | minillm label --policy runs/pipeline/sft --out class.jsonl --rater bot
Keys are read line by line from stdin, so a pipe drives it as well as a keyboard.
"""
from __future__ import annotations

import argparse
import sys

from minillm.app import labeling


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="Phase 3 by hand: label pairs of a policy's answers (A / B / tie / skip / quit)",
        description="Show two sampled answers of --policy (or one of --policy and one of --against) to a training "
                    "prompt side by side and read a key per line: a, b, t (tie), s (skip), q (quit). Each label is "
                    "appended to --out at once (the shipped preference layout plus the rater, the prompt id and both "
                    "answers' gold scores, which are never shown); a rerun resumes after the prompts this rater "
                    "labelled. The first round(N x shared fraction) pairs are the same for every rater, so their "
                    "agreement can be measured (minillm reward --data FILE ... reports it).")
    p.add_argument("--policy", required=True, help="the chat policy whose answers are compared (an SFT run directory)")
    p.add_argument("--out", required=True, help="the label file (.jsonl), created or resumed")
    p.add_argument("--rater", required=True, help="your name (1-40 characters); resuming skips what this rater labelled")
    p.add_argument("--n", type=int, default=20, help="pairs to label in all, earlier sessions included (default 20)")
    p.add_argument("--against", help="a second policy (e.g. runs/pipeline/rlhf): answer A from one, B from the other, "
                                     "in a random order")
    p.add_argument("--shared-fraction", type=float, default=0.25,
                   help="share of the N pairs every rater sees, shown first (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="decides the pairs and their answers; raters share it (default 0)")
    p.add_argument("--prompts", help="training prompts to draw from (default: data/rl/train.jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    session = labeling.LabelSession(policy=args.policy, out=args.out, rater=args.rater, n=args.n,
                                    against=args.against, shared_fraction=args.shared_fraction,
                                    seed=args.seed, prompts=args.prompts)
    labeling.run_terminal(session, sys.stdin.readline, lambda text: print(text, flush=True))
    return 0
