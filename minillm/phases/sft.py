"""Phase 2, supervised finetuning (SFT): teach a pretrained model to answer, not just continue.

Lecture 5 §Phase 2: asked "How to make pasta", a pretrained model may add context, ask more
questions or answer. SFT trains it on demonstrations (prompt, response), laid out by the
chat template, with the cross entropy of the RESPONSE tokens only (a loss mask). A record
may also be a conversation of several turns (`messages`): one sequence whose loss counts
every assistant turn. This file wires it together: load the pretrained run, add the chat
tokens, encode the pairs, run the shared Trainer, and compare held-out answers before and
after (report.json, report.md).
Left out: adapters (LoRA), packing pairs into one row, rejection sampling.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

from minillm.io import checks
from minillm.engine import backend
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.data.folders import shipped
from minillm.data.readers import Records, read_demonstrations
from minillm.data.sft_batches import IGNORE_INDEX, EncodedDemonstrations, SFTBatches, encode_demonstrations
from minillm.errors import UserError
from minillm.phases.losses import NORMALIZATIONS, sft_loss
from minillm.phases import common
from minillm.phases.summaries import AnswerScores, SFTSummary
from minillm.phases import presets
from minillm.phases.trainer import TrainConfig, Trainer, short_run_note


# ----- the data ------------------------------------------------------------------------

def read_files(paths, skip_bad: bool) -> Records:
    """The demonstrations of one file or of several, in order (their bad lines counted together)."""
    records = Records()
    for path in [paths] if isinstance(paths, str) else paths:
        part = read_demonstrations(path, skip_bad)
        records += part
        records.skipped += part.skipped
    return records


def validation_loss(model, batches: SFTBatches, batch_size: int, normalize: str) -> dict:
    """The response-only loss over every validation pair, weighted as in training."""
    total, weight = 0.0, 0.0
    for x, y in batches.sequential_batches(batch_size):
        w = float((y != IGNORE_INDEX).sum()) if normalize == "token" else len(x)
        total += sft_loss(model(x), y, normalize).item() * w
        weight += w
    return {"val_loss": total / max(weight, 1.0)}


# ----- the run -------------------------------------------------------------------------

@dataclass
class SFTRun:
    """Everything one SFT run needs; `run()` trains, evaluates before/after and returns a summary."""

    init: str                       # the pretrained run directory (or checkpoint directory)
    out: str                        # this run's directory: checkpoint, log, loss.png, report
    data: str | list | None = None  # demonstrations .jsonl, one or several (default: shipped sft/ + chat/ train)
    val: str | list | None = None   # validation demonstrations (default: shipped validation files)
    test: str | None = None         # held-out prompts for before/after (default: shipped test.jsonl)
    epochs: float | None = None     # sets max_steps so each pair is seen this many times on average
    normalize: str = "token"        # "token" or "sequence" (see sft_loss)
    preset: str = presets.COMMAND_PRESET  # a name in phases/presets.py's PRESETS: its settings of this phase
    overrides: dict = field(default_factory=dict)  # TrainConfig fields over the preset's
    eval_prompts: int | None = None  # evaluate only the first N held-out prompts (None: all)
    skip_bad: bool = False          # skip unreadable lines of the data files instead of stopping
    resume: bool = False
    overwrite: bool = False         # replace a minillm run already in `out`
    quiet: bool = False

    def settings(self) -> dict:
        """What decides this run's numbers: a resume must give the same (RUN.json keeps them)."""
        return {"init": absolute_paths(self.init), "data": absolute_paths(self.data), "val": absolute_paths(self.val),
                "test": absolute_paths(self.test), "epochs": self.epochs, "normalize": self.normalize,
                "preset": self.preset, "overrides": self.overrides, "eval_prompts": self.eval_prompts,
                "skip_bad": self.skip_bad}

    def run(self) -> dict:
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        checks.POSITIVE.check("epochs (--epochs)", self.epochs)
        checks.POSITIVE_INT.check("eval_prompts (--eval-prompts)", self.eval_prompts)
        train_cfg = presets.phase_settings(self.preset, "sft", self.overrides)[0]  # fitted once the data is read
        run_dir = RunDir(self.out, "sft", self.settings(), {"--init": self.init}, self.resume, self.overwrite,
                         self.quiet)
        start = time.perf_counter()
        pre = checkpoint.load_kind(self.init, "gpt", "--init")
        if pre.tokenizer is None:
            raise UserError(f"the checkpoint in {self.init} has no tokenizer; SFT needs it to encode text")
        model, tok = pre.model, pre.tokenizer
        # Every input is read and checked before any work: the tokenizer gets the chat tokens
        # now, the model only after it has answered as the pretrained model it is.
        chat.add_chat_tokens(tok)
        train, val = self._encode(tok, model.config.block_size)
        prompts, references = self._held_out()
        self._say(f"answering {len(prompts)} held-out prompts with the pretrained model (raw prompts)")
        before = common.answer_prompts(model, tok, prompts, use_template=chat.uses_chat_template(pre.meta))
        backend.manual_seed(train_cfg.seed)  # the new embedding rows' noise is seeded too
        chat.add_chat_tokens(tok, model)
        train_cfg = self._schedule(train_cfg, len(train.examples))
        pad_id = chat.chat_token_ids(tok).pad
        train_set, val_set = SFTBatches(train.examples, pad_id), SFTBatches(val.examples, pad_id)
        evaluate = lambda m: validation_loss(m, val_set, train_cfg.batch_size, self.normalize)  # noqa: E731
        base = evaluate(model)["val_loss"]  # before any SFT step: the line the curves should fall from
        self._say(f"response-only validation loss before SFT: {base:.4f}")
        run_dir.start()
        trainer = Trainer(
            model, train_cfg, self.out, train_batch=lambda rng: train_set.batch(train_cfg.batch_size, rng),
            loss_fn=lambda m, b: (sft_loss(m(b[0]), b[1], self.normalize), (b[1] != IGNORE_INDEX).sum()),
            evaluate=evaluate, tokenizer=tok, quiet=self.quiet,
            meta={"phase": "sft", "chat_template": chat.TEMPLATE_NAME, "init": os.path.abspath(self.init),
                  "normalize": self.normalize, "baseline_val_loss": base, "skipped": train.skipped,
                  "truncated": train.truncated})
        result = trainer.run(resume=self.resume)
        self._say("answering the held-out prompts with the SFT model (chat template)")
        after = common.answer_prompts(trainer.model, tok, prompts, use_template=True)
        return self._report(result, prompts, references, before, after, train, base, start)

    def _held_out(self):
        test = self.test or shipped().sft_test
        prompts, references = common.held_out_prompts(read_demonstrations(test, self.skip_bad))
        return prompts[:self.eval_prompts], references

    def _encode(self, tok, block_size: int):
        layout = shipped()
        data = self.data or [f for f in (layout.sft, layout.chat) if f]
        val = self.val or ([f for f in (layout.sft_val, layout.chat_val) if f] if self.data is None else None)
        train = encode_demonstrations(tok, read_files(data, self.skip_bad), block_size, self.skip_bad)
        if val is None:  # a user's file without --val: hold out every 10th pair
            examples = train.examples
            train.examples = [e for i, e in enumerate(examples) if i % 10]
            valid = EncodedDemonstrations([e for i, e in enumerate(examples) if i % 10 == 0])
        else:
            valid = encode_demonstrations(tok, read_files(val, self.skip_bad), block_size, self.skip_bad)
        self._say(f"data: {len(train.examples)} training examples ({train.truncated} with the prompt cut "
                  f"on the left or early turns dropped to fit, {train.skipped} skipped: response longer than the block of "
                  f"{block_size}, {train.bad_records} bad lines); {len(valid.examples)} validation examples")
        return train, valid

    def _schedule(self, cfg: TrainConfig, n_pairs: int) -> TrainConfig:
        cfg, fitted = presets.phase_settings(self.preset, "sft", self.overrides, n_pairs, self.epochs)
        if note := short_run_note(fitted):
            self._say(note)
        return cfg

    def _report(self, result, prompts, references, before, after, train, base, start) -> dict:
        scores = {"before": common.score_answers(prompts, before, references),
                  "after": common.score_answers(prompts, after, references)}
        summary = SFTSummary(step=result["step"], tokens_seen=result["tokens_seen"], val_loss=result["val_loss"],
                             baseline_val_loss=base, train_pairs=len(train.examples), skipped=train.skipped,
                             truncated=train.truncated, seconds=time.perf_counter() - start,
                             before=AnswerScores(**scores["before"]), after=AnswerScores(**scores["after"]))
        brief = {k: v for k, v in summary.to_json().items() if k not in scores}  # the figures without the answers
        report = {**scores, "summary": brief, "init": self.init, "test": self.test or "shipped test.jsonl"}
        notes = ("before: the pretrained model, given the raw prompt (it knows no template); "
                 "after: the SFT model, given the chat template. Greedy decoding; the answer is the "
                 "first non-empty line of the continuation. Direct answer: gold >= 0.5. Answer form: no "
                 "dodge, question, rudeness, rambling, repetition or garbage (right or wrong). Exact "
                 "match: factual prompts (facts, numbers, sums) answered with an accepted answer.")
        common.write_report(self.out, report, prompts, {"before": before, "after": after},
                            "SFT: held-out answers before and after", notes)
        with open(os.path.join(self.out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump({**brief, **{f"{k}_{m}": v[m] for k, v in scores.items()
                                   for m in ("mean_gold", "direct_rate", "answer_form", "exact_match")}}, f, indent=2)
        self._say(f"held-out prompts ({len(prompts)}): before = pretrained, raw prompt; after = SFT, template\n"
                  + common.format_comparison(scores["before"], scores["after"])
                  + f"\nreport.md, report.json, log.jsonl, loss.png and the checkpoint are in {self.out}")
        return summary.to_json()

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
