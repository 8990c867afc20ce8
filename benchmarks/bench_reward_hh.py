"""Benchmark: the tiny reward model on REAL human preferences (Anthropic HH-RLHF, harmless-base).

Run:  python benchmarks/bench_reward_hh.py [--data ../shared/data/hh_rlhf_harmless_base_test.jsonl]
      [--seconds 180] [--tokenizer bpe:512] [--block-size 128]

CONTENT WARNING: the HH-RLHF data contains offensive and harmful text (it was collected by
asking people to elicit harmful answers). This script only reads it; it is never copied into
the repository. It splits the pairs 90/10 (seeded), trains a tokenizer on the training
prompts and responses, trains a RewardModel from scratch (no pretraining) with the pairwise
loss for about --seconds, and prints validation pairwise accuracy (chance: 50%). A figure to
read, not a target: the tiny-world RM reaches > 90% because its data is made to be learnable.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time

import minillm.fast

minillm.fast.enable()  # the speed wing, as the `minillm` command runs; before NumPy loads

import minillm  # noqa: E402
from minillm.engine import backend  # noqa: E402
from minillm.tokenizers import chat_template as chat  # noqa: E402
from minillm.data.preference_batches import PreferenceBatches, encode_pairs  # noqa: E402
from minillm.data.readers import read_preferences  # noqa: E402
from minillm.phases.losses import pairwise_loss_stable  # noqa: E402
from minillm.model.gpt import GPTConfig  # noqa: E402
from minillm.engine.optim import AdamW, WarmupCosineSchedule, clip_grad_norm  # noqa: E402
from minillm.model.reward_model import RewardModel  # noqa: E402
from minillm.tokenizers import BPETokenizer, CharTokenizer  # noqa: E402
from minillm.phases.reward import split_scores, validation_metrics  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                            "hh_rlhf_harmless_base_test.jsonl")


def build_tokenizer(spec: str, records) -> object:
    """char or bpe:VOCAB, trained on the training split's text, with the chat tokens added."""
    texts = [t for r in records for t in (r["prompt"], r["chosen"], r["rejected"])]
    kind, _, size = spec.partition(":")
    if kind == "char":
        tok = CharTokenizer.train("".join(texts), unk_token="<unk>")
    elif kind == "bpe":
        tok = BPETokenizer.train(texts[:3000], vocab_size=int(size or 512))  # a sample keeps training quick
    else:
        raise ValueError(f"unknown tokenizer {spec!r}: expected char or bpe[:VOCAB]")
    chat.add_chat_tokens(tok)
    return tok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=180.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--tokenizer", default="bpe:512")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.path.exists(args.data):
        print(f"skipped: {args.data} is missing (the HH-RLHF sample exists only on the project machines; "
              "pass --data to point at a copy of Anthropic/hh-rlhf harmless-base)")
        return 0
    print(f"minillm {minillm.__version__}, {platform.processor() or platform.machine()}, device {backend.device}")
    print("content warning: HH-RLHF contains offensive text; nothing of it is printed here")
    records = list(read_preferences(args.data, skip_bad=True))
    random.Random(args.seed).shuffle(records)
    n_val = len(records) // 10
    train_records, val_records = records[n_val:], records[:n_val]
    start = time.perf_counter()
    tok = build_tokenizer(args.tokenizer, train_records)
    print(f"{len(records)} pairs; tokenizer {args.tokenizer} ({tok.vocab_size} tokens) in "
          f"{time.perf_counter() - start:.1f} s")
    pad = chat.chat_token_ids(tok).pad
    train = encode_pairs(tok, train_records, args.block_size, skip_bad=True)
    val = encode_pairs(tok, val_records, args.block_size, skip_bad=True)
    print(f"train {len(train.chosen)} pairs ({train.truncated} prompts cut, {train.skipped} skipped: a response "
          f"longer than the block of {args.block_size}); validation {len(val.chosen)} pairs")
    train_set, val_set = PreferenceBatches(train, pad), PreferenceBatches(val, pad)
    backend.manual_seed(args.seed)
    rm = RewardModel(GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size,
                               n_layer=2, n_head=4, n_embd=64, dropout=0.1))
    train_loop(rm, train_set, args)
    rm.eval()
    with minillm.no_grad():
        metrics = validation_metrics(rm, val_set, 64)
    print(f"validation: accuracy {metrics['val_accuracy']:.3f} (chance 0.5), mean margin "
          f"{metrics['val_margin']:+.3f}, loss {metrics['val_loss']:.4f} (log 2 = {math.log(2):.4f})")
    return 0


def train_loop(rm: RewardModel, train_set: PreferenceBatches, args) -> None:
    """AdamW with warmup + cosine over --max-steps, stopped early by the --seconds budget."""
    opt = AdamW(rm.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = WarmupCosineSchedule(args.lr, min(50, args.max_steps), args.max_steps, args.lr / 10)
    start, step, losses = time.perf_counter(), 0, []
    rm.train()
    while step < args.max_steps and time.perf_counter() - start < args.seconds:
        opt.set_lr(schedule(step))
        opt.zero_grad()
        ids, lengths = train_set.batch(args.batch_size)
        s_w, s_l = split_scores(rm(ids, lengths))
        loss = pairwise_loss_stable(s_w, s_l)
        loss.backward()
        clip_grad_norm(rm.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            print(f"step {step}: train loss {sum(losses[-50:]) / 50:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(f"trained {step} steps of {args.batch_size} pairs in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
