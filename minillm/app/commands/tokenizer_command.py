"""`minillm tokenizer train|encode`: train a tokenizer on a text file, look at its pieces.

    minillm tokenizer train --input corpus.txt --vocab-size 4096 --out tok.json
    minillm tokenizer encode --tok tok.json "Hello, world!"
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from minillm.io import checks

from minillm.errors import MissingFileError, UserError
from minillm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load


def register(subparsers) -> None:
    """Add the `tokenizer` command group and its `train` and `encode` subcommands."""
    parser = subparsers.add_parser("tokenizer", help="train a tokenizer or encode text with one")
    commands = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser("train", help="train a tokenizer on a UTF-8 text file")
    train.add_argument("--input", required=True, type=Path, help="training text (UTF-8 file)")
    train.add_argument("--vocab-size", type=checks.POSITIVE_INT.parse, default=None,
                       help="bpe: total vocab size (256 bytes + merges + specials; required); "
                            "word: the largest vocab allowed; char: ignored")
    train.add_argument("--out", required=True, type=Path, help="where to write the JSON file")
    train.add_argument("--kind", choices=["bpe", "char", "word"], default="bpe")
    train.add_argument("--special", nargs="*", default=[], metavar="TOKEN",
                       help="special tokens, e.g. '<|endoftext|>' '<|user|>'")
    train.add_argument("--min-count", type=checks.POSITIVE_INT.parse, default=1, help="word: drop rarer words")
    train.set_defaults(func=train_handler)

    encode = commands.add_parser("encode", help="print the ids and pieces of a text")
    encode.add_argument("--tok", required=True, type=Path, help="a file written by `train`")
    encode.add_argument("text", help="the text to encode")
    encode.set_defaults(func=encode_handler)


def train_handler(args: argparse.Namespace) -> int:
    if not args.input.is_file():
        raise MissingFileError(f"--input {args.input}: no such file")
    start = time.perf_counter()
    try:
        tok = _train(args)
    except UnicodeDecodeError as err:  # the file is read in chunks while training
        raise UserError(f"--input {args.input} is not UTF-8 text (byte {err.object[err.start]:#04x} of a chunk "
                        "cannot be decoded): convert the file to UTF-8 first") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(args.out)
    print(f"trained a {args.kind} tokenizer with vocab_size {tok.vocab_size} "
          f"({len(tok.special_tokens)} special) in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def _train(args: argparse.Namespace):
    """The tokenizer --kind names, trained on --input."""
    if args.kind == "bpe":
        if args.vocab_size is None:
            raise UserError("--vocab-size is required for a bpe tokenizer (e.g. --vocab-size 4096)")
        tok = BPETokenizer.train(args.input, args.vocab_size, special_tokens=args.special,
                                 verbose=True)
    elif args.kind == "word":
        tok = WordTokenizer.train(args.input, max_vocab=args.vocab_size, min_count=args.min_count,
                                  special_tokens=args.special)
    else:
        tok = CharTokenizer.train(args.input, special_tokens=args.special)
    return tok


def encode_handler(args: argparse.Namespace) -> int:
    if not args.tok.is_file():
        raise MissingFileError(f"--tok {args.tok}: no such file")
    tok = load(args.tok)
    ids = tok.encode(args.text)
    print(f"ids:    {ids}")
    print(f"pieces: {[tok.id_to_token(i) for i in ids]}")
    print(f"{len(ids)} tokens for {len(args.text)} characters ({type(tok).__name__}, "
          f"vocab_size {tok.vocab_size})")
    return 0
