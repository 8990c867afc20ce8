"""n-gram baselines for the `shakespeare-char` quality run, on the tokens its evaluation reads.

Fits interpolated n-gram models (n = 1..5) on the training 90% of a text and prints each
one's mean cross entropy on the leading validation tokens that `minillm pretrain`'s
evaluation scores (eval_batches x batch_size x block_size + 1), and on the whole validation
split, so the transformer's validation loss can be read against every order.

    python benchmarks/ngram_baselines.py path/to/tinyshakespeare.txt
"""
from __future__ import annotations

import argparse

from minillm.data.windows import split_train_val
from minillm.model.ngram import NGramLM
from minillm.phases.presets import PRESETS
from minillm.phases.pretrain import build_tokenizer, load_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text", help="a UTF-8 text file")
    parser.add_argument("--preset", default="shakespeare-char", choices=list(PRESETS))
    parser.add_argument("--max-n", type=int, default=5)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    text, _ = load_corpus(args.text, None)
    train, val = split_train_val(text, 0.1)
    tok = build_tokenizer(preset.tokenizer, train, train + val)
    train_ids, val_ids = tok.encode(train), tok.encode(val)
    evaluated = val_ids[: preset.eval_batches * preset.pretrain.batch_size * preset.model["block_size"] + 1]
    print(f"{len(train_ids):,} training tokens; {len(evaluated):,} evaluated / {len(val_ids):,} validation tokens")
    for n in range(1, args.max_n + 1):
        lm = NGramLM(n, smoothing="interpolated").fit(train_ids, tok.vocab_size)
        print(f"{n}-gram: {lm.loss(evaluated):.3f} on the evaluated tokens, {lm.loss(val_ids):.3f} on all")


if __name__ == "__main__":
    main()
