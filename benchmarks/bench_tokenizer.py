"""Benchmark: BPE training and encoding speed, beside Hugging Face `tokenizers` and tiktoken.

Run:  python benchmarks/bench_tokenizer.py --input path/to/tinyshakespeare.txt
      python benchmarks/bench_tokenizer.py --input tinyshakespeare.txt --encode other.txt --encode-mb 1

Prints the seconds to train a byte-level BPE to --vocab-size (default 4,096) and the encode
throughput in MB/s (with an empty pre-token cache, and warm), each the best of --repeats runs,
on --encode's text if given (a text unlike the training text: most of its words miss the cache),
else on the training text; the cold figure is given for the encoder and for its explicit twin
(`encode_pretoken`, the lesson's version), timed alternately. Where
installed, it trains HF `tokenizers` on the same text, and builds a tiktoken Encoding from
OUR merges (tiktoken cannot download its own here) to compare encode speed on identical ids.
Neither package is a minillm dependency: `pip install tokenizers tiktoken` to include them.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from minillm.tokenizers import GPT2_PATTERN, BPETokenizer


def timed(repeats, fn, *args, **kwargs):
    """Run fn `repeats` times; return (last result, fastest seconds).

    The best run is the fair figure: other processes can only slow a run down.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return result, best


def bench_minillm(text: str, vocab_size: int, repeats: int, encode_text: str) -> dict:
    tok, train_s = timed(repeats, BPETokenizer.train, text, vocab_size,
                         special_tokens=["<|endoftext|>"])

    def fresh(twin: bool = False) -> BPETokenizer:  # a fresh copy starts with an empty pre-token cache
        copy = BPETokenizer(tok.merge_ids, dict(tok.special_tokens))
        if twin:  # the explicit encoder in place of the fast one, for the comparison only
            copy._encode_pretoken_fast = copy.encode_pretoken
        return copy

    cold_s = twin_s = float("inf")
    for _ in range(repeats):  # alternate, so both see the same machine load
        ids, seconds = timed(1, lambda: fresh().encode(encode_text))
        cold_s = min(cold_s, seconds)
        twin_ids, seconds = timed(1, lambda: fresh(twin=True).encode(encode_text))
        twin_s = min(twin_s, seconds)
    assert ids == twin_ids, "the fast encoder and its twin disagree"
    _, warm_s = timed(repeats, tok.encode, encode_text)
    assert tok.decode(ids) == encode_text, "round trip failed"
    return {"tok": tok, "ids": ids, "train_s": train_s, "cold_s": cold_s, "twin_s": twin_s, "warm_s": warm_s}


def bench_hf(text: str, vocab_size: int, repeats: int) -> dict | None:
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return None
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    _, train_s = timed(repeats, tok.train_from_iterator, [text], trainer)
    encoding, encode_s = timed(repeats, tok.encode, text)
    return {"train_s": train_s, "encode_s": encode_s, "n_ids": len(encoding.ids)}


def bench_tiktoken(text: str, tok: BPETokenizer, our_ids: list[int], repeats: int) -> dict | None:
    try:
        import tiktoken
    except ImportError:
        return None
    ranks = {token: i for i, token in tok.vocab.items() if i < 256 + len(tok.merges)}
    enc = tiktoken.Encoding(name="minillm-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens=dict(tok.special_tokens))
    ids, encode_s = timed(repeats, enc.encode_ordinary, text)
    same = sum(a == b for a, b in zip(ids, our_ids))
    return {"encode_s": encode_s, "identical": ids == our_ids,
            "agree": same / max(len(our_ids), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path,
                        help="a UTF-8 text of about 1 MB (e.g. tinyshakespeare.txt)")
    parser.add_argument("--encode", type=Path, help="encode this text instead of the training text")
    parser.add_argument("--encode-mb", type=float, default=1.0, help="encode the first MB of --encode")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    text = args.input.read_text(encoding="utf-8")
    encode_text = text
    if args.encode:
        encode_text = args.encode.read_bytes()[:int(args.encode_mb * 1e6)].decode("utf-8", errors="ignore")
    mb = len(encode_text.encode("utf-8")) / 1e6
    print(f"train on: {args.input} ({len(text.encode()) / 1e6:.2f} MB), vocab_size {args.vocab_size}; "
          f"encode: {args.encode or args.input} ({mb:.2f} MB); best of {args.repeats} runs")

    ours = bench_minillm(text, args.vocab_size, args.repeats, encode_text)
    print(f"minillm   train {ours['train_s']:6.2f} s   encode {mb / ours['cold_s']:6.2f} MB/s "
          f"(cold cache; explicit twin {mb / ours['twin_s']:.2f}), {mb / ours['warm_s']:6.2f} MB/s (warm)   "
          f"{len(ours['ids'])} ids")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = bench_hf(text, args.vocab_size, args.repeats)
    if hf is None:
        print("tokenizers (HF) not installed: pip install tokenizers")
    else:
        print(f"HF        train {hf['train_s']:6.2f} s   encode {mb / hf['encode_s']:6.2f} MB/s   "
              f"{hf['n_ids']} ids   (minillm trains {ours['train_s'] / hf['train_s']:.1f}x slower)")

    tk = bench_tiktoken(encode_text, ours["tok"], ours["ids"], args.repeats)
    if tk is None:
        print("tiktoken not installed: pip install tiktoken")
    else:
        print(f"tiktoken  (our merges)       encode {mb / tk['encode_s']:6.2f} MB/s   "
              f"(minillm encodes {ours['cold_s'] / tk['encode_s']:.1f}x slower cold, "
              f"{ours['warm_s'] / tk['encode_s']:.1f}x warm)   "
              f"same ids: {tk['identical']} ({tk['agree']:.2%} of positions)")


if __name__ == "__main__":
    main()
