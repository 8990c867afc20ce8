"""Benchmark: BPE training and encoding speed, beside Hugging Face `tokenizers` and tiktoken.

Run:  python benchmarks/bench_tokenizer.py --input path/to/tinyshakespeare.txt

Prints the seconds to train a byte-level BPE to --vocab-size (default 4,096) and the encode
throughput in MB/s (first pass with an empty pre-token cache, then a warm pass). Where
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


def timed(fn, *args, **kwargs):
    """Run fn once; return (result, seconds)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_minillm(text: str, vocab_size: int) -> dict:
    tok, train_s = timed(BPETokenizer.train, text, vocab_size, special_tokens=["<|endoftext|>"])
    ids, cold_s = timed(tok.encode, text)
    _, warm_s = timed(tok.encode, text)
    assert tok.decode(ids) == text, "round trip failed"
    return {"tok": tok, "ids": ids, "train_s": train_s, "cold_s": cold_s, "warm_s": warm_s}


def bench_hf(text: str, vocab_size: int) -> dict | None:
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
    _, train_s = timed(tok.train_from_iterator, [text], trainer)
    encoding, encode_s = timed(tok.encode, text)
    return {"train_s": train_s, "encode_s": encode_s, "n_ids": len(encoding.ids)}


def bench_tiktoken(text: str, tok: BPETokenizer, our_ids: list[int]) -> dict | None:
    try:
        import tiktoken
    except ImportError:
        return None
    ranks = {token: i for i, token in tok.vocab.items() if i < 256 + len(tok.merges)}
    enc = tiktoken.Encoding(name="minillm-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens=dict(tok.special_tokens))
    ids, encode_s = timed(enc.encode_ordinary, text)
    same = sum(a == b for a, b in zip(ids, our_ids))
    return {"encode_s": encode_s, "identical": ids == our_ids,
            "agree": same / max(len(our_ids), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path,
                        help="a UTF-8 text of about 1 MB (e.g. tinyshakespeare.txt)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    args = parser.parse_args()
    text = args.input.read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    print(f"input: {args.input} ({mb:.2f} MB), vocab_size {args.vocab_size}")

    ours = bench_minillm(text, args.vocab_size)
    print(f"minillm   train {ours['train_s']:6.2f} s   encode {mb / ours['cold_s']:6.2f} MB/s "
          f"(cold cache), {mb / ours['warm_s']:6.2f} MB/s (warm)   {len(ours['ids'])} ids")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = bench_hf(text, args.vocab_size)
    if hf is None:
        print("tokenizers (HF) not installed: pip install tokenizers")
    else:
        print(f"HF        train {hf['train_s']:6.2f} s   encode {mb / hf['encode_s']:6.2f} MB/s   "
              f"{hf['n_ids']} ids   (minillm trains {ours['train_s'] / hf['train_s']:.1f}x slower)")

    tk = bench_tiktoken(text, ours["tok"], ours["ids"])
    if tk is None:
        print("tiktoken not installed: pip install tiktoken")
    else:
        print(f"tiktoken  (our merges)       encode {mb / tk['encode_s']:6.2f} MB/s   "
              f"(minillm encodes {ours['cold_s'] / tk['encode_s']:.1f}x slower cold, "
              f"{ours['warm_s'] / tk['encode_s']:.1f}x warm)   "
              f"same ids: {tk['identical']} ({tk['agree']:.2%} of positions)")


if __name__ == "__main__":
    main()
