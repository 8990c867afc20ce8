"""Phase 3 without a reward model or sampling: DPO, the closed-form sibling of RLHF.

Lecture 5 §Phase 3 trains a reward model on preference pairs, then optimises the policy
against it with a KL leash. DPO (Rafailov et al. 2023) notices that the leashed optimum
π*(y|x) ∝ π_ref(y|x)·e^(r(x,y)/β) lets the reward be written through the policy,
r(x, y) = β·log π(y|x)/π_ref(y|x) + const, and trains the policy directly with the reward
model's pairwise loss on that implicit reward (`losses.dpo_loss`). One supervised loop on
the same preference pairs the reward model learns from: it stands on the shared Trainer.
The evaluation logs the loss, the implicit reward's accuracy and margin, and the chosen and
rejected responses' log-probabilities apart (both may fall: DPO only needs their gap to grow);
each logged training step carries the policy's entropy on its batch's chosen responses.
Left out: IPO and other variants, label smoothing, a reference-free mode.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from minillm.io import checks
from minillm.engine import backend
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.model.sampling import response_log_softmax, token_logprobs
from minillm.phases.rl import rollouts as rl
from minillm.tokenizers.chat_template import ResponseTooLong
from minillm.data.folders import shipped
from minillm.data.readers import read_preferences, read_prompts
from minillm.errors import UserError
from minillm.phases.losses import dpo_loss, implicit_rewards, mean_margin, pairwise_accuracy
from minillm.engine.tensor import Tensor, no_grad
from minillm.phases import common, summaries
from minillm.phases.rl import judge
from minillm.phases import presets
from minillm.phases.trainer import Trainer, short_run_note


@dataclass
class EncodedPairs:
    """Preference pairs split into chat-formatted prompt ids and response ids (<|end|> included)."""

    prompts: list = field(default_factory=list)     # (P,) prompt id lists
    chosen: list = field(default_factory=list)      # (P,) y_w id lists
    rejected: list = field(default_factory=list)    # (P,) y_l id lists
    skipped: int = 0                                # pairs a response of which does not fit the block

    def __len__(self) -> int:
        return len(self.prompts)


def split_example(tokenizer, prompt: str, response: str, block_size: int) -> tuple[list[int], list[int]]:
    """(prompt ids with the template, response ids + <|end|>), together at most block_size long."""
    ids, mask = chat.encode_example(tokenizer, prompt, response, block_size - 1)
    start = mask.index(1)
    return ids[:start], ids[start:]


def encode_pairs(tokenizer, records, block_size: int) -> EncodedPairs:
    """Encode {"prompt", "chosen", "rejected"} records; a pair that does not fit is skipped and counted.

    Both responses keep the same prompt ids (the shorter cut of the two), so their
    log-probabilities are conditioned on the same x.
    """
    out = EncodedPairs()
    for r in records:
        try:
            pw, yw = split_example(tokenizer, r["prompt"], r["chosen"], block_size)
            pl, yl = split_example(tokenizer, r["prompt"], r["rejected"], block_size)
        except ResponseTooLong:
            out.skipped += 1
            continue
        prompt = pw if len(pw) <= len(pl) else pl
        out.prompts.append(prompt)
        out.chosen.append(yw)
        out.rejected.append(yl)
    return out


def pair_logps(model, pairs: EncodedPairs, rows: list[int]):
    """(chosen (B,), rejected (B,)) summed log-probs Σ_t log π(y_t | x, y_<t) of some pairs, in one pass."""
    chosen, rejected, _ = pair_logps_and_entropy(model, pairs, rows)
    return chosen, rejected


def pair_logps_and_entropy(model, pairs: EncodedPairs, rows: list[int]):
    """`pair_logps` and, from the same forward pass, the policy's mean next-token entropy
    H = −Σ_v π(v) log π(v) over the chosen responses' tokens (a float, no gradient)."""
    prompts = [pairs.prompts[i] for i in rows]
    ids, mask = rl.pad_responses([pairs.chosen[i] for i in rows] + [pairs.rejected[i] for i in rows])  # (2B, T)
    log_dist = response_log_softmax(model, prompts + prompts, ids)            # (2B, T, V)
    logps = rl.masked_sum(token_logprobs(log_dist, ids), mask, axis=-1)      # (2B, T) -> (2B,)
    B = len(rows)
    return logps[:B], logps[B:], rl.entropy(log_dist.data[:B], mask[:B])


