"""Phase 3, RLHF: optimise the SFT model against the reward model, with a KL leash.

Lecture 5 §Phase 3: the policy π starts as the SFT model; each step samples G responses to
B training prompts, scores them with the reward model (or, `reward="exact"`, with the
verifiable reward of the world's known answers), keeps π near the frozen SFT copy π_ref
with a KL term, and updates π by one of five algorithms:
  reinforce  the batch-mean baseline, one step per batch;
  rloo       the leave-one-out baseline, one step per batch;
  ppo-seq    PPO's clipped ratio over several epochs, one advantage per response (RLOO's);
  ppo        PPO as InstructGPT ran it: per-token rewards r_t = −β·(log π − log π_ref) (+ the
             score at the last token), a value model V_ψ initialised from the reward model,
             GAE advantages whitened over the batch, the clipped surrogate and the value loss;
  grpo       the group-normalised advantage of each response, the clipped ratio per token,
             and the KL to π_ref in the loss (k3 estimator) instead of in the reward.
The loop is its own (rollout then update, unlike the supervised Trainer) and stands on the
Trainer's pieces: `gradient_step`, the JSONL log and its truncation on resume, checkpoints.
Left out: a learning-rate schedule, early stopping, reward whitening across steps.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

from minillm.io import checks
from minillm.engine import backend, optim
from minillm.io.run_dir import RunDir, absolute_paths
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.model.sampling import response_log_softmax, token_logprobs
from minillm.phases.rl import grpo, ppo as rl_ppo, reinforce, rollouts as rl
from minillm.data.folders import shipped
from minillm.data.gold import exact_reward, gold_score
from minillm.data.readers import read_prompts
from minillm.errors import UserError
from minillm.model.reward_model import RewardModel
from minillm.phases import common, summaries
from minillm.phases.rl import judge
from minillm.phases.presets import RLHF_RULES, RLHFConfig  # noqa: F401 (RLHFConfig: part of this module's API)
from minillm.phases.rl.judge import encode_prompts, evaluate
from minillm.phases.trainer import (StopSignals, TrainingDiverged, append_log, check_finite, gradient_step,
                                    last_checkpoint_note, quiet_overflow, truncate_log)
from minillm.phases.progress import Progress

GOLD = "gold"  # --rm gold: the simulated labeler itself is the reward (an oracle, see score_rollouts)
REWARDS = ("rm", "exact")
VALUE_DIR = "value"  # PPO's value model: RUN_DIR/value, a reward-model checkpoint with its optimizer
VALUE_NEXT = "value.next"  # the value model saved before the policy; renamed to VALUE_DIR after it


@dataclass(frozen=True)
class Algorithm:
    """One RL algorithm as the loop sees it; each function is defined in the algorithm's module.

    targets(models, rollouts, scored, cfg, beta) -> {"adv": (N,) or (N, T), ...}: what the
    update pulls toward. loss(logp, rollouts, adv, cfg, beta) -> the scalar policy loss.
    epochs: False takes one gradient step on the whole batch (the plain policy gradient, whose
    samples are stale after one step); True runs cfg.ppo_epochs passes of minibatches (the
    clipped ratio keeps them safe). value_model: trains PPO's V_ψ beside the policy.
    min_group_size: the fewest samples per prompt the advantages can be formed from.
    """

    targets: Callable
    loss: Callable
    epochs: bool = False
    value_model: bool = False
    min_group_size: int = 1


ALGORITHMS = {
    "reinforce": Algorithm(reinforce.reinforce_targets, reinforce.policy_loss),
    "rloo": Algorithm(reinforce.rloo_targets, reinforce.policy_loss, min_group_size=2),
    "ppo": Algorithm(rl_ppo.ppo_targets, rl_ppo.policy_loss, epochs=True, value_model=True),
    # RLOO's advantages, clipped
    "ppo-seq": Algorithm(reinforce.rloo_targets, rl_ppo.policy_loss, epochs=True, min_group_size=2),
    "grpo": Algorithm(grpo.grpo_targets, grpo.policy_loss, epochs=True, min_group_size=2),
}


def load_reward_model(path: str) -> RewardModel:
    """The reward model saved by `minillm reward`; a clear error for any other checkpoint."""
    return checkpoint.load_kind(path, "reward_model", "--rm").model


def choose_prompts(n: int, batch: int, seed: int, step: int) -> list[int]:
    """B distinct prompt indices for this step, a function of (seed, step) only: exact resume."""
    return random.Random(seed * 1_000_003 + step).sample(range(n), min(batch, n))


@dataclass
class Models:
    """The four models of InstructGPT's PPO; the others use the first three (value None)."""

    policy: object                  # π, trained
    reference: object               # π_ref, the frozen SFT model
    reward_model: object            # r, frozen; None: the gold oracle or the exact reward
    value: object = None            # V_ψ (PPO only), trained beside π
    value_optimizer: object = None


