"""Phase 3, RLHF: optimise the SFT model against the reward model, with a KL leash.

Lecture 5 §Phase 3: the policy π starts as the SFT model; each step samples G responses to
B training prompts, scores them with the reward model, subtracts β·KL(π ‖ π_ref) to the frozen
SFT copy π_ref, and updates π by REINFORCE (batch-mean baseline), RLOO (leave-one-out
baseline) or PPO (clipped ratio, several epochs over the batch). The loop is its own (rollout
then update, unlike the supervised Trainer), with the same log, plots, checkpoints and resume.
Left out: a value head and GAE, reward whitening, a learning-rate schedule, early stopping.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

from minillm import backend, chat, checkpoint, optim, rl, rl_ppo
from minillm.data.gold import gold_score
from minillm.data.readers import read_prompts
from minillm.reward_model import RewardModel
from minillm.training import common
from minillm.training.loop import append_log, gradient_step, truncate_log
from minillm.tensor import no_grad
from minillm.training.progress import Progress
from minillm.training.reward import sample_responses

GOLD = "gold"  # --rm gold: the simulated labeler itself is the reward (an oracle, see score_rollouts)
SHIPPED_RL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "data", "rl")


@dataclass
class RLHFConfig:
    algo: str = "rloo"              # reinforce | rloo | ppo
    steps: int = 40                 # rollout-then-update iterations
    batch_prompts: int = 16         # B prompts per step
    group_size: int = 4             # G sampled responses per prompt
    # AdamW, constant (no decay: RL steps are few). Small: the policy-gradient estimate is
    # noisy, and Adam turns noise into steps of about lr per weight; at 2e-4 the classroom
    # policy drifted (KL 1.6-2.2 nats in 40 steps) and lost held-out gold even with the oracle
    # reward
    lr: float = 3e-5
    kl_coef: float = 0.1            # β; the starting β when target_kl is set
    target_kl: float | None = None  # adapt β toward this mean KL per response (nats)
    kl_horizon: int = 1000          # the adaptive controller's horizon (responses)
    temperature: float = 1.0        # sampling temperature; the policy is softmax(z / τ)
    max_new_tokens: int = 40        # longest response
    normalize_adv: bool = False     # divide advantages by their std
    ppo_epochs: int = 4             # PPO: passes over one batch of rollouts
    ppo_minibatch: int = 16         # PPO: responses per gradient step
    clip_eps: float = 0.2           # PPO: ε of clip(ρ, 1−ε, 1+ε)
    grad_clip: float = 1.0          # max global gradient norm (0 disables)
    eval_interval: int = 10         # greedy held-out answers every this many steps
    eval_prompts: int = 48          # how many held-out prompts the periodic evaluation answers
    checkpoint_interval: int = 20
    seed: int = 1337


def load_reward_model(path: str) -> RewardModel:
    """The reward model saved by `minillm reward`; a clear error for any other checkpoint."""
    model = checkpoint.load(path).model
    if not isinstance(model, RewardModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a reward model: pass the run "
                         "directory of `minillm reward --out` as --rm")
    return model


def encode_prompts(tokenizer, prompts: list[str], block_size: int, max_new_tokens: int) -> list[list[int]]:
    """Chat-formatted prompt ids, cut from the left to leave max_new_tokens for the response."""
    return [chat.encode_prompt(tokenizer, p, block_size - max_new_tokens) for p in prompts]


def choose_prompts(n: int, batch: int, seed: int, step: int) -> list[int]:
    """B distinct prompt indices for this step, a function of (seed, step) only: exact resume."""
    return random.Random(seed * 1_000_003 + step).sample(range(n), min(batch, n))


# ----- one step: rollouts, rewards, advantages, update ----------------------------------

def score_rollouts(ro: rl.Rollouts, reward_model, tokenizer, prompts: list[str], beta: float) -> dict:
    """The reward scores, the KL, the rewards R = r − β·KL, and the gold scores of one batch of rollouts.

    reward_model None is the oracle run (`--rm gold`): r is gold_score itself. No RLHF has that;
    it measures how far policy-gradient updates can take the policy with a perfect reward model,
    an upper bound for every learned one.
    """
    end = chat.chat_token_ids(tokenizer)[2]
    responses = ro.responses()
    texts = [chat.response_text(tokenizer, r) for r in responses]
    gold = [gold_score(p, t) for p, t in zip(prompts, texts)]
    if reward_model is None:
        scores = backend.asarray(gold)                                                  # (N,)
    else:
        scores = rl.reward_model_scores(reward_model, ro.prompt_ids, responses, end)    # (N,)
    rewards, kl = rl.rlhf_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, beta)
    return {"scores": scores, "rewards": rewards, "kl": kl, "gold": gold, "texts": texts}


def baseline_for(algo: str, group_size: int) -> str:
    """reinforce: the batch mean; rloo, and ppo when G >= 2: the leave-one-out mean of the prompt's others."""
    if algo == "reinforce" or group_size < 2:
        return "mean"
    return "leave_one_out"