def reference_logps(reference, pairs: EncodedPairs, batch_size: int = 32):
    """log π_ref of every chosen and rejected response, computed once (π_ref never changes): (P,), (P,)."""
    xp = backend.xp
    chosen, rejected = [], []
    with no_grad():
        for start in range(0, len(pairs), batch_size):
            c, r = pair_logps(reference, pairs, list(range(start, min(start + batch_size, len(pairs)))))
            chosen.append(c.data)
            rejected.append(r.data)
    return xp.concatenate(chosen), xp.concatenate(rejected)


def dpo_metrics(model, pairs: EncodedPairs, ref: tuple, beta: float, batch_size: int = 32) -> dict:
    """Loss, implicit-reward accuracy and margin, the mean log-probs of chosen and rejected responses
    with their change from π_ref (negative: the policy finds them less likely than the SFT model did),
    and the policy's mean next-token entropy on chosen responses (does DPO sharpen the policy?)."""
    xp = backend.xp
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        c, r = pair_logps(model, pairs, list(range(start, min(start + batch_size, len(pairs)))))
        chosen.append(c.data)
        rejected.append(r.data)
    chosen, rejected = xp.concatenate(chosen), xp.concatenate(rejected)
    s_w, s_l = implicit_rewards(chosen, ref[0], beta), implicit_rewards(rejected, ref[1], beta)
    rows = list(range(min(batch_size, len(pairs))))  # the policy's entropy on the first chosen responses
    ids, mask = rl.pad_responses([pairs.chosen[i] for i in rows])
    entropy = rl.entropy(response_log_softmax(model, [pairs.prompts[i] for i in rows], ids), mask)
    loss = dpo_loss(Tensor(chosen), Tensor(rejected), ref[0], ref[1], beta)
    return {"val_loss": loss.item(), "reward_accuracy": pairwise_accuracy(s_w, s_l),
            "reward_margin": mean_margin(s_w, s_l),
            "chosen_logp": float(backend.scalar(chosen.mean())), "rejected_logp": float(backend.scalar(rejected.mean())),
            "chosen_logp_change": float(backend.scalar((chosen - ref[0]).mean())),
            "rejected_logp_change": float(backend.scalar((rejected - ref[1]).mean())), "entropy": entropy}


