"""Phase 3, part 1: train the reward model r_θ(x, y) on human (here: simulated) preferences.

Lecture, Phase 3: from triples (x, y_w, y_l), with s_w = r_θ(x, y_w) and s_l = r_θ(x, y_l),
minimise L = -log σ(s_w - s_l) averaged over all triples. This file wires it together: load
the SFT run, turn its GPT into a RewardModel (same backbone, scalar head), score chosen and
rejected in one batched pass, run the shared Trainer, then check the result two ways: pairwise
accuracy and a margin histogram on validation pairs, and agreement with the gold labeler on
FRESH responses sampled from the SFT model (what the RM will judge during RLHF).
Left out: reward ensembles, label smoothing, per-token rewards, a separate value head.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace

import numpy

from minillm.io import checks
from minillm.engine import backend
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.data.folders import shipped
from minillm.data import labelers
from minillm.data.gold import gold_score
from minillm.data.preference_batches import PreferenceBatches, encode_pairs, encode_response, pad_rows
from minillm.data.readers import read_preferences, read_prompts
from minillm.errors import UserError
from minillm.phases.losses import mean_margin, pairwise_accuracy, pairwise_loss_stable
from minillm.model.reward_model import RewardModel
from minillm.engine.tensor import Tensor, no_grad
from minillm.phases.common import gold_labelled_pairs, sample_responses
from minillm.phases.summaries import RewardMetrics, RewardSummary
from minillm.phases import presets
from minillm.phases.trainer import TrainConfig, Trainer, short_run_note


# ----- the loss on one stacked batch ----------------------------------------------------

def split_scores(scores):
    """Scores of a stacked batch (2B,) -> (s_w (B,), s_l (B,)): chosen rows first, then rejected."""
    B = scores.shape[0] // 2
    return scores[:B], scores[B:]


def reward_loss(model: RewardModel, batch) -> tuple:
    """Lecture Phase 3: L = mean over pairs of -log σ(s_w - s_l), in the stable softplus form.

    Args:
        batch: (ids (2B, T), lengths (2B,)), chosen rows on top of rejected rows.
    Returns:
        (loss Tensor, number of real tokens read), as the Trainer's loss_fn.
    """
    ids, lengths = batch
    s_w, s_l = split_scores(model(ids, lengths))  # ONE forward pass for both halves
    return pairwise_loss_stable(s_w, s_l), lengths.sum()


def pair_scores(model: RewardModel, batches: PreferenceBatches, batch_size: int):
    """(s_w, s_l) of every pair, in order, as device arrays (N,)."""
    chosen, rejected = [], []
    with no_grad():
        for ids, lengths in batches.sequential_batches(batch_size):
            s_w, s_l = split_scores(model(ids, lengths))
            chosen.append(s_w.data)
            rejected.append(s_l.data)
    return backend.xp.concatenate(chosen), backend.xp.concatenate(rejected)


def validation_metrics(model: RewardModel, batches: PreferenceBatches, batch_size: int) -> dict:
    """val_loss (the pairwise loss), val_accuracy (share with s_w > s_l, a tie counting half), val_margin (mean s_w - s_l)."""
    s_w, s_l = pair_scores(model, batches, batch_size)
    loss = pairwise_loss_stable(Tensor._wrap(s_w), Tensor._wrap(s_l)).item()
    return {"val_loss": loss, "val_accuracy": pairwise_accuracy(s_w, s_l), "val_margin": mean_margin(s_w, s_l)}


# ----- the reward model on any text, and on fresh samples ----------------------------

def score_responses(model: RewardModel, tokenizer, prompt: str, responses: list[str],
                    batch_size: int = 32) -> list[float]:
    """r_θ(prompt, y) for each response y, each read at its <|end|> token."""
    rows = [encode_response(tokenizer, prompt, y, model.config.block_size) for y in responses]
    pad_id = chat.chat_token_ids(tokenizer).pad
    scores = []
    model.eval()
    with no_grad():
        for start in range(0, len(rows), batch_size):
            ids, lengths = pad_rows(rows[start:start + batch_size], pad_id)
            scores += backend.to_numpy(model(ids, lengths).data).tolist()
    return scores


def gold_agreement(reward_model: RewardModel, tokenizer, prompts: list[str], responses: list[list[str]]) -> dict:
    """Share of response pairs the RM orders as the gold labeler does (gold ties left out).

    For each prompt with responses (a, b): agree when sign(r_θ(a) - r_θ(b)) = sign(gold(a) - gold(b)).
    An RM tie on a pair gold separates counts as a disagreement.
    """
    rows, agree, ties = [], 0, 0
    for prompt, (a, b) in zip(prompts, responses):
        g = [gold_score(prompt, a), gold_score(prompt, b)]
        s = score_responses(reward_model, tokenizer, prompt, [a, b])
        if g[0] == g[1]:
            ties += 1
        else:
            agree += (s[0] - s[1]) * (g[0] - g[1]) > 0
        rows.append({"prompt": prompt, "responses": [a, b], "gold": g, "rm": s})
    n = len(prompts) - ties
    return {"agreement": agree / max(n, 1), "pairs": n, "gold_ties": ties, "examples": rows}


# ----- the run -------------------------------------------------------------------------

@dataclass
class RewardRun:
    """Everything one reward-model run needs; `run()` trains, evaluates, reports, returns a summary."""

    init: str                       # the SFT (or pretrained) run directory
    out: str                        # this run's directory: checkpoint, log, loss.png, margins.png, report
    data: str | None = None         # preference pairs .jsonl (default: shipped preferences/train.jsonl)
    val: str | None = None          # validation pairs (default: shipped validation.jsonl)
    prompts: str | None = None      # held-out prompts for RM-gold agreement (default: data/rl/heldout.jsonl)
    epochs: float | None = None     # sets max_steps so each pair is seen this many times on average
    preset: str = presets.COMMAND_PRESET  # a name in phases/presets.py's PRESETS: its settings of this phase
    overrides: dict = field(default_factory=dict)  # TrainConfig fields over the preset's
    agreement_prompts: int | None = None  # use only the first N held-out prompts (None: all)
    on_policy_prompts: int = 0      # label 2 answers of the init model to this many training prompts by gold
    on_policy_source: str | None = None  # where those prompts come from (default: data/rl/train.jsonl)
    skip_bad: bool = False          # skip unreadable or unencodable pairs instead of stopping
    resume: bool = False
    overwrite: bool = False         # replace a minillm run already in `out`
    quiet: bool = False
    labeler: tuple | None = None    # (labelers.Labeler, seed): a flawed labeler labels the on-policy pairs

    def settings(self) -> dict:
        """What decides this run's numbers: a resume must give the same (RUN.json keeps them)."""
        return {"init": absolute_paths(self.init), "data": absolute_paths(self.data), "val": absolute_paths(self.val),
                "prompts": absolute_paths(self.prompts), "epochs": self.epochs, "preset": self.preset,
                "overrides": self.overrides,
                "agreement_prompts": self.agreement_prompts, "on_policy_prompts": self.on_policy_prompts,
                "on_policy_source": absolute_paths(self.on_policy_source), "skip_bad": self.skip_bad}

    def run(self) -> dict:
        checks.POSITIVE.check("epochs (--epochs)", self.epochs)
        checks.POSITIVE_INT.check("agreement_prompts (--agreement-prompts)", self.agreement_prompts)
        checks.NONNEGATIVE_INT.check("on_policy_prompts (--on-policy-prompts)", self.on_policy_prompts)
        train_cfg = presets.phase_settings(self.preset, "rm", self.overrides)[0]  # fitted once the data is read
        run_dir = RunDir(self.out, "reward", self.settings(), {"--init": self.init}, self.resume, self.overwrite,
                         self.quiet)
        start = time.perf_counter()
        init = checkpoint.load_kind(self.init, "gpt", "--init")
        if init.tokenizer is None:
            raise UserError(f"{self.init} must hold a GPT with its tokenizer (an SFT or pretrained run)")
        gpt, tok = init.model, init.tokenizer
        backend.manual_seed(train_cfg.seed)  # new chat-token rows (pretrained init) are seeded too
        if not chat.uses_chat_template(init.meta):
            self._say("the init model knows no chat template: adding the chat tokens")
        chat.add_chat_tokens(tok, gpt)
        # Every input is read and checked before any sampling or training starts.
        train_pairs, val_pairs = self._encode(tok, gpt.config.block_size)
        agreement_prompts = self._read_prompts(self.prompts or shipped().held_out(), self.agreement_prompts)
        on_policy_prompts = (self._read_prompts(self.on_policy_source or shipped().rl, self.on_policy_prompts)
                             if self.on_policy_prompts else [])
        extra = self._on_policy_pairs(gpt, tok, on_policy_prompts, train_cfg.seed) if on_policy_prompts else []
        train, val, counts = self._batches(tok, train_pairs, val_pairs, extra, gpt.config.block_size)
        train_cfg = self._schedule(train_cfg, len(train))
        reward_model = RewardModel.from_gpt(gpt)
        evaluate = lambda m: validation_metrics(m, val, train_cfg.batch_size)  # noqa: E731
        base = evaluate(reward_model)
        self._say(f"before training (zero head, every score 0): val_loss {base['val_loss']:.4f} = log 2")
        run_dir.start()
        trainer = Trainer(reward_model, train_cfg, self.out, train_batch=lambda rng: train.batch(train_cfg.batch_size, rng),
                          loss_fn=reward_loss, evaluate=evaluate, tokenizer=tok, quiet=self.quiet,
                          meta={"phase": "reward", "chat_template": chat.TEMPLATE_NAME,
                                "init": os.path.abspath(self.init), "baseline_val_loss": base["val_loss"]})
        result = trainer.run(resume=self.resume)
        reward_model = trainer.model.eval()
        s_w, s_l = pair_scores(reward_model, val, train_cfg.batch_size)
        margins = backend.to_numpy(s_w - s_l)
        plot_margins(margins, os.path.join(self.out, "margins.png"))
        agreement = self._agreement(gpt, reward_model, tok, agreement_prompts, train_cfg.seed)
        summary = RewardSummary(**result, train_pairs=len(train), val_pairs=len(val), baseline=RewardMetrics(**base),
                                **counts, rm_gold_agreement=agreement["agreement"], agreement_pairs=agreement["pairs"],
                                seconds=time.perf_counter() - start)
        write_report(self.out, summary, agreement, margins)
        self._say(f"validation: accuracy {summary.val_accuracy:.3f}, mean margin {summary.val_margin:.3f}, loss "
                  f"{summary.val_loss:.4f}; RM-gold agreement on fresh SFT samples {agreement['agreement']:.3f} "
                  f"({agreement['pairs']} pairs)\nreport.md, margins.png, loss.png and the checkpoint are in {self.out}")
        return summary.to_json()

    def _read_prompts(self, path: str, limit: int | None) -> list[str]:
        """The first `limit` prompts of a prompts file (all of them when limit is None)."""
        return [r["prompt"] for r in read_prompts(path, self.skip_bad)][:limit]

    def _on_policy_pairs(self, gpt, tok, prompts: list[str], seed: int) -> list[dict]:
        """Preference pairs of the init model's own answers, labelled by the simulated labeler.

        The curated pairs show the RM good and bad answers written by the data generator; the
        policy will be judged on answers it writes itself, which look different.
        """
        self._say(f"labelling 2 sampled answers of the init model to each of {len(prompts)} prompts "
                  "with gold_score (on-policy preference pairs)")
        gpt.eval()
        pairs = gold_labelled_pairs(gpt, tok, prompts, seed + 1)
        if self.labeler is None:
            return pairs
        labeler, labeler_seed = self.labeler  # the data's flawed labeler judges these answers too
        self._say(f"relabelling them with the data's labeler: {labeler.describe()}")
        return labelers.relabel(pairs, labeler, labeler_seed * 2 + 2)

    def _encode(self, tok, block_size: int):
        """(training pairs, validation pairs) of the preference files, encoded for the block."""
        data = self.data or shipped().preferences
        val = self.val or (shipped().preferences_val if self.data is None else None)
        train = encode_pairs(tok, read_preferences(data, self.skip_bad), block_size, self.skip_bad)
        if val is None:  # a user's file without --val: hold out every 10th pair
            valid = replace(train, chosen=train.chosen[::10], rejected=train.rejected[::10])
            keep = [i for i in range(len(train.chosen)) if i % 10]
            train.chosen, train.rejected = [train.chosen[i] for i in keep], [train.rejected[i] for i in keep]
        else:
            valid = encode_pairs(tok, read_preferences(val, self.skip_bad), block_size, self.skip_bad)
        return train, valid

    def _batches(self, tok, train, valid, extra: list[dict], block_size: int):
        """PreferenceBatches of the training pairs plus the on-policy `extra` ones, and of validation."""
        if extra:
            on_policy = encode_pairs(tok, list(extra), block_size, skip_bad=True)
            train.chosen += on_policy.chosen
            train.rejected += on_policy.rejected
            self._say(f"on-policy pairs: {len(on_policy.chosen)} added ({on_policy.skipped} did not fit)")
        self._say(f"data: {len(train.chosen)} training pairs ({train.truncated} with a prompt cut on the left, "
                  f"{train.skipped} skipped: a response longer than the block of {block_size}, "
                  f"{train.bad_records} bad records); {len(valid.chosen)} validation pairs ({valid.skipped} skipped)")
        pad_id = chat.chat_token_ids(tok).pad
        counts = {"skipped": train.skipped, "truncated": train.truncated, "bad_records": train.bad_records,
                  "val_skipped": valid.skipped}
        return PreferenceBatches(train, pad_id), PreferenceBatches(valid, pad_id), counts

    def _schedule(self, cfg: TrainConfig, n_pairs: int) -> TrainConfig:
        cfg, fitted = presets.phase_settings(self.preset, "rm", self.overrides, n_pairs, self.epochs)
        if note := short_run_note(fitted):
            self._say(note)
        return cfg

    def _agreement(self, gpt, reward_model, tok, prompts: list[str], seed: int) -> dict:
        self._say(f"sampling 2 responses for each of {len(prompts)} held-out prompts from {self.init} "
                  "(temperature 1) to compare the RM with the gold labeler")
        gpt.eval()
        responses = sample_responses(gpt, tok, prompts, n=2, temperature=1.0, seed=seed)
        return gold_agreement(reward_model, tok, prompts, responses)

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