# ----- one step: rollouts, rewards, advantages, update ----------------------------------

def score_rollouts(ro: rl.Rollouts, reward_model, tokenizer, prompts: list[str], beta: float,
                   reward: str = "rm") -> dict:
    """The scores r, the KL, the rewards R = r − β·KL, and the gold scores of one batch of rollouts.

    reward "exact": r is `exact_reward`, 1 for a right answer and 0 otherwise. reward_model
    None with reward "rm" is the oracle run (`--rm gold`): r is gold_score itself. No RLHF has
    that; it measures how far policy-gradient updates can take the policy with a perfect
    reward model, an upper bound for every learned one.
    """
    end = chat.chat_token_ids(tokenizer).end
    responses = ro.responses()
    texts = [chat.response_text(tokenizer, r) for r in responses]
    gold = [gold_score(p, t) for p, t in zip(prompts, texts)]
    if reward == "exact":
        scores = backend.asarray([exact_reward(p, t) or 0.0 for p, t in zip(prompts, texts)])   # (N,)
    elif reward_model is None:
        scores = backend.asarray(gold)                                                  # (N,)
    else:
        scores = rl.reward_model_scores(reward_model, ro.prompt_ids, responses, end)    # (N,)
    rewards, kl = rl.rlhf_rewards(scores, ro.logp, ro.ref_logp, ro.response_mask, beta)
    return {"scores": scores, "rewards": rewards, "kl": kl, "gold": gold, "texts": texts}


def value_step(models: Models, mb: rl.Rollouts, returns, old_values, cfg: RLHFConfig) -> float:
    """One step of V_ψ on its clipped squared error to GAE's returns; returns the loss."""
    values = rl_ppo.response_values(models.value, mb.prompt_ids, mb.response_ids)
    loss = rl_ppo.value_loss(values, old_values, returns, mb.response_mask, cfg.clip_eps)
    gradient_step(models.value.parameters(), models.value_optimizer, loss, cfg.grad_clip)
    return loss.item()


