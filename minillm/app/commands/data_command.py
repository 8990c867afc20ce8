"""`minillm data stats|make-world`: look inside a data file, or rebuild the shipped tiny world.

    minillm data stats data/sft/train.jsonl --tokenizer char
    minillm data stats hh.jsonl --skip-bad
    minillm data make-world --out data/ --overwrite
    minillm data preferences --out runs/noisy --noise 0.2 --length-bias 0.5
"""
from __future__ import annotations

import argparse
from pathlib import Path

from minillm.io import checks
from minillm.errors import UserError

from minillm.data import labelers, make_world, stats


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
    make.add_argument("--out", type=Path, default=Path("data"), help="output folder, new or empty (default: data)")
    make.add_argument("--overwrite", action="store_true",
                      help="write over the world's files in a folder that holds them (other files are kept)")
    make.add_argument("--seed", type=checks.SEED.parse, default=make_world.SEED, help="random seed (default: 0)")
    make.add_argument("--scale", type=checks.POSITIVE.parse, default=1.0, help="shrink every size (default: 1)")
    make.set_defaults(func=make_world_handler)
    _register_preferences(commands)


def _register_preferences(commands) -> None:
    """`data preferences`: a data folder whose preference pairs a flawed labeler labelled."""
    r = labelers.RANGES
    flaws = commands.add_parser(
        "preferences", help="copy a data folder with its preference pairs relabelled by a flawed labeler",
        description="Copy --from (default: the shipped data/) to --out, relabelling preferences/train.jsonl and "
                    "validation.jsonl (test.jsonl stays gold). The labeler scores each answer y to prompt x as "
                    "u(y) = gold(x, y) + B·len(y)/100 + S·flatters(y) and prefers the larger u; with probability p "
                    "the first-shown answer (order random per pair) wins instead; then with probability P the label "
                    "is flipped. `minillm pipeline --data OUT` trains on it (its on-policy pairs get the same labeler).")
    flaws.add_argument("--out", type=Path, required=True, help="a new (or empty) output folder")
    flaws.add_argument("--from", dest="source", type=Path, default=None, help="the data folder to copy (default: data/)")
    flaws.add_argument("--noise", default=0.0, metavar="P",
                       help=f"probability P that a label is flipped, in {list(r['noise'])} (default 0)")
    flaws.add_argument("--length-bias", default=0.0, metavar="B",
                       help=f"gold points B the labeler adds per 100 characters of answer, in {list(r['length_bias'])} "
                            "(default 0; negative: prefers short answers)")
    flaws.add_argument("--position-bias", default=0.0, metavar="p",
                       help=f"probability p that the first-shown answer wins unread, in {list(r['position_bias'])} (default 0)")
    flaws.add_argument("--sycophancy", default=0.0, metavar="S",
                       help=f"gold points S an answer gains for flattering the user (a phrase such as 'What a great "
                            f"question!'), in {list(r['sycophancy'])} (default 0)")
    flaws.add_argument("--flattered", default=0.0, metavar="F",
                       help=f"share F of pairs in which one answer (chosen or rejected, a fair coin) gets a flattering "
                            f"opener first, in {list(r['flattered'])} (default 0: no flattering answers to prefer)")
    flaws.add_argument("--seed", type=int, default=0, help="seeds the shown order, the flips and the flattery (default 0)")
    flaws.set_defaults(func=preferences_handler)


def stats_handler(args: argparse.Namespace) -> int:
    print(stats.format_stats(stats.file_stats(args.path, args.tokenizer, args.skip_bad)))
    return 0


def make_world_handler(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UserError(f"{args.out} is not empty: pass --overwrite to write the tiny world's files over the ones "
                        "there (other files are kept), or choose a new or empty folder")
    sizes = make_world.write(args.out, args.seed, args.scale)
    for rel, n in sizes.items():
        print(f"{n:>10,d} bytes  {args.out / rel}")
    print(f"{sum(sizes.values()):>10,d} bytes in {len(sizes)} files")
    return 0


def preferences_handler(args: argparse.Namespace) -> int:
    labeler = labelers.Labeler(noise=args.noise, length_bias=args.length_bias,
                               position_bias=args.position_bias, sycophancy=args.sycophancy)
    measured = labelers.write_flawed_data(args.source, str(args.out), labeler, args.seed, args.flattered)
    print(f"labeler: {labeler.describe()}; {measured['pairs']} pairs relabelled; agreement with gold: "
          f"train {measured['train_agreement']:.3f}"
          + (f", validation {measured['validation_agreement']:.3f}" if "validation_agreement" in measured else ""))
    print(f"data folder: {args.out} (minillm pipeline --data {args.out})")
    return 0
