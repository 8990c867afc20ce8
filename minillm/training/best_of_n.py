"""Phase 3 without training: best-of-n sampling against the reward model.

Lecture 5 §Phase 3 optimises the policy so its samples score high. Best-of-n gets there
without changing a weight: sample n answers from the SFT model, keep the one the reward
model scores highest. It costs n samples per answer at inference time, and its distance
from the SFT model is known in closed form, KL = log n − (n−1)/n nats (`rl.best_of_n_kl`),
which this run also measures from fresh samples. Every RL method must beat it to be worth
its training. Judged like the trained methods (`judge.judge_answers`).
Left out: rejection sampling finetuning (training on the winners), soft best-of-n.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from minillm import chat, checkpoint, rl
from minillm.data.folders import shipped
from minillm.data.readers import read_prompts
from minillm.errors import UserError
from minillm.reward_model import RewardModel
from minillm.training import common, judge



@dataclass
class BestOfNRun:
    """Best-of-n answers to held-out prompts, judged against the SFT model's greedy answers."""

    policy: str                     # the SFT run directory: the model that samples
    reward_model: str               # the reward model's run directory: the judge that picks
    out: str
    n: int = 4
    heldout: str | None = None      # held-out prompts (default: the shipped data/rl/heldout.jsonl)
    max_new_tokens: int = 60
    temperature: float = 1.0
    kl_samples: int = 16            # fresh samples per prompt for the empirical CDF of the KL estimate
    seed: int = 1337
    quiet: bool = False

    def run(self) -> dict:
        start = time.perf_counter()
        if self.n < 1 or self.kl_samples < 1:
            raise UserError(f"best-of-n needs n >= 1 and kl_samples >= 1, got n={self.n}, kl_samples={self.kl_samples}")
        sft = checkpoint.load(self.policy)
        if not chat.uses_chat_template(sft.meta) or sft.tokenizer is None:
            raise UserError(f"{self.policy} is not an SFT checkpoint (no chat template in its meta): "
                             "best-of-n samples from `minillm sft --out`")
        reward_model = checkpoint.load(self.reward_model).model
        if not isinstance(reward_model, RewardModel):
            raise UserError(f"{self.reward_model} holds a {type(reward_model).__name__}, not a reward model")
        policy, tok = sft.model.eval(), sft.tokenizer
        reward_model.eval()
        os.makedirs(self.out, exist_ok=True)
        heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(self.heldout or shipped().held_out())))
        ids = judge.encode_prompts(tok, heldout, policy.config.block_size, self.max_new_tokens)
        end = chat.chat_token_ids(tok).end
        self._say(f"best-of-{self.n}: {self.n} samples for each of {len(heldout)} held-out prompts, the reward "
                  "model keeps one")
        winners, scores = rl.best_of_n(policy, reward_model, ids, self.n, self.max_new_tokens, end,
                                       self.temperature, self.seed)
        answers = [common.first_line(chat.response_text(tok, w)) for w in winners]
        kl = self._measured_kl(policy, reward_model, ids, end, scores.max(axis=1))
        extra = {"algo": f"best-of-{self.n}", "n": self.n, "kl_formula": rl.best_of_n_kl(self.n),
                 "sampled_tokens": sum(len(w) for w in winners)}
        details = (f"The SFT model's greedy answers (first line) against the best of {self.n} of its samples at "
                   f"τ = {self.temperature} by the reward model (first line), to")
        more = (f"The KL is measured as log n + (n−1)·log F̂(r(y_best)) with F̂ the empirical CDF of the reward over "
                f"{self.kl_samples} fresh samples per prompt; the closed form log n − (n−1)/n gives "
                f"{rl.best_of_n_kl(self.n):.3f} nats (exact without reward ties). No training: the cost is "
                f"{self.n} samples per answer.")
        summary, notes, scores_ = judge.judge_answers(self.out, f"best-of-{self.n}", policy, reward_model, tok,
                                                      heldout, answers, kl, extra, details, more)
        summary["seconds"] = time.perf_counter() - start
        self._say(common.format_comparison(scores_["sft"], scores_["rlhf"], ("SFT", f"best-of-{self.n}"))
                  + "\n" + notes + f"\nreport.md, report.json and summary.json are in {self.out}")
        return summary

    def _measured_kl(self, policy, reward_model, ids: list, end: int, winner_scores) -> float:
        """KL(best-of-n ‖ SFT) from kl_samples fresh samples per prompt (`rl.best_of_n_kl_estimate`)."""
        fresh = rl.sample_rollouts(policy, policy, ids, self.kl_samples, self.max_new_tokens, end,
                                   self.temperature, self.seed + 1)
        sample_scores = rl.reward_model_scores(reward_model, fresh.prompt_ids, fresh.responses(), end)
        return rl.best_of_n_kl_estimate(winner_scores, sample_scores.reshape(len(ids), self.kl_samples), self.n)

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