def update_policy(models: Models, optimizer, ro: rl.Rollouts, targets: dict, cfg: RLHFConfig,
                  step: int, beta: float) -> dict:
    """One gradient step on the whole batch, or epochs × minibatches (`Algorithm.epochs`).

    targets: {"adv": (N,) or (N, T)} and, for PPO, {"returns", "values"} (N, T).
    """
    algorithm, policy, adv = ALGORITHMS[cfg.algo], models.policy, targets["adv"]
    if not algorithm.epochs:
        log_dist = response_log_softmax(policy, ro.prompt_ids, ro.response_ids, cfg.temperature)
        loss = algorithm.loss(token_logprobs(log_dist, ro.response_ids), ro, adv, cfg, beta)
        norm = gradient_step(policy.parameters(), optimizer, loss, cfg.grad_clip)
        return {"loss": loss.item(), "grad_norm": norm, "entropy": rl.entropy(log_dist, ro.response_mask)}
    rng = backend.make_rng(cfg.seed + step)
    stats = {"loss": 0.0, "grad_norm": 0.0, "entropy": 0.0, "clip_frac": 0.0, "approx_kl": 0.0}
    if algorithm.value_model:
        stats["value_loss"] = 0.0
    count = 0
    for _ in range(cfg.ppo_epochs):
        for rows in rl_ppo.minibatches(len(ro.prompt_ids), cfg.ppo_minibatch, rng):
            mb = ro.select(rows)
            log_dist = response_log_softmax(policy, mb.prompt_ids, mb.response_ids, cfg.temperature)
            logp = token_logprobs(log_dist, mb.response_ids)
            loss = algorithm.loss(logp, mb, adv[rows], cfg, beta)
            stats["clip_frac"] += rl_ppo.clip_fraction(logp, mb.logp, adv[rows], mb.response_mask, cfg.clip_eps)
            stats["approx_kl"] += rl_ppo.approx_kl(logp, mb.logp, mb.response_mask)
            stats["entropy"] += rl.entropy(log_dist, mb.response_mask)
            stats["grad_norm"] += gradient_step(policy.parameters(), optimizer, loss, cfg.grad_clip)
            stats["loss"] += loss.item()
            if algorithm.value_model:
                stats["value_loss"] += value_step(models, mb, targets["returns"][rows], targets["values"][rows], cfg)
            count += 1
    return {k: v / count for k, v in stats.items()}


def rl_step(models: Models, optimizer, tokenizer, prompts: list[str], prompt_ids: list, cfg: RLHFConfig,
            beta: float, step: int) -> dict:
    """Sample, score, compute advantages, update. Returns the step's log record."""
    end = chat.chat_token_ids(tokenizer).end
    ro = rl.sample_rollouts(models.policy, models.reference, prompt_ids, cfg.group_size, cfg.max_new_tokens,
                            end, cfg.temperature, seed=cfg.seed + step)
    texts_prompts = [p for p in prompts for _ in range(cfg.group_size)]
    scored = score_rollouts(ro, models.reward_model, tokenizer, texts_prompts, beta, cfg.reward)
    targets = ALGORITHMS[cfg.algo].targets(models, ro, scored, cfg, beta)
    update = update_policy(models, optimizer, ro, targets, cfg, step, beta)
    return {"reward": float(scored["rewards"].mean()), "rm_score": float(scored["scores"].mean()),
            "kl": float(scored["kl"].mean()), "beta": beta,
            "gold": sum(scored["gold"]) / len(scored["gold"]),
            "response_length": float(ro.response_mask.sum(axis=1).mean()), **update}


# ----- the run -------------------------------------------------------------------------

