"""Phase 3 without training: best-of-n sampling against the reward model.

Lecture 5 §Phase 3 optimises the policy so its samples score high. Best-of-n gets there
without changing a weight: sample n answers from the SFT model, keep the one the reward
model scores highest. It costs n samples per answer at inference time, and its distance
from the SFT model is known in closed form, KL = log n − (n−1)/n nats (`rl_best_of_n.best_of_n_kl`),
which this run also measures from fresh samples. Every RL method must beat it to be worth
its training. Judged like the trained methods (`judge.judge_answers`).

The samples are drawn at a temperature τ. At τ < 1 they are sharper than the SFT model's own
(and closer to its greedy answer), so the closed form is the distance to that sharpened
distribution π_τ; the run also measures the distance to the SFT model itself,
KL(π_n ‖ π) = KL(π_n ‖ π_τ) + E_{y~π_n}[log π_τ(y) − log π(y)]. And it diagnoses its own
answers (`diagnose`): the gold of one sample at τ, of the reward model's pick, and of the pick
a perfect reward model (the gold labeler itself) would make among the same n samples.
Left out: rejection sampling finetuning (training on the winners), soft best-of-n.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from minillm.io import checks
from minillm.engine import backend
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.model.sampling import response_log_softmax, response_logprobs, token_logprobs
from minillm.phases.rl import rollouts as rl, best_of_n as rl_best_of_n
from minillm.data.folders import shipped
from minillm.data.gold import gold_score
from minillm.data.readers import read_prompts
from minillm.errors import UserError
from minillm.engine.tensor import no_grad
from minillm.phases import common, summaries
from minillm.phases.rl import judge


def diagnose(prompts: list[str], candidates: list[str], rm_scores) -> dict:
    """Where best-of-n's gold comes from, on its own n candidate answers to each of B prompts.

    Args:
        prompts: B prompts. candidates: B·n answers, row i answering prompt i // n.
        rm_scores: (B, n) the reward model's scores of the candidates.
    Returns:
        {"sample_gold": mean gold of ONE sample (over all B·n): what sampling at τ alone gives,
         "rm_pick_gold": mean gold of the reward model's picks (best-of-n's answers),
         "oracle_gold": mean gold of the gold labeler's picks: the ceiling of a perfect reward model,
         "rm_pick_is_oracle": share of prompts where the reward model's pick has the top gold of its n}.
    """
    n = rm_scores.shape[1]
    if len(candidates) != len(prompts) * n:
        raise UserError(f"{len(candidates)} candidates do not make {n} answers to each of {len(prompts)} prompts")
    gold = np.asarray([gold_score(p, c) for p, c in zip((p for p in prompts for _ in range(n)), candidates)])
    gold = gold.reshape(-1, n)                                                   # (B·n,) -> (B, n)
    rm_pick = np.asarray(rl_best_of_n.pick_best(gold.reshape(-1).tolist(), backend.to_numpy(rm_scores)))  # (B,)
    oracle = gold.max(axis=1)                                                    # (B,) = pick_best(gold, gold)
    return {"sample_gold": float(gold.mean()), "rm_pick_gold": float(rm_pick.mean()),
            "oracle_gold": float(oracle.mean()), "rm_pick_is_oracle": float((rm_pick == oracle).mean())}


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
    resume: bool = False            # rerun into its own directory (same settings): nothing to continue, all redone
    overwrite: bool = False         # replace a minillm run already in `out`
    quiet: bool = False

    def settings(self) -> dict:
        """What decides this run's numbers (RUN.json keeps them)."""
        return {"policy": absolute_paths(self.policy), "reward_model": absolute_paths(self.reward_model),
                "n": self.n, "heldout": absolute_paths(self.heldout), "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "kl_samples": self.kl_samples, "seed": self.seed}

    def run(self) -> dict:
        start = time.perf_counter()
        checks.POSITIVE_INT.check("n", self.n)
        checks.POSITIVE_INT.check("kl_samples", self.kl_samples)
        checks.POSITIVE_INT.check("max_new_tokens", self.max_new_tokens)
        checks.SEED.check("seed", self.seed)
        if not (checks.POSITIVE.problem(self.temperature) is None):
            raise UserError(f"best-of-n samples at a finite temperature > 0 (n greedy answers would be one), "
                            f"got {self.temperature}")
        run_dir = RunDir(self.out, "best-of-n", self.settings(), {"policy": self.policy, "reward_model": self.reward_model},
                         self.resume, self.overwrite, self.quiet)
        sft = checkpoint.load_sft(self.policy, "policy", "best-of-n samples from")
        reward_model = checkpoint.load_kind(self.reward_model, "reward_model", "reward_model").model
        policy, tok = sft.model, sft.tokenizer
        self.max_new_tokens = common.fit_new_tokens(self.max_new_tokens, policy.config.block_size, self._say)
        run_dir.start()
        heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(self.heldout or shipped().held_out())))
        ids = judge.encode_prompts(tok, heldout, policy.config.block_size, self.max_new_tokens)
        end = chat.chat_token_ids(tok).end
        self._say(f"best-of-{self.n}: {self.n} samples for each of {len(heldout)} held-out prompts, the reward "
                  "model keeps one")
        responses, scores = rl_best_of_n.best_of_n_candidates(policy, reward_model, ids, self.n,
                                                              self.max_new_tokens, end, self.temperature, self.seed)
        candidates = [common.first_line(chat.response_text(tok, r)) for r in responses]  # B·n
        answers, winners = rl_best_of_n.pick_best(candidates, scores), rl_best_of_n.pick_best(responses, scores)
        kl_sampled = self._measured_kl(policy, reward_model, ids, end, scores.max(axis=1))
        tempering, entropy = self._tempering(policy, ids, winners)
        extra = {"algo": f"best-of-{self.n}", "n": self.n, "temperature": self.temperature,
                 "kl_to_sampled": kl_sampled, "kl_formula": rl_best_of_n.best_of_n_kl(self.n), "entropy": entropy,
                 "sampled_tokens": sum(len(w) for w in winners), **diagnose(heldout, candidates, scores)}
        details = (f"The SFT model's greedy answers (first line) against the best of {self.n} of its samples at "
                   f"τ = {self.temperature} by the reward model (first line), to")
        more = (f"KL(best-of-{self.n} ‖ SFT sampled at τ = {self.temperature}) is measured as the mean of "
                f"log π_n/π at the winners' rewards, from the empirical CDF of the reward over {self.kl_samples} "
                f"fresh samples per prompt (tied rewards counted as ties): {kl_sampled:.3f} nats; the closed form "
                f"log n − (n−1)/n gives {extra['kl_formula']:.3f} (exact without reward ties, an upper bound "
                f"with them). The KL to the SFT model itself adds "
                f"E[log π_τ(y) − log π(y)] over the winners, {tempering:.3f} nats (0 at τ = 1). "
                f"Where the gold comes from, on the same {self.n} samples per prompt: one sample "
                f"{extra['sample_gold']:.3f}, the reward model's pick {extra['rm_pick_gold']:.3f}, the gold "
                f"labeler's pick (a perfect reward model) {extra['oracle_gold']:.3f}; the reward model picked a "
                f"top-gold sample for {extra['rm_pick_is_oracle']:.0%} of the prompts. No training: the cost is "
                f"{self.n} samples per answer.")
        summary, notes, scores_ = judge.judge_answers(self.out, summaries.BestOfNSummary, f"best-of-{self.n}", policy,
                                                      reward_model, tok, heldout, answers, kl_sampled + tempering,
                                                      extra, details, more, start)
        self._say(common.format_comparison(scores_["sft"], scores_["rlhf"], ("SFT", f"best-of-{self.n}"))
                  + "\n" + notes + f"\nreport.md, report.json and summary.json are in {self.out}")
        return summary.to_json()

    def _measured_kl(self, policy, reward_model, ids: list, end: int, winner_scores) -> float:
        """KL(best-of-n ‖ π_τ), π_τ the SFT model sampled at τ, from kl_samples fresh samples of π_τ per
        prompt (`rl_best_of_n.best_of_n_kl_estimate`): the distance the closed form log n − (n−1)/n predicts."""
        fresh = rl.sample_rollouts(policy, None, ids, self.kl_samples, self.max_new_tokens, end,
                                   self.temperature, self.seed + 1)
        sample_scores = rl.reward_model_scores(reward_model, fresh.prompt_ids, fresh.responses(), end)
        sample_scores = sample_scores.reshape(len(ids), self.kl_samples)            # (B·m,) -> (B, m)
        return rl_best_of_n.best_of_n_kl_estimate(winner_scores, sample_scores, self.n)

    def _tempering(self, policy, ids: list, winners: list[list[int]]) -> tuple[float, float]:
        """(E_{y~π_n}[log π_τ(y) − log π(y)], the entropy of π_τ per token along the winners).

        The first is what sampling at τ adds to the KL to the SFT model π: KL(π_n ‖ π) =
        KL(π_n ‖ π_τ) + E_{y~π_n}[log π_τ(y) − log π(y)], exactly; the winners are samples of π_n,
        and log π(y) = Σ_t log π(y_t | x, y_<t) over the response. It is 0 at τ = 1.
        """
        response_ids, mask = rl.pad_responses(winners)                             # (B, T)
        with no_grad():
            log_dist_tau = response_log_softmax(policy, ids, response_ids, self.temperature)  # (B, T, V)
            tempered = token_logprobs(log_dist_tau, response_ids).data           # (B, T)
            own = tempered if self.temperature == 1.0 else response_logprobs(policy, ids, response_ids).data
        gap = rl.masked_sum(tempered - own, mask, axis=-1)                          # (B, T) -> (B,)
        return float(backend.scalar(gap.mean())), rl.entropy(log_dist_tau, mask)

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