def update_policy(policy, optimizer, ro: rl.Rollouts, adv, cfg: RLHFConfig, step: int) -> dict:
    """REINFORCE/RLOO: one gradient step on the whole batch. PPO: epochs × minibatches."""
    if cfg.algo != "ppo":
        logp = rl.response_log_softmax(policy, ro.prompt_ids, ro.response_ids, cfg.temperature)
        loss = rl.reinforce_loss(rl.token_logprobs(logp, ro.response_ids), adv, ro.response_mask)
        norm = gradient_step(policy.parameters(), optimizer, loss, cfg.grad_clip)
        return {"loss": loss.item(), "grad_norm": norm, "entropy": rl.entropy(logp, ro.response_mask)}
    rng = backend.make_rng(cfg.seed + step)
    stats = {"loss": 0.0, "grad_norm": 0.0, "entropy": 0.0, "clip_frac": 0.0, "approx_kl": 0.0}
    count = 0
    for _ in range(cfg.ppo_epochs):
        for rows in rl_ppo.minibatches(len(ro.prompt_ids), cfg.ppo_minibatch, rng):
            mb = ro.select(rows)
            logp = rl.response_log_softmax(policy, mb.prompt_ids, mb.response_ids, cfg.temperature)
            lp = rl.token_logprobs(logp, mb.response_ids)
            loss = rl_ppo.ppo_clip_loss(lp, mb.logprobs, adv[rows], mb.response_mask, cfg.clip_eps)
            stats["clip_frac"] += rl_ppo.clip_fraction(lp, mb.logprobs, adv[rows], mb.response_mask, cfg.clip_eps)
            stats["approx_kl"] += rl_ppo.approx_kl(lp, mb.logprobs, mb.response_mask)
            stats["entropy"] += rl.entropy(logp, mb.response_mask)
            stats["grad_norm"] += gradient_step(policy.parameters(), optimizer, loss, cfg.grad_clip)
            stats["loss"] += loss.item()
            count += 1
    return {k: v / count for k, v in stats.items()}


def rl_step(models, optimizer, tokenizer, prompts: list[str], prompt_ids: list, cfg: RLHFConfig,
            beta: float, step: int) -> dict:
    """Sample, score, compute advantages, update. Returns the step's log record."""
    policy, reference, reward_model = models
    end = chat.chat_token_ids(tokenizer)[2]
    ro = rl.sample_rollouts(policy, reference, prompt_ids, cfg.group_size, cfg.max_new_tokens, end,
                            cfg.temperature, seed=cfg.seed + step)
    texts_prompts = [p for p in prompts for _ in range(cfg.group_size)]
    scored = score_rollouts(ro, reward_model, tokenizer, texts_prompts, beta)
    adv = rl.advantages(scored["rewards"], baseline_for(cfg.algo, cfg.group_size), cfg.group_size, cfg.normalize_adv)
    update = update_policy(policy, optimizer, ro, adv, cfg, step)
    record = {"reward": float(scored["rewards"].mean()), "rm_score": float(scored["scores"].mean()),
              "kl": float(scored["kl"].mean()), "beta": beta,
              "gold": sum(scored["gold"]) / len(scored["gold"]),
              "response_length": float(ro.response_mask.sum(axis=1).mean()), **update}
    return record


