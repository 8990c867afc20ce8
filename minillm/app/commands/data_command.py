"""`minillm data stats|make-world`: look inside a data file, or rebuild the shipped tiny world.

    minillm data stats data/sft/train.jsonl --tokenizer char
    minillm data stats hh.jsonl --skip-bad
    minillm data make-world --out data/
"""
from __future__ import annotations

import argparse
from pathlib import Path

from minillm.data import make_world, stats


def register(subparsers) -> None:
    """Add the `data` command group and its `stats` and `make-world` subcommands."""
    parser = subparsers.add_parser("data", help="inspect data files or regenerate the shipped datasets")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    show = commands.add_parser("stats", help="records, tokens and length percentiles of a data file")
    show.add_argument("path", type=Path, help="a .txt file, a folder of .txt files, or a .jsonl file")
    show.add_argument("--tokenizer", default=None, metavar="TOK.json|char",
                      help="count tokens too: a saved tokenizer, or 'char' (one per character)")
    show.add_argument("--skip-bad", action="store_true",
                      help="skip bad records and count them instead of stopping at the first")
    show.set_defaults(func=stats_handler)

    make = commands.add_parser("make-world", help="build the tiny world's datasets (deterministic)")
    make.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    make.add_argument("--seed", type=int, default=make_world.SEED, help="random seed (default: 0)")
    make.add_argument("--scale", type=float, default=1.0, help="shrink every size (default: 1)")
    make.set_defaults(func=make_world_handler)


def stats_handler(args: argparse.Namespace) -> int:
    print(stats.format_stats(stats.file_stats(args.path, args.tokenizer, args.skip_bad)))
    return 0


def make_world_handler(args: argparse.Namespace) -> int:
    sizes = make_world.write(args.out, args.seed, args.scale)
    for rel, n in sizes.items():
        print(f"{n:>10,d} bytes  {args.out / rel}")
    print(f"{sum(sizes.values()):>10,d} bytes in {len(sizes)} files")
    return 0