# ----- the report ----------------------------------------------------------------------

def plot_margins(margins, png_path: str) -> str:
    """A histogram of s_w - s_l over validation pairs: right of 0 the RM agrees with the label."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's plotting backend is left alone

    margins = numpy.asarray(margins, dtype=float)
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    ax.hist(margins, bins=40, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel("margin s_w - s_l = r(x, y_w) - r(x, y_l)")
    ax.set_ylabel("validation pairs")
    ax.set_title(f"reward margins: {float((margins > 0).mean()):.1%} of {len(margins)} pairs above 0")
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path


def write_report(out_dir: str, summary: RewardSummary, agreement: dict, margins, examples: int = 8) -> None:
    """report.json (summary, margin quantiles, every agreement pair) and report.md (the story)."""
    quantiles = dict(zip(("p10", "p50", "p90"), numpy.percentile(margins, [10, 50, 90]).tolist()))
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
        json.dump({"summary": summary.to_json(), "margin_quantiles": quantiles, "agreement": agreement}, f, indent=2)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary.to_json(), f, indent=2)
    s, base = summary, summary.baseline
    md = ["# Reward model", "", "| validation (pairs from the data) | before | after |", "| --- | ---: | ---: |",
          f"| pairwise accuracy (s_w > s_l, a tie counts half) | {base.val_accuracy:.3f} | {s.val_accuracy:.3f} |",
          f"| mean margin s_w - s_l | {base.val_margin:.3f} | {s.val_margin:.3f} |",
          f"| loss -log σ(s_w - s_l) | {base.val_loss:.3f} | {s.val_loss:.3f} |"]
    md += ["", f"Data: {s.train_pairs} training pairs ({s.truncated} with the prompt cut on the "
           f"left, {s.skipped} skipped: a response longer than the block); {s.val_pairs} "
           f"validation pairs ({s.val_skipped} skipped). Steps: {s.step}; "
           f"{s.seconds:.0f} s in all.", "",
           "Margin quantiles (10/50/90%): " + ", ".join(f"{v:+.2f}" for v in quantiles.values()), "",
           f"**Agreement with the gold labeler on fresh samples: {agreement['agreement']:.3f}** over "
           f"{agreement['pairs']} prompts ({agreement['gold_ties']} gold ties left out). Two responses per "
           "held-out prompt were sampled from the init (SFT) model at temperature 1; agreement is the share "
           "of pairs the RM orders as `gold_score` does. The RM is a proxy of the gold, trained on different "
           "(curated) responses, so this is the figure that predicts how it will judge the policy in RLHF.",
           "", "## Example pairs", ""]
    for row in agreement["examples"][:examples]:
        md.append(f"**{row['prompt']}**")
        md += [f"- gold {g:+.2f}, RM {s:+.2f}: `{y}`" for y, g, s in zip(row["responses"], row["gold"], row["rm"])]
        md.append("")
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))