# ----- evaluation on held-out prompts --------------------------------------------------

def evaluate(policy, reward_model, tokenizer, prompts: list[str]) -> tuple[dict, list[str]]:
    """Greedy answers to held-out prompts: their mean gold score and mean reward (RM or, oracle, gold)."""
    answers = common.answer_prompts(policy, tokenizer, prompts, use_template=True)
    gold = [gold_score(p, a) for p, a in zip(prompts, answers)]
    if reward_model is None:
        return {"gold": sum(gold) / len(gold), "rm_score": sum(gold) / len(gold)}, answers
    end = chat.chat_token_ids(tokenizer)[2]
    ids = [chat.encode_prompt(tokenizer, p) for p in prompts]
    rm = rl.reward_model_scores(reward_model, ids, [tokenizer.encode(a) for a in answers], end)
    return {"gold": sum(gold) / len(gold), "rm_score": float(rm.mean())}, answers


def held_out_kl(policy, reference, tokenizer, prompt_ids: list, cfg: RLHFConfig, seed: int) -> float:
    """Mean KL(π ‖ π_ref) per response on held-out prompts: one sampled response each, the exact
    per-token KL of the two next-token distributions summed over it (`rl.exact_kl`)."""
    end = chat.chat_token_ids(tokenizer)[2]
    ro = rl.sample_rollouts(policy, reference, prompt_ids, 1, cfg.max_new_tokens, end, cfg.temperature, seed)
    with no_grad():
        logp = rl.response_log_softmax(policy, ro.prompt_ids, ro.response_ids, cfg.temperature)
        ref = rl.response_log_softmax(reference, ro.prompt_ids, ro.response_ids, cfg.temperature)
    return float(rl.exact_kl(logp, ref, ro.response_mask).mean())


SAMPLES_PER_PROMPT = 4


def gold_versus(prefix: str, prompts: list[str], answers: dict[str, list[str]]) -> dict:
    """Mean gold of the SFT and RLHF answers to the same prompts, and RLHF's wins against SFT.

    Returns {prefix_gold_sft, prefix_gold_rlhf, prefix_wins, prefix_losses, prefix_ties, ...}.
    """
    gold = {name: [gold_score(p, a) for p, a in zip(prompts, answers[name])] for name in ("sft", "rlhf")}
    versus = common.pairwise_wins(gold["rlhf"], gold["sft"])
    return {f"{prefix}_gold_sft": sum(gold["sft"]) / len(prompts),
            f"{prefix}_gold_rlhf": sum(gold["rlhf"]) / len(prompts),
            **{f"{prefix}_{k}": v for k, v in versus.items()}}


def sampled_comparison(reference, policy, tokenizer, prompts: list[str], cfg: RLHFConfig) -> dict:
    """SFT vs RLHF on sampled answers: SAMPLES_PER_PROMPT each per held-out prompt at the RL temperature.

    RL maximises the expected reward of samples, E_{y~π}[r], so this is the comparison the
    objective speaks to; greedy answers (the report's table) can move less, or not at all.
    Sample i of one policy is compared with sample i of the other (same seed).
    """
    answers = {}
    for name, model in (("sft", reference), ("rlhf", policy)):
        groups = sample_responses(model, tokenizer, prompts, n=SAMPLES_PER_PROMPT,
                                  temperature=cfg.temperature, seed=cfg.seed + 7)
        answers[name] = [a for group in groups for a in group]
    repeated = [p for p in prompts for _ in range(SAMPLES_PER_PROMPT)]
    return gold_versus("sampled", repeated, answers)