@dataclass
class DPORun:
    """One DPO run; `run()` trains, compares DPO with SFT on held-out prompts, returns a summary."""

    policy: str                     # the SFT run directory: the policy's start and the frozen reference
    out: str
    data: str | None = None         # preference pairs (default: the shipped preferences/train.jsonl)
    val: str | None = None          # validation pairs (default: shipped validation.jsonl)
    heldout: str | None = None      # held-out prompts for the report (default: data/rl/heldout.jsonl)
    preset: str = presets.COMMAND_PRESET  # a name in phases/presets.py's PRESETS: its DPO settings
    overrides: dict = field(default_factory=dict)  # DPOConfig fields over the preset's (beta, lr, seed, ...)
    on_policy_prompts: int = 0      # add gold-labelled pairs of 2 SFT samples to this many prompts
    on_policy_source: str | None = None  # where those prompts come from (default: data/rl/train.jsonl)
    reward_model: str | None = None  # optional: a reward model run, to report the RM score of the answers
    resume: bool = False
    overwrite: bool = False         # replace a minillm run already in `out`
    quiet: bool = False

    def settings(self) -> dict:
        """What decides this run's numbers: a resume must give the same (RUN.json keeps them)."""
        return {"policy": absolute_paths(self.policy), "data": absolute_paths(self.data),
                "val": absolute_paths(self.val), "heldout": absolute_paths(self.heldout), "preset": self.preset,
                "overrides": self.overrides, "on_policy_prompts": self.on_policy_prompts,
                "on_policy_source": absolute_paths(self.on_policy_source),
                "reward_model": absolute_paths(self.reward_model)}

    def run(self) -> dict:
        start = time.perf_counter()
        checks.NONNEGATIVE_INT.check("on_policy_prompts (--on-policy-prompts)", self.on_policy_prompts)
        cfg, fitted = presets.phase_settings(self.preset, "dpo", self.overrides)  # β and the rest, checked
        self.cfg = cfg  # the resolved settings, which the loss and the on-policy pairs read too
        run_dir = RunDir(self.out, "dpo", self.settings(), {"--policy": self.policy, "--rm": self.reward_model},
                         self.resume, self.overwrite, self.quiet)
        sft = checkpoint.load_sft(self.policy, "--policy", "DPO starts from")
        reward_model = self._reward_model()
        reference, tok = checkpoint.load(self.policy).model.eval(), sft.tokenizer
        block = sft.model.config.block_size
        max_new_tokens = common.fit_new_tokens(cfg.max_new_tokens, block, self._say)  # the report's samples
        # Every file is read (and checked) before any sampling or training starts.
        records = list(read_preferences(self.data or shipped().preferences))
        val = encode_pairs(tok, list(read_preferences(self.val or shipped().preferences_val)), block)
        heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(self.heldout or shipped().held_out())))
        records += self._on_policy_pairs(reference, tok)
        train = encode_pairs(tok, records, block)
        if not len(train) or not len(val):
            raise UserError(f"no preference pair fits the block of {block} tokens: nothing to train DPO on")
        self._say(f"DPO on {len(train)} pairs ({train.skipped} too long, skipped), β = {cfg.beta}; "
                  f"reference log-probabilities of every pair (π_ref is frozen)")
        if note := short_run_note(fitted):
            self._say(note)
        ref_train, ref_val = reference_logps(reference, train), reference_logps(reference, val)
        run_dir.start()
        trainer = Trainer(sft.model, cfg, self.out, train_batch=lambda rng: self._rows(rng, len(train), cfg.batch_size),
                          loss_fn=lambda model, rows: self._loss(model, train, ref_train, rows),
                          evaluate=lambda model: dpo_metrics(model, val, ref_val, cfg.beta),
                          tokenizer=tok, meta={**sft.meta, "phase": "dpo", "init": os.path.abspath(self.policy),
                                                "beta": cfg.beta}, quiet=self.quiet)
        trainer.run(resume=self.resume)
        policy = trainer.model.eval()
        sampling = judge.Sampling(1.0, max_new_tokens, cfg.seed)
        summary, notes, scores = judge.judge_policy(
            self.out, summaries.DPOSummary, "dpo", policy, reference, reward_model, tok, heldout,
            sorted({r["prompt"] for r in records}), sampling,
            {"algo": "dpo", "steps": cfg.max_steps, "beta": cfg.beta, "train_pairs": len(train),
             "tokens_seen": trainer.tokens_seen, "final": summaries.DPOMetrics(**trainer.last_eval)}, start)
        self._say(common.format_comparison(scores["sft"], scores["rlhf"], ("SFT", "DPO")) + "\n" + notes
                  + f"\nreport.md, report.json, log.jsonl, loss.png and the checkpoint are in {self.out}")
        return summary.to_json()

    @staticmethod
    def _rows(rng, n: int, batch_size: int) -> list[int]:
        """B distinct pairs at random (`permutation`: a method the GPU's generator has too)."""
        return backend.to_numpy(rng.permutation(n)[:min(batch_size, n)]).tolist()

    def _loss(self, model, pairs: EncodedPairs, ref: tuple, rows: list[int]):
        """(the DPO loss of a batch of pairs, its response tokens, {"entropy": on its chosen responses})."""
        chosen, rejected, entropy = pair_logps_and_entropy(model, pairs, rows)
        index = backend.xp.asarray(rows)
        tokens = sum(len(pairs.chosen[i]) + len(pairs.rejected[i]) for i in rows)
        return dpo_loss(chosen, rejected, ref[0][index], ref[1][index], self.cfg.beta), tokens, {"entropy": entropy}

    def _on_policy_pairs(self, reference, tok) -> list[dict]:
        if not self.on_policy_prompts:
            return []
        prompts = [r["prompt"] for r in read_prompts(self.on_policy_source or shipped().rl)][:self.on_policy_prompts]
        self._say(f"labelling 2 sampled SFT answers to each of {len(prompts)} prompts with gold_score "
                  "(on-policy preference pairs)")
        return common.gold_labelled_pairs(reference, tok, prompts, self.cfg.seed + 1)

    def _reward_model(self):
        if self.reward_model is None:
            return None
        return checkpoint.load_kind(self.reward_model, "reward_model", "--rm").model

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
