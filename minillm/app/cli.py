"""The `minillm` command (also `python -m minillm`).

Each command group lives in its own module under `minillm.app.commands` and adds its
subcommands with `register(subparsers)`; a subcommand stores its handler in `func`.
Bad input (a `minillm.errors.UserError`, or an OS error such as a missing file) prints one
sentence and exits with status 2; any other exception is a bug and shows its traceback.
Ctrl-C and SIGTERM stop a command the same way (a training loop first saves its step) with
exit status 130.
`--debug` shows the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys

import minillm
from minillm import fast
from minillm.errors import UserError

# Modules under minillm.app.commands, each exposing register(subparsers).
COMMAND_MODULES = [
    "tokenizer",
    "generate",
    "data",
    "pretrain",
    "sft",
    "reward",
    "label",
    "rlhf",
    "dpo",
    "pipeline",
    "compare",
    "results",
    "hf",
    "chat",
]


NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class BadArguments(Exception):
    """A flag argparse could not accept: its message, one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one sentence (the flag, what it must be, what was given) without the
    usage block; `--help` still shows the usage. Subcommands' parsers are of this class too.
    A value like -inf, -nan or -1e5 is read as a number (argparse alone takes it for a flag), so
    its rule can refuse it by name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):
        raise BadArguments(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="minillm",
        description="minillm: build and train a small LLM from scratch "
                    "(tokens, pretraining, SFT, reward model, RLHF).",
    )
    parser.add_argument("--version", action="version", version=f"minillm {minillm.__version__}")
    parser.add_argument("--plain", action="store_true",
                        help="run on the plain path, without the speed wing (as MINILLM_PLAIN=1 does)")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of every error, bad input included (for bug reports)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"minillm.app.commands.{name}_command").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # the speed wing first: its BLAS kernel choice must come before NumPy loads
        fast.enable_unless_plain(sys.argv[1:] if argv is None else argv)
        parser = build_parser()
    except UserError as err:  # a bad MINILLM_DEVICE or MINILLM_THREADS
        print(f"minillm: error: {err}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except BadArguments as err:
        print(err, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops as Ctrl-C does: cleanly, saying so
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        print(f"minillm {args.command}: interrupted" + (f" ({err})" if str(err) else ""), file=sys.stderr)
        return 130
    except (UserError, OSError) as err:
        if args.debug:
            raise
        print(f"minillm {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame) -> None:
    """SIGTERM outside a training loop: unwind like Ctrl-C, so temporary files are removed."""
    raise KeyboardInterrupt("SIGTERM")
