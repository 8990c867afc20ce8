"""`minillm compare`: one prompt answered by the pretrained, SFT and every phase-3 model of a pipeline run.

    minillm compare runs/pipeline --prompt "How to make pasta"
    minillm compare runs/pipeline --interactive          # a prompt per line, until an empty line
Each answer is greedy (best-of-n: the reward model's pick of n samples) and comes with its reward-model score and gold score. Colour in a
terminal, plain text when piped.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

from minillm.errors import MissingFileError, UserError
from minillm.app.pipeline_phases import CORE
from minillm.app.report import MODELS, answer_side_by_side, load_models

COLOURS = {"pretrained": "\033[33m", "SFT": "\033[36m", "RLHF": "\033[35m", "PPO": "\033[34m", "DPO": "\033[32m",
           "best-of-n": "\033[31m", "GRPO": "\033[95m"}
RESET, BOLD = "\033[0m", "\033[1m"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="answer a prompt with the pretrained, SFT and RLHF models of a pipeline run",
        description="Greedy answers of each finished phase's model, with the reward model's score "
                    "r_θ(x, y) and the gold labeler's score (-1..1).")
    p.add_argument("run_dir", help="a pipeline run directory (minillm pipeline --out)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt; repeat to ask several")
    p.add_argument("--interactive", action="store_true",
                   help="keep reading prompts from stdin, one per line, until EOF or an empty line")
    p.set_defaults(func=run)


def format_answers(row: dict, colour: bool, width: int = 100, names: list[str] | None = None) -> str:
    """A block for one prompt: per model (`names`, default every model) its name, scores and the wrapped answer."""
    paint = (lambda text, code: f"{code}{text}{RESET}") if colour else (lambda text, code: text)  # noqa: E731
    lines = [paint(f"prompt: {row['prompt']}", BOLD)]
    for name in names or [n for _, n in MODELS]:
        answer = row["answers"].get(name)
        if answer is None:
            lines.append(f"  {paint(f'{name:<10s}', COLOURS[name])} not available (phase not finished)")
            continue
        rm = "  n/a" if answer["rm"] is None else f"{answer['rm']:+.2f}"
        head = f"  {paint(f'{name:<10s}', COLOURS[name])} RM {rm}  gold {answer['gold']:+.2f}  │ "
        body = textwrap.wrap(answer["text"] or "(empty)", max(20, width - 36)) or [""]
        lines.append(head + body[0])
        lines += [" " * 34 + "│ " + more for more in body[1:]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.run_dir):
        raise MissingFileError(f"no such run directory: {args.run_dir} (make one with minillm pipeline --out DIR)")
    if not args.prompt and not args.interactive:
        raise UserError("give --prompt TEXT (repeatable) or --interactive")
    models, reward = load_models(args.run_dir)
    if not models:
        raise UserError(f"{args.run_dir} holds no finished phase yet: run `minillm pipeline --out {args.run_dir}`")
    colour = sys.stdout.isatty()
    shown = [name for phase, name in MODELS if phase in CORE + ("rlhf",) or name in models]  # every method present
    for prompt in args.prompt:
        print(format_answers(answer_side_by_side(models, reward, [prompt])[0], colour, names=shown))
    while args.interactive:
        if sys.stdin.isatty():
            print("prompt> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            break
        print(format_answers(answer_side_by_side(models, reward, [line.strip()])[0], colour, names=shown))
    return 0