@dataclass
class RLHFRun:
    """One RLHF run; `run()` trains, compares SFT and RLHF on held-out prompts, returns a summary."""

    policy: str                     # the SFT run directory: the policy's start and the frozen reference
    reward_model: str               # the reward model's run directory (`minillm reward --out`), or "gold"
    out: str                        # this run's directory: checkpoint, log.jsonl, rlhf.png, report
    config: RLHFConfig
    prompts: str | None = None      # training prompts (default: the shipped data/rl/train.jsonl)
    heldout: str | None = None      # held-out prompts (default: the shipped data/rl/heldout.jsonl)
    resume: bool = False
    overwrite: bool = False         # replace a minillm run already in `out`
    quiet: bool = False

    def settings(self) -> dict:
        """What decides this run's numbers: a resume must give the same (RUN.json keeps them)."""
        return {"policy": absolute_paths(self.policy),
                "reward_model": GOLD if self.reward_model == GOLD else absolute_paths(self.reward_model),
                "prompts": absolute_paths(self.prompts), "heldout": absolute_paths(self.heldout),
                "config": asdict(self.config)}

    def run(self) -> dict:
        cfg, start = self.config, time.perf_counter()
        check_config(cfg)
        inputs = {"--policy": self.policy, "--rm": None if self.reward_model == GOLD else self.reward_model}
        run_dir = RunDir(self.out, "rlhf", self.settings(), inputs, self.resume, self.overwrite, self.quiet,
                         growable=("config.steps",))  # a constant learning rate: a longer run continues exactly
        sft = checkpoint.load_sft(self.policy, "--policy", "RLHF starts from")
        reward_model = None if self.reward_model == GOLD else load_reward_model(self.reward_model)
        policy, reference, tok = sft.model, checkpoint.load(self.policy).model, sft.tokenizer
        if (fitted := common.fit_new_tokens(cfg.max_new_tokens, policy.config.block_size, self._say)) != cfg.max_new_tokens:
            cfg = self.config = replace(cfg, max_new_tokens=fitted)
        policy.eval()  # no dropout: ρ must be exactly 1 before the first update
        reference.eval()
        prompts, heldout = self._prompts(cfg)
        prompt_ids = encode_prompts(tok, prompts, policy.config.block_size, cfg.max_new_tokens)
        optimizer = optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=0.0)
        controller = rl.KLController(cfg.beta, cfg.target_kl, cfg.kl_horizon)
        meta = {**sft.meta, "phase": "rlhf", "init": os.path.abspath(self.policy),
                "reward_model": GOLD if reward_model is None else os.path.abspath(self.reward_model),
                "rlhf_config": asdict(cfg)}
        models = Models(policy, reference, reward_model)
        run_dir.start()
        log_path, step = os.path.join(self.out, "log.jsonl"), 0
        if self.resume and self._can_resume():
            step = self._resume(models, optimizer, controller, log_path)
        else:
            if os.path.exists(log_path):
                os.remove(log_path)
            self._start_value_model(models, policy)
            append_log(log_path, {"kind": "header", "step": 0, "algo": cfg.algo, "models": self._model_names(models)})
            sft_eval, _ = evaluate(policy, reward_model, tok, heldout[:cfg.eval_prompts])
            append_log(log_path, {"kind": "eval", "step": 0, **sft_eval})
        progress = Progress(cfg.steps, step, quiet=self.quiet, desc=cfg.algo)
        with StopSignals() as signals, quiet_overflow():
            models = self._loop(models, optimizer, controller, tok, prompts, prompt_ids, heldout, step, progress,
                                signals, meta, log_path, start)
        progress.close()
        common.plot_rl_curves(log_path, os.path.join(self.out, "rlhf.png"), title=f"RLHF ({cfg.algo})")
        return self._report(models.policy, reference, reward_model, tok, heldout, prompts, start)

    def _loop(self, models, optimizer, controller, tok, prompts, prompt_ids, heldout, step, progress, signals,
              meta, log_path, start) -> Models:
        """Rollout-then-update steps to cfg.steps, with evaluations, checkpoints and a save on Ctrl-C."""
        cfg, reward_model = self.config, models.reward_model
        while step < cfg.steps:
            batch = choose_prompts(len(prompts), cfg.batch_prompts, cfg.seed, step)
            try:
                record = rl_step(models, optimizer, tok, [prompts[i] for i in batch],
                                 [prompt_ids[i] for i in batch], cfg, controller.beta, step)
                bad = [k for k in ("loss", "reward", "kl") if not math.isfinite(record[k])]
                if bad:
                    raise TrainingDiverged(f"the {' and '.join(bad)} became non-finite")
            except TrainingDiverged as err:
                raise TrainingDiverged(f"{err} at step {step + 1}; stopped: "
                                       f"{last_checkpoint_note(os.path.join(self.out, 'checkpoint'))}. "
                                       "Lower --lr or check the reward model") from None
            controller.update(record["kl"], len(batch) * cfg.group_size)
            step += 1
            append_log(log_path, {"kind": "train", "step": step, **record, "elapsed": time.perf_counter() - start})
            progress.update(step, reward=record["reward"], rm=record["rm_score"], kl=record["kl"])
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                metrics, _ = evaluate(models.policy, reward_model, tok, heldout[:cfg.eval_prompts])
                append_log(log_path, {"kind": "eval", "step": step, **metrics})
                progress.write(f"step {step}: held-out gold {metrics['gold']:.3f}, RM {metrics['rm_score']:.3f}")
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps or signals.received:
                self._save(models, optimizer, tok, step, {**meta, "beta": controller.beta})
            if signals.received:
                signals.stop(step, os.path.join(self.out, "checkpoint"))
        return models

    def _can_resume(self) -> bool:
        """Whether the run saved a whole training state (the value model's too, for PPO); a
        damaged or missing one is an error that says where an intact copy is."""
        saved = checkpoint.can_resume(os.path.join(self.out, "checkpoint"))
        value_model = ALGORITHMS[self.config.algo].value_model
        if saved and value_model:
            self._finish_value_save()
        if saved and value_model and not checkpoint.can_resume(os.path.join(self.out, VALUE_DIR)):
            raise UserError(f"{os.path.join(self.out, VALUE_DIR)} (PPO's value model) is missing: the run cannot "
                            "resume exactly; pass --overwrite to start it over")
        return saved

    def _prompts(self, cfg: RLHFConfig) -> tuple[list[str], list[str]]:
        """Training prompts (only those with a verifiable answer for reward "exact"), held-out prompts."""
        prompts = [r["prompt"] for r in read_prompts(self.prompts or shipped().rl)]
        if cfg.reward == "exact":
            prompts = [p for p in prompts if exact_reward(p, "") is not None]
            if not prompts:
                raise UserError("--reward exact needs training prompts with one right answer (the world's "
                                 "facts, numbers and sums); none of the --prompts file has one")
        heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(
            self.heldout or shipped().held_out())))
        return prompts, heldout

    def _start_value_model(self, models: Models, policy) -> None:
        """PPO's V_ψ: a copy of the reward model (it already reads prompt + response into a score),
        or of the SFT model with a zero head when there is no learned reward model."""
        if not ALGORITHMS[self.config.algo].value_model:
            return
        if models.reward_model is not None:
            models.value = load_reward_model(self.reward_model)
        else:
            models.value = RewardModel.from_gpt(policy)
        models.value.eval()
        models.value_optimizer = optim.AdamW(models.value.parameters(), lr=self.config.value_lr,
                                             betas=(self.config.beta1, self.config.beta2), weight_decay=0.0)

    def _model_names(self, models: Models) -> dict:
        reward = f"the reward model {self.reward_model}" if models.reward_model is not None else (
            "exact_reward (the world's known answers)" if self.config.reward == "exact" else "gold_score (oracle)")
        names = {"policy": f"π, trained from the SFT model {self.policy}",
                 "reference": f"π_ref, the frozen SFT model {self.policy}", "reward": reward}
        if models.value is not None:
            names["value"] = "V_ψ, trained, initialised from " + (
                f"the reward model {self.reward_model}" if models.reward_model is not None else "the SFT model")
        if self.config.reward == "exact":
            names["reward"] = "exact_reward (the world's known answers); " + reward
        return names

    def _save(self, models: Models, optimizer, tok, step: int, meta: dict) -> None:
        for model in (models.policy, models.value):
            if model is not None:
                try:
                    check_finite(model, f"after step {step}")
                except TrainingDiverged as err:
                    raise TrainingDiverged(f"{err}; not saved: "
                                           f"{last_checkpoint_note(os.path.join(self.out, 'checkpoint'))}") from None
        if models.value is not None:  # first beside the last value model, so a kill leaves one that matches
            checkpoint.save(models.value, os.path.join(self.out, VALUE_NEXT), tokenizer=tok,
                            optimizer=models.value_optimizer, step=step, meta={"phase": "value"})
        checkpoint.save(models.policy, os.path.join(self.out, "checkpoint"), tokenizer=tok, optimizer=optimizer,
                        step=step, meta=meta)
        if models.value is not None:
            self._finish_value_save()

    def _finish_value_save(self) -> None:
        """PPO saves two models, the value model first (to VALUE_NEXT), then the policy, then
        renames VALUE_NEXT to VALUE_DIR. A kill in between leaves VALUE_NEXT: it belongs to the
        saved policy when their steps agree (the rename is finished now), else it is dropped."""
        ahead, current = os.path.join(self.out, VALUE_NEXT), os.path.join(self.out, VALUE_DIR)
        if not os.path.isdir(ahead):
            return
        if checkpoint.read_step(ahead) == checkpoint.read_step(os.path.join(self.out, "checkpoint")):
            if os.path.isdir(current):
                shutil.rmtree(current)
            os.replace(ahead, current)
        else:
            shutil.rmtree(ahead)

    def _resume(self, models: Models, optimizer, controller, log_path: str) -> int:
        """Weights (policy and value), optimizer moments, β and the step; rollouts are seeded by
        step, so the rest follows."""
        saved = checkpoint.load(os.path.join(self.out, "checkpoint"), optimizer=optimizer)
        models.policy = saved.model.eval()
        controller.beta = float(saved.meta["beta"])
        if ALGORITHMS[self.config.algo].value_model:
            self._start_value_model(models, saved.model)
            value = checkpoint.load(os.path.join(self.out, VALUE_DIR), optimizer=models.value_optimizer)
            if value.step != saved.step:
                raise UserError(f"the policy was saved at step {saved.step} but the value model in "
                                f"{os.path.join(self.out, VALUE_DIR)} at step {value.step} (a save was interrupted "
                                "between the two): the run cannot resume exactly; pass --overwrite to start it over")
            models.value = value.model.eval()
        truncate_log(log_path, saved.step)
        self._say(f"resuming from step {saved.step} in {self.out}")
        return saved.step

    def _report(self, policy, reference, reward_model, tok, heldout, train_prompts, start) -> dict:
        """SFT (the frozen reference) vs the policy on every held-out prompt: report.json, report.md."""
        cfg = self.config
        self._say(f"answering {len(heldout)} held-out prompts with the SFT model and the {cfg.algo} policy")
        sampling = judge.Sampling(cfg.temperature, cfg.max_new_tokens, cfg.seed)
        summary, notes, scores = judge.judge_policy(self.out, summaries.TrainedSummary, cfg.algo, policy, reference,
                                                    reward_model, tok, heldout, train_prompts, sampling,
                                                    {"algo": cfg.algo, "steps": cfg.steps}, start)
        self._say(common.format_comparison(scores["sft"], scores["rlhf"], ("SFT", cfg.algo)) + "\n" + notes
                  + f"\nreport.md, report.json, log.jsonl, rlhf.png and the checkpoint are in {self.out}")
        return summary.to_json()

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def check_config(cfg: RLHFConfig) -> None:
    """Settings that cannot work, named before any work starts."""
    if cfg.algo not in ALGORITHMS:
        raise UserError(f"unknown algorithm {cfg.algo!r}: expected one of {', '.join(ALGORITHMS)}")
    if cfg.reward not in REWARDS:
        raise UserError(f"unknown reward {cfg.reward!r}: expected one of {', '.join(REWARDS)}")
    checks.check_fields(cfg, RLHF_RULES)
    if cfg.group_size < ALGORITHMS[cfg.algo].min_group_size:
        raise UserError(f"--algo {cfg.algo} compares the G samples of a prompt with each other: "
                         f"--group-size must be at least {ALGORITHMS[cfg.algo].min_group_size}, got {cfg.group_size}")