def seen_prompt_comparison(reference, policy, tokenizer, train_prompts: list[str], n: int) -> dict:
    """SFT vs RLHF greedy on n of the prompts RL trained on (every k-th, spread over the file).

    Held-out prompts ask about facts no RL prompt asked; training prompts show what RL did to
    the questions it practised. The gap between the two is how far the change generalised.
    """
    prompts = train_prompts[::max(1, len(train_prompts) // max(n, 1))][:n]
    answers = {name: common.answer_prompts(model, tokenizer, prompts, use_template=True)
               for name, model in (("sft", reference), ("rlhf", policy))}
    return {"seen_n": len(prompts), **gold_versus("seen", prompts, answers)}


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
    quiet: bool = False

    def run(self) -> dict:
        cfg, start = self.config, time.perf_counter()
        if cfg.algo not in rl.ALGORITHMS:
            raise ValueError(f"unknown algorithm {cfg.algo!r}: expected one of {', '.join(rl.ALGORITHMS)}")
        sft = checkpoint.load(self.policy)
        if not chat.uses_chat_template(sft.meta) or sft.tokenizer is None:
            raise ValueError(f"{self.policy} is not an SFT checkpoint (no chat template in its meta): "
                             "RLHF starts from `minillm sft --out`")
        policy, reference, tok = sft.model, checkpoint.load(self.policy).model, sft.tokenizer
        reward_model = None if self.reward_model == GOLD else load_reward_model(self.reward_model)
        policy.eval()  # no dropout: ρ must be exactly 1 before the first update
        reference.eval()
        prompts = [r["prompt"] for r in read_prompts(self.prompts or os.path.join(SHIPPED_RL, "train.jsonl"))]
        heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(
            self.heldout or os.path.join(SHIPPED_RL, "heldout.jsonl"))))
        prompt_ids = encode_prompts(tok, prompts, policy.config.block_size, cfg.max_new_tokens)
        optimizer = optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        controller = rl.KLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
        meta = {**sft.meta, "phase": "rlhf", "init": os.path.abspath(self.policy),
                "reward_model": GOLD if reward_model is None else os.path.abspath(self.reward_model),
                "rlhf_config": asdict(cfg)}
        os.makedirs(self.out, exist_ok=True)
        log_path, step = os.path.join(self.out, "log.jsonl"), 0
        if self.resume and os.path.exists(os.path.join(self.out, "checkpoint", "trainer_state.json")):
            policy, step = self._resume(optimizer, controller, log_path)
        else:
            if os.path.exists(log_path):
                os.remove(log_path)
            sft_eval, _ = evaluate(policy, reward_model, tok, heldout[:cfg.eval_prompts])
            append_log(log_path, {"kind": "eval", "step": 0, **sft_eval})
        models = (policy, reference, reward_model)
        progress = Progress(cfg.steps, step, quiet=self.quiet, desc="rlhf")
        while step < cfg.steps:
            batch = choose_prompts(len(prompts), cfg.batch_prompts, cfg.seed, step)
            record = rl_step(models, optimizer, tok, [prompts[i] for i in batch],
                             [prompt_ids[i] for i in batch], cfg, controller.beta, step)
            controller.update(record["kl"], len(batch) * cfg.group_size)
            step += 1
            append_log(log_path, {"kind": "train", "step": step, **record, "elapsed": time.perf_counter() - start})
            progress.update(step, reward=record["reward"], rm=record["rm_score"], kl=record["kl"])
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                metrics, _ = evaluate(policy, reward_model, tok, heldout[:cfg.eval_prompts])
                append_log(log_path, {"kind": "eval", "step": step, **metrics})
                progress.write(f"step {step}: held-out gold {metrics['gold']:.3f}, RM {metrics['rm_score']:.3f}")
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                checkpoint.save(policy, os.path.join(self.out, "checkpoint"), tokenizer=tok, optimizer=optimizer,
                                step=step, meta={**meta, "beta": controller.beta})
        progress.close()
        common.plot_rl_curves(log_path, os.path.join(self.out, "rlhf.png"))
        return self._report(policy, reference, reward_model, tok, heldout, prompts, start)

    def _resume(self, optimizer, controller, log_path: str):
        """Weights, optimizer moments, β and the step; rollouts are seeded by step, so the rest follows."""
        saved = checkpoint.load(os.path.join(self.out, "checkpoint"), optimizer=optimizer)
        saved.model.eval()
        controller.beta = float(saved.meta["beta"])
        if os.path.exists(log_path):
            truncate_log(log_path, saved.step)
        self._say(f"resuming from step {saved.step} in {self.out}")
        return saved.model, saved.step

    def _report(self, policy, reference, reward_model, tok, heldout, train_prompts, start) -> dict:
        """SFT (the frozen reference) vs RLHF on every held-out prompt: report.json, report.md."""
        cfg = self.config
        self._say(f"answering {len(heldout)} held-out prompts with the SFT and the RLHF policy (greedy)")
        sft_eval, sft_answers = evaluate(reference, reward_model, tok, heldout)
        rl_eval, rl_answers = evaluate(policy, reward_model, tok, heldout)
        scores = {"sft": common.score_answers(heldout, sft_answers, {}),
                  "rlhf": common.score_answers(heldout, rl_answers, {})}
        ids = encode_prompts(tok, heldout, policy.config.block_size, cfg.max_new_tokens)
        kl = held_out_kl(policy, reference, tok, ids, cfg, cfg.seed + 999_983)
        versus = common.pairwise_wins(scores["rlhf"]["gold"], scores["sft"]["gold"])
        sampled = sampled_comparison(reference, policy, tok, heldout, cfg)
        seen = seen_prompt_comparison(reference, policy, tok, train_prompts, len(heldout))
        summary = {"algo": cfg.algo, "steps": cfg.steps, "kl_to_reference": kl,
                   "rm_score_sft": sft_eval["rm_score"], "rm_score_rlhf": rl_eval["rm_score"],
                   "mean_gold_sft": scores["sft"]["mean_gold"], "mean_gold_rlhf": scores["rlhf"]["mean_gold"],
                   **{f"rlhf_vs_sft_{k}": v for k, v in versus.items()}, **sampled, **seen, "seconds": time.perf_counter() - start}
        notes = (f"Greedy answers (first line) of the SFT policy and of the RLHF policy ({cfg.algo}, {cfg.steps} "
                 f"steps) to {len(heldout)} held-out prompts, each judged by gold_score. RLHF vs SFT per "
                 f"prompt: {versus['wins']} wins, {versus['losses']} losses, {versus['ties']} ties (equal gold); "
                 f"win rate {versus['win_rate']:.1%} with ties excluded, {versus['win_rate_ties_half']:.1%} "
                 f"with ties as half. Reward-model score of the answers: SFT {sft_eval['rm_score']:.3f}, "
                 f"RLHF {rl_eval['rm_score']:.3f}. KL(π ‖ π_ref) per held-out response: {kl:.3f} nats "
                 f"(one sample per prompt at τ = {cfg.temperature}, exact per-token KL summed). "
                 f"Sampled answers ({SAMPLES_PER_PROMPT} per prompt at τ = {cfg.temperature}, the distribution "
                 f"RL optimises): mean gold SFT {sampled['sampled_gold_sft']:.3f}, RLHF "
                 f"{sampled['sampled_gold_rlhf']:.3f}; RLHF wins {sampled['sampled_wins']}, loses "
                 f"{sampled['sampled_losses']}, ties {sampled['sampled_ties']} (win rate "
                 f"{sampled['sampled_win_rate']:.1%} with ties excluded). On {seen['seen_n']} of the training "
                 f"prompts (greedy), mean gold SFT {seen['seen_gold_sft']:.3f}, RLHF {seen['seen_gold_rlhf']:.3f}.")
        report = {**scores, "summary": summary, "config": asdict(cfg)}
        common.write_report(self.out, report, heldout, {"sft": sft_answers, "rlhf": rl_answers},
                            "RLHF: held-out answers of the SFT and the RLHF policy", notes)
        with open(os.path.join(self.out, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        self._say(common.format_comparison(scores["sft"], scores["rlhf"], ("SFT", "RLHF")) + "\n" + notes
                  + f"\nreport.md, report.json, log.jsonl, rlhf.png and the checkpoint are in {self.out}")
        return summary

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
