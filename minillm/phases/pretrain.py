"""Phase 1, pretraining for completion: next-token prediction on a plain text corpus.

Lecture: the model sees a sequence and learns P(x_{t+1} | x_1..x_t) at every position,
with the one-hot cross entropy -log ȳ_t averaged over all n-1 training points of every
window. This file wires the pieces together: read the text, build a tokenizer, split
train/validation by position, fit the n-gram baseline, and run the shared Trainer.
Left out: packing documents, data deduplication, multi-epoch scheduling.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

from minillm.io import checks
from minillm.engine import backend
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.data.folders import shipped
from minillm.data.windows import TokenWindows, split_train_val
from minillm.data.readers import read_text
from minillm.errors import MissingFileError, UserError
from minillm.phases.summaries import PretrainSummary
from minillm.phases.losses import sequence_cross_entropy
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.ngram import NGramLM
from minillm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from minillm.tokenizers import load as load_tokenizer
from minillm.tokenizers.base import ENDOFTEXT
from minillm.phases import presets
from minillm.phases.trainer import Trainer, TrainingDiverged, short_run_note


def build_tokenizer(spec: str, train_text: str, all_text: str):
    """char | word[:MAX_VOCAB] | bpe[:VOCAB] -> a trained tokenizer with <|endoftext|>;
    file:PATH -> the tokenizer saved there (models of other sizes that must share token ids)."""
    kind, _, size = spec.partition(":")
    if kind == "file":
        return load_tokenizer(size)
    if kind == "char":  # the character set of the whole text, so validation has no unknowns
        return CharTokenizer.train(all_text, special_tokens=[ENDOFTEXT])
    if kind == "word":
        return WordTokenizer.train(train_text, max_vocab=int(size) if size else 8192,
                                   special_tokens=[ENDOFTEXT])
    if kind == "bpe":
        return BPETokenizer.train(train_text, vocab_size=int(size) if size else 1024,
                                  special_tokens=[ENDOFTEXT])
    raise UserError(f"unknown tokenizer {spec!r}: expected char, word[:MAX_VOCAB], bpe[:VOCAB] or file:PATH")


def load_corpus(data: str | None, val: str | None):
    """(train text, validation text or None): the shipped tiny world when no data is given."""
    if data is None:
        layout = shipped()
        data, val = layout.pretrain, val or layout.pretrain_val
    if not os.path.exists(data):
        raise MissingFileError(f"no such file or directory: {data}")
    text = read_text(data)
    if not text.strip():
        raise UserError(f"{data} holds no text")
    return text, (read_text(val) if val else None)


def baseline_loss(train_ids, val_ids, vocab_size: int, orders) -> tuple[int, float]:
    """The best (n, validation loss) among n-gram models fitted on the training tokens."""
    results = []
    for n in orders:
        lm = NGramLM(n, smoothing="interpolated").fit(train_ids, vocab_size)
        results.append((lm.loss(val_ids), n))
    loss, n = min(results)
    return n, float(loss)


@dataclass
class PretrainRun:
    """Everything one pretraining run needs; `run()` trains and returns a summary."""

    out: str
    preset: str = presets.COMMAND_PRESET  # a name in phases/presets.py's PRESETS
    data: str | None = None
    val: str | None = None
    tokenizer: str | None = None
    overrides: dict = field(default_factory=dict)   # TrainConfig fields
    model_overrides: dict = field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False  # replace a minillm run already in `out`
    quiet: bool = False

    def settings(self) -> dict:
        """What decides this run's numbers: a resume must give the same (RUN.json keeps them)."""
        return {"preset": self.preset, "data": absolute_paths(self.data), "val": absolute_paths(self.val),
                "tokenizer": self.tokenizer, "overrides": self.overrides, "model_overrides": self.model_overrides}

    def run(self) -> dict:
        preset = presets.get(self.preset)
        # a run shorter than the preset's gets warmup, evaluations and checkpoints that fit inside it
        train_cfg, fitted = presets.phase_settings(self.preset, "pretrain", self.overrides)
        model_fields = {**preset.model, **self.model_overrides}
        check_model_fields(model_fields)
        run_dir = RunDir(self.out, "pretrain", self.settings(), resume=self.resume, overwrite=self.overwrite,
                         quiet=self.quiet)
        if note := short_run_note(fitted):
            self._say(note)
        text, val_text = load_corpus(self.data, self.val)
        if val_text is None:
            text, val_text = split_text(text, 0.1, [ENDOFTEXT])
        tok = build_tokenizer(self.tokenizer or preset.tokenizer, text, text + val_text)
        self._say(f"tokenizer: {type(tok).__name__}, {tok.vocab_size} tokens")
        train_ids, val_ids = tok.encode(text), tok.encode(val_text)
        block = model_fields["block_size"]
        train_windows, val_windows = TokenWindows(train_ids, block), TokenWindows(val_ids, block)
        # The baseline is scored on exactly the validation tokens the model's evaluation reads.
        evaluated = val_ids[: preset.eval_batches * train_cfg.batch_size * block + 1]
        n, base = baseline_loss(train_ids, evaluated, tok.vocab_size, preset.ngram_orders)
        self._say(f"data: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens; "
                  f"{n}-gram baseline validation loss {base:.4f}")
        backend.manual_seed(train_cfg.seed)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, **model_fields))
        run_dir.start()
        trainer = Trainer(
            model, train_cfg, self.out,
            train_batch=lambda rng: train_windows.batch(train_cfg.batch_size, rng),
            loss_fn=lambda m, batch: (sequence_cross_entropy(m(batch[0]), batch[1]), batch[1].size),
            evaluate=lambda m: _evaluate(m, val_windows, train_cfg.batch_size, preset.eval_batches),
            tokenizer=tok, quiet=self.quiet,
            meta={"phase": "pretrain", "preset": self.preset, "baseline_val_loss": base, "baseline_n": n})
        start = time.perf_counter()
        result = trainer.run(resume=self.resume)
        return self._summarise(trainer, result, base, n, time.perf_counter() - start)

    def _summarise(self, trainer, result: dict, base: float, n: int, seconds: float) -> dict:
        model = trainer.model
        params, tokens = model.num_parameters(), result["tokens_seen"]
        flops = model.flops_per_token() * tokens
        summary = PretrainSummary(step=result["step"], tokens_seen=tokens, val_loss=result["val_loss"],
                                  val_ppl=result["val_ppl"], parameters=params, training_flops=flops,
                                  seconds=seconds, baseline_val_loss=base, baseline_n=n)
        with open(os.path.join(self.out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary.to_json(), f, indent=2)
        self._say(f"size: {params:,} parameters, {tokens:,} tokens seen, "
                  f"training compute ≈ 6·N·D + attention = {flops:.3g} FLOPs")
        self._say(f"validation loss {summary.val_loss:.4f} (perplexity {summary.val_ppl:.2f}) "
                  f"against the {n}-gram baseline {base:.4f}; checkpoint, log and loss.png in {self.out}")
        check_against_uniform(summary.val_loss, model.config.vocab_size, self.out)
        return summary.to_json()

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def _evaluate(model: GPT, windows: TokenWindows, batch_size: int, max_batches: int) -> dict:
    """Mean validation cross entropy over the same leading windows each time, and perplexity."""
    total, count = 0.0, 0
    for x, y in windows.sequential_batches(batch_size, max_batches):
        total += sequence_cross_entropy(model(x), y).item() * y.size
        count += y.size
    loss = total / count
    return {"val_loss": loss, "val_ppl": perplexity(loss)}


def check_against_uniform(val_loss: float, vocab_size: int, out: str) -> None:
    """A finite loss can still mean a diverged run: log V is the loss of guessing every token
    equally likely (where a new model starts). Above it: a warning; above twice it (no short
    run from a fresh model gets there without diverging): an error, exit 2."""
    uniform = math.log(vocab_size)
    if val_loss > 2 * uniform:
        raise TrainingDiverged(f"the validation loss {val_loss:.4f} is more than twice that of a uniform guess "
                               f"(log V = {uniform:.4f}): the run diverged, and the model saved in {out} is no "
                               "use; lower --lr and train again with --overwrite")
    if val_loss > uniform:
        print(f"warning: the validation loss {val_loss:.4f} is worse than guessing uniformly "
              f"(log V = {uniform:.4f}): the run diverged or trained too little", file=sys.stderr)


def perplexity(loss: float) -> float:
    """e^loss, infinite where it would overflow a float (a loss above about 709 nats)."""
    return math.exp(loss) if loss < 709 else math.inf


def split_text(text: str, val_fraction: float, special_tokens: list[str]) -> tuple[str, str]:
    """`split_train_val` on text, with the cut moved back to the start of a special token it would
    fall inside, so both halves hold only whole special tokens (the tokenizers read them whole).

    Example: "ab<|endoftext|>cd" cut after "ab<|en" -> ("ab", "<|endoftext|>cd").
    """
    train, _ = split_train_val(text, val_fraction)
    cut = len(train)
    for token in special_tokens:
        start = text.rfind(token, max(0, cut - len(token) + 1), cut + len(token) - 1)
        if start != -1 and start < cut < start + len(token):
            cut = start
    return text[:cut], text[cut:]


# The model fields a user may set (--block-size, --dropout), each with its rule.
MODEL_RULES = {"n_layer": checks.POSITIVE_INT, "n_head": checks.POSITIVE_INT, "n_embd": checks.POSITIVE_INT,
               "block_size": checks.POSITIVE_INT, "dropout": checks.BETA}


def check_model_fields(fields: dict) -> None:
    """Refuse a model size no GPT can have, naming its flag, before any data is read."""
    for name, rule in MODEL_RULES.items():
        rule.check(f"{name} (--{name.replace('_', '-')})", fields.get(name))
