"""Reward-model over-optimisation, measured as Gao, Schulman and Hilton (2022) measured it.

"Scaling Laws for Reward Model Overoptimization" trains proxy reward models on labels from a
gold reward model, optimises a policy against each proxy, and plots the gold and the proxy
score against d = sqrt(KL(π ‖ π_init)). minillm's gold labeler (`gold_score`) is an exact gold
model, so the whole study fits a classroom machine:

  1. preference pairs: two answers of the class run's SFT model to each training prompt,
     ordered by gold_score, and the shipped pairs (the same pairs for every reward model);
  2. reward models of three sizes, each from a model of its own size pretrained on the same
     corpus (L is the class run's pretrained model; S and M are pretrained here with its settings);
  3. best-of-n, n = 1, 2, 4, ..., 64, on held-out prompts: KL from the closed form
     log n − (n−1)/n, checked by sampling; gold and proxy of the pick, averaged over every
     n-subset of a pool of samples (`best_of_n_expectation`);
  4. RL (RLOO) against each proxy with no KL penalty (β = 0), gold, proxy and the measured KL on
     held-out samples at regular steps, until the gold score has clearly turned down or a cap;
  5. the paper's functional forms fitted by least squares: best-of-n R(d) = d(α − βd), RL
     R(d) = d(α − β log d), R the gold gain over the SFT model; the peak (d*, gold*) of each.

    python benchmarks/overoptimization.py runs/pipeline --sizes S,M,L --seeds 2 --out runs/overopt

Every piece (pairs, each pretraining, each reward model, each best-of-n pool, each RL run)
writes a DONE.json when finished; a rerun skips finished pieces. Writes results.json,
overoptimization.png and results_section.md (the fitted table and the paper's four findings,
each marked reproduced or not on these numbers) into --out. `--quick`: tiny models, a few
points, seconds (the tests).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

if __name__ == "__main__":  # the speed wing, as the `minillm` command runs it, before NumPy loads (a test
    import minillm.fast     # importing this file keeps its process plain)

    minillm.fast.enable()

import numpy as np  # noqa: E402

from minillm.data.folders import shipped  # noqa: E402
from minillm.data.readers import read_preferences, read_prompts  # noqa: E402
from minillm.engine import backend, optim  # noqa: E402
from minillm.engine.tensor import no_grad  # noqa: E402
from minillm.errors import UserError  # noqa: E402
from minillm.io import checkpoint  # noqa: E402
from minillm.io.safe_files import write_json_atomic, write_text_atomic  # noqa: E402
from minillm.phases.common import gold_labelled_pairs  # noqa: E402
from minillm.phases.rl.judge import encode_prompts  # noqa: E402
from minillm.phases.pretrain import PretrainRun  # noqa: E402
from minillm.phases.reward import RewardRun  # noqa: E402
from minillm.model.sampling import response_log_softmax  # noqa: E402
from minillm.phases.rl import rollouts as rl  # noqa: E402
from minillm.phases.rl.best_of_n import best_of_n_kl, best_of_n_kl_estimate  # noqa: E402
from minillm.phases.rl.rlhf import Models, RLHFConfig, choose_prompts, load_reward_model, rl_step, score_rollouts  # noqa: E402
from minillm.tokenizers import chat_template as chat  # noqa: E402

DONE = "DONE.json"
POOL_CHUNK = 4  # held-out prompts sampled together for the best-of-n pool


@dataclass(frozen=True)
class Scale:
    """How big every piece of the study is (the full study, or --quick for the tests)."""

    sizes: dict                 # name -> GPTConfig fields of a pretrained model (None: the class run's)
    pretrain: dict | None       # TrainConfig overrides of the S and M pretraining (None: L's own, from its checkpoint)
    pair_prompts: int           # training prompts whose two SFT answers gold labels (RM training pairs)
    val_prompts: int            # further training prompts labelled the same way (RM validation pairs)
    curated_train: int          # shipped preference pairs added to the RM training pairs
    curated_val: int            # shipped validation pairs added to the RM validation pairs
    rm: dict                    # TrainConfig overrides of every reward model
    bon_prompts: int            # held-out prompts of best-of-n
    bon_pool: int               # samples per prompt best-of-n picks from (n up to this)
    kl_pool: int                # fresh samples per prompt for the sampled KL check
    rl: dict                    # RLHFConfig fields of every RL run (β is 0)
    eval_every: int             # RL: held-out evaluation every this many steps
    eval_prompts: int           # RL: held-out prompts per evaluation
    eval_group: int             # RL: samples per held-out prompt per evaluation
    drop: float                 # RL stops when gold is this far below its peak on two evaluations running
    max_new_tokens: int


FULL = Scale(
    sizes={"S": dict(n_layer=2, n_head=2, n_embd=48), "M": dict(n_layer=3, n_head=4, n_embd=80), "L": None},
    pretrain=None,  # S and M pretrain with L's recipe, so that size is all that differs
    pair_prompts=900, val_prompts=223, curated_train=3000, curated_val=0,
    rm=dict(max_steps=150, batch_size=16, eval_interval=50, checkpoint_interval=50, log_interval=25),
    bon_prompts=128, bon_pool=64, kl_pool=64,
    rl=dict(algo="rloo", steps=120, batch_prompts=16, group_size=4, lr=1e-4),
    eval_every=6, eval_prompts=96, eval_group=4, drop=0.1, max_new_tokens=48)

QUICK = Scale(
    sizes={"S": dict(n_layer=1, n_head=2, n_embd=16), "M": dict(n_layer=1, n_head=2, n_embd=24), "L": None},
    pretrain=dict(max_steps=3, batch_size=4, warmup_steps=1, eval_interval=3, checkpoint_interval=3, log_interval=1),
    pair_prompts=12, val_prompts=6, curated_train=20, curated_val=6,
    rm=dict(max_steps=3, batch_size=4, warmup_steps=1, eval_interval=3, checkpoint_interval=3, log_interval=1),
    bon_prompts=3, bon_pool=8, kl_pool=8,
    rl=dict(algo="rloo", steps=4, batch_prompts=2, group_size=2, lr=1e-3),
    eval_every=2, eval_prompts=3, eval_group=2, drop=0.1, max_new_tokens=8)


# ----- the formulas ------------------------------------------------------------------------

def best_of_n_expectation(proxy, values, n: int):
    """E[value of the proxy's favourite among n samples drawn without replacement from a pool of m].

    Sort the pool by proxy score, ascending: sample i (1-based) is the pick exactly when it is in
    the subset and the other n − 1 come from the i − 1 below it, so
        E = Σ_i C(i−1, n−1) / C(m, n) · v_(i).
    Unbiased for best-of-n of the sampler, and every n-subset counts (less noise than one draw).
    proxy, values: (B, m) -> (B,).
    """
    proxy, values = np.asarray(proxy, dtype=float), np.asarray(values, dtype=float)
    m = proxy.shape[1]
    order = np.argsort(proxy, axis=1, kind="stable")
    ranked = np.take_along_axis(values, order, axis=1)                               # (B, m)
    weights = np.array([math.comb(i, n - 1) for i in range(m)], dtype=float) / math.comb(m, n)  # (m,)
    return ranked @ weights                                                          # (B,)


def fit_bon(d, gain) -> tuple[float, float]:
    """Least squares of the best-of-n form R(d) = d(α − βd) = α·d − β·d²; returns (α, β)."""
    d = np.asarray(d, dtype=float)
    design = np.stack([d, -d * d], axis=1)                                           # (P, 2)
    (alpha, beta), *_ = np.linalg.lstsq(design, np.asarray(gain, dtype=float), rcond=None)
    return float(alpha), float(beta)


def fit_rl(d, gain) -> tuple[float, float]:
    """Least squares of the RL form R(d) = d(α − β log d) = α·d − β·d·log d (0 at d = 0); returns (α, β)."""
    d = np.asarray(d, dtype=float)
    d_log_d = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    design = np.stack([d, -d_log_d], axis=1)                                         # (P, 2)
    (alpha, beta), *_ = np.linalg.lstsq(design, np.asarray(gain, dtype=float), rcond=None)
    return float(alpha), float(beta)


def bon_form(d, alpha: float, beta: float):
    """R(d) = d(α − βd)."""
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * d)


def rl_form(d, alpha: float, beta: float):
    """R(d) = d(α − β log d), with R(0) = 0."""
    d = np.asarray(d, dtype=float)
    return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


def bon_peak(alpha: float, beta: float) -> tuple[float, float] | None:
    """The maximum of d(α − βd): d* = α / 2β, R* = α² / 4β (None when β <= 0: no peak)."""
    if beta <= 0 or alpha <= 0:
        return None
    return alpha / (2 * beta), alpha * alpha / (4 * beta)


def rl_peak(alpha: float, beta: float) -> tuple[float, float] | None:
    """The maximum of d(α − β log d): R' = α − β(log d + 1) = 0 gives d* = exp(α/β − 1), R* = β·d*."""
    if beta <= 0 or alpha / beta - 1 > 50:
        return None
    d_star = math.exp(alpha / beta - 1)
    return d_star, beta * d_star


def r_squared(y, predicted) -> float:
    """1 − Σ(y − ŷ)² / Σ(y − ȳ)²: the share of the variance a fitted curve explains."""
    y, predicted = np.asarray(y, dtype=float), np.asarray(predicted, dtype=float)
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else float("nan")


FORMS = {"bon": (fit_bon, bon_form, bon_peak), "rl": (fit_rl, rl_form, rl_peak)}


# ----- the study -------------------------------------------------------------------------

class Study:
    """Runs (or resumes) every piece under `out`, then fits, plots and writes the section."""

    def __init__(self, run_dir: str, out: str, sizes: list[str], seeds: int, scale: Scale,
                 corpus: str | None, corpus_val: str | None, prompts: str | None, heldout: str | None):
        self.run_dir, self.out, self.sizes, self.seeds, self.scale = run_dir, out, sizes, seeds, scale
        self.sft = os.path.join(run_dir, "sft")
        self.corpus, self.corpus_val = corpus, corpus_val
        layout = shipped()
        self.prompts = [r["prompt"] for r in read_prompts(prompts or layout.rl)]
        self.heldout_path = heldout or layout.held_out()
        self.heldout = list(dict.fromkeys(r["prompt"] for r in read_prompts(self.heldout_path)))
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def say(self, message: str) -> None:
        minutes, seconds = divmod(int(time.perf_counter() - self.start), 60)
        print(f"[overopt {minutes}:{seconds:02d}] {message}", file=sys.stderr, flush=True)

    def piece(self, name: str, work) -> dict:
        """Run `work(directory)` unless DIR/DONE.json says it finished; return its summary."""
        directory = os.path.join(self.out, name)
        marker = os.path.join(directory, DONE)
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                self.say(f"{name}: already finished, skipped")
                return json.load(f)
        os.makedirs(directory, exist_ok=True)
        self.say(f"{name}: starting")
        began = time.perf_counter()
        summary = {**work(directory), "seconds": time.perf_counter() - began}
        write_json_atomic(marker, summary)
        self.say(f"{name}: done in {summary['seconds']:.0f} s")
        return summary

    def run(self) -> dict:
        if not os.path.exists(os.path.join(self.sft, "checkpoint", "config.json")) and \
                not os.path.exists(os.path.join(self.sft, "config.json")):
            raise UserError(f"{self.run_dir} has no finished SFT model in sft/: pass a class run directory "
                            "(`minillm pipeline --out`)")
        os.makedirs(self.out, exist_ok=True)
        spent = self._spent_before()
        try:
            return self._run(spent)
        finally:  # an interrupted call's time counts too: the total covers every call
            self._add_spent(spent)

    def _run(self, spent: dict) -> dict:
        pairs = self.piece("pairs", self._pairs)
        inits = {s: self._init(s) for s in self.sizes}
        rms = {}
        for size in self.sizes:
            for seed in range(self.seeds):
                name = f"rm-{size}-seed{seed}"
                rms[(size, seed)] = self.piece(name, lambda d, s=size, k=seed: self._reward_model(d, inits[s], k))
        pool = self.piece("bon-pool", self._bon_pool)
        bon = {key: self.piece(f"bon-{key[0]}-seed{key[1]}", lambda d, k=key: self._bon(d, k)) for key in rms}
        rl_runs = {key: self.piece(f"rl-{key[0]}-seed{key[1]}", lambda d, k=key: self._rl(d, k)) for key in rms}
        results = analyse(self.sizes, self.seeds, rms, pool, bon, rl_runs)
        results["pairs"] = pairs
        results["pretrained"] = {s: pretrained_summary(inits[s]) for s in self.sizes}
        results["scale"] = asdict(self.scale)
        results["time"] = self._totals(spent)
        png = plot(results, os.path.join(self.out, "overoptimization.png"))
        write_json_atomic(os.path.join(self.out, "results.json"), results)
        write_text_atomic(os.path.join(self.out, "results_section.md"), section(results, os.path.basename(png)))
        print(table(results))
        self.say(f"total wall time {results['time']['wall_seconds'] / 60:.1f} min over {results['time']['calls']} "
                 f"call(s); results_section.md, results.json and {os.path.basename(png)} are in {self.out}")
        return results

    def _spent_before(self) -> dict:
        """Wall and CPU seconds of the earlier calls on this study (cpu_seconds None where one was not timed)."""
        path = os.path.join(self.out, "wall_time.json")
        if not os.path.exists(path):
            return {"seconds": 0.0, "cpu_seconds": 0.0, "calls": 0}
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return {"seconds": float(saved["seconds"]), "cpu_seconds": saved.get("cpu_seconds"),
                "calls": int(saved.get("calls", 1))}

    def _totals(self, before: dict) -> dict:
        """Wall time and this process's CPU time (user + system, all threads) over every call so far."""
        cpu = before["cpu_seconds"]
        return {"wall_seconds": before["seconds"] + time.perf_counter() - self.start,
                "cpu_seconds": None if cpu is None else cpu + time.process_time() - self.cpu_start,
                "calls": before["calls"] + 1, "load_average_at_end": os.getloadavg()[0], "cores": os.cpu_count()}

    def _add_spent(self, before: dict) -> None:
        """Add this call's time to wall_time.json (a resumed study adds up)."""
        totals = self._totals(before)
        write_json_atomic(os.path.join(self.out, "wall_time.json"),
                          {"seconds": totals["wall_seconds"], "cpu_seconds": totals["cpu_seconds"],
                           "calls": totals["calls"]})

    # ----- the pieces ------------------------------------------------------------------

    def _pairs(self, directory: str) -> dict:
        """Two SFT answers to each training prompt, ordered by gold_score; train and validation files."""
        sft = checkpoint.load(self.sft)
        sft.model.eval()
        n_train, n_val = self.scale.pair_prompts, self.scale.val_prompts
        chosen = self.prompts[:n_train + n_val]
        pairs = gold_labelled_pairs(sft.model, sft.tokenizer, chosen, seed=4242)
        train = [p for p in pairs if p["prompt"] in set(chosen[:n_train])]
        val = [p for p in pairs if p["prompt"] not in set(chosen[:n_train])]
        curated = read_preferences(shipped().preferences)[:self.scale.curated_train]
        curated_val = read_preferences(shipped().preferences_val)[:self.scale.curated_val]
        for name, rows in (("train.jsonl", train + curated), ("val.jsonl", val + curated_val)):
            write_text_atomic(os.path.join(directory, name), "".join(json.dumps(r) + "\n" for r in rows))
        self.say(f"pairs: {len(train)} training and {len(val)} validation pairs of SFT answers from {len(chosen)} "
                 f"prompts (pairs with a gold gap under 0.1 dropped), plus {len(curated)} and {len(curated_val)} "
                 "shipped pairs")
        return {"on_policy_train": len(train), "on_policy_val": len(val), "prompts": len(chosen),
                "curated_train": len(curated), "curated_val": len(curated_val)}

    def _init(self, size: str) -> str:
        """The pretrained model a reward model of this size starts from (pretrained here if needed)."""
        if self.scale.sizes[size] is None:
            return os.path.join(self.run_dir, "pretrain")
        name = f"pretrain-{size}"
        self.piece(name, lambda d: self._pretrain(d, size))
        return os.path.join(self.out, name)

    def _pretrain(self, directory: str, size: str) -> dict:
        block = checkpoint.read_config(os.path.join(self.run_dir, "pretrain")).block_size
        tokenizer = os.path.join(self.run_dir, "pretrain", "checkpoint", "tokenizer.json")
        if not os.path.exists(tokenizer):
            tokenizer = os.path.join(self.run_dir, "pretrain", "tokenizer.json")
        recipe = self.scale.pretrain
        if recipe is None:  # the class run's own pretraining settings, saved with its model
            recipe = checkpoint.load(os.path.join(self.run_dir, "pretrain")).meta["train_config"]
        summary = PretrainRun(out=directory, preset="shakespeare-char", data=self.corpus or shipped().pretrain,
                              val=self.corpus_val or (shipped().pretrain_val if self.corpus is None else None),
                              tokenizer=f"file:{tokenizer}", overrides=dict(recipe),
                              model_overrides={**self.scale.sizes[size], "block_size": block, "dropout": 0.0},
                              resume=os.path.isdir(os.path.join(directory, "checkpoint")), quiet=True).run()
        self.say(f"pretrain-{size}: {summary['parameters']:,} parameters, validation loss {summary['val_loss']:.3f}")
        return {"parameters": summary["parameters"], "val_loss": summary["val_loss"]}

    def _reward_model(self, directory: str, init: str, seed: int) -> dict:
        run = RewardRun(init=init, out=directory, data=os.path.join(self.out, "pairs", "train.jsonl"),
                        val=os.path.join(self.out, "pairs", "val.jsonl"),
                        # RewardRun's own agreement check samples from `init` (here a pretrained model, not
                        # the policy): one prompt keeps it cheap; val.jsonl holds the SFT answers instead
                        prompts=self.heldout_path, agreement_prompts=1,
                        overrides={**self.scale.rm, "seed": 1000 + seed},
                        resume=os.path.isdir(os.path.join(directory, "checkpoint")), quiet=True)
        summary = run.run()
        rm = load_reward_model(directory)
        sft_vocab = checkpoint.load(self.sft).tokenizer.vocab_size
        if rm.config.vocab_size != sft_vocab:
            raise UserError(f"{init}'s tokenizer ({rm.config.vocab_size} tokens with the chat tokens) is not the "
                            f"SFT model's ({sft_vocab}): every reward model must read the policy's tokens")
        params = rm.num_parameters() if hasattr(rm, "num_parameters") else sum(p.data.size for p in rm.parameters())
        self.say(f"{os.path.basename(directory)}: {params:,} parameters, validation accuracy "
                 f"{summary['val_accuracy']:.3f} on {summary['val_pairs']} pairs")
        return {"parameters": int(params), "val_accuracy": summary["val_accuracy"], "val_loss": summary["val_loss"]}

    def _bon_pool(self, directory: str) -> dict:
        """bon_pool + kl_pool samples of the SFT model for each held-out prompt, with their gold scores."""
        sft = checkpoint.load(self.sft)
        policy, tok = sft.model.eval(), sft.tokenizer
        prompts = self.heldout[:self.scale.bon_prompts]
        ids = encode_prompts(tok, prompts, policy.config.block_size, self.scale.max_new_tokens)
        end = chat.chat_token_ids(tok).end
        m = self.scale.bon_pool + self.scale.kl_pool
        responses, gold = [], []
        for start in range(0, len(ids), POOL_CHUNK):  # a few prompts at a time: B·m rows share one KV cache
            chunk = ids[start:start + POOL_CHUNK]
            ro = rl.sample_rollouts(policy, policy, chunk, m, self.scale.max_new_tokens, end, 1.0, seed=777 + start)
            scored = score_rollouts(ro, None, tok, [p for p in prompts[start:start + POOL_CHUNK] for _ in range(m)], 0.0)
            responses += ro.responses()
            gold += scored["gold"]
        data = {"prompts": prompts, "prompt_ids": ids, "responses": responses, "gold": gold, "m": m}
        with open(os.path.join(directory, "pool.json"), "w", encoding="utf-8") as f:
            json.dump(data, f)
        distinct = np.mean([len({tuple(r) for r in responses[i * m:(i + 1) * m]}) for i in range(len(prompts))])
        return {"prompts": len(prompts), "samples_per_prompt": m, "mean_gold": float(np.mean(gold)),
                "distinct_per_prompt": float(distinct)}

    def _bon(self, directory: str, key) -> dict:
        """Best-of-n curves of one reward model on the pool: gold, proxy, KL (closed form and sampled)."""
        with open(os.path.join(self.out, "bon-pool", "pool.json"), encoding="utf-8") as f:
            pool = json.load(f)
        rm = load_reward_model(os.path.join(self.out, f"rm-{key[0]}-seed{key[1]}")).eval()
        tok = checkpoint.load(self.sft).tokenizer
        m, B = pool["m"], len(pool["prompts"])
        rows = [p for p in pool["prompt_ids"] for _ in range(m)]
        proxy = np.concatenate([backend.to_numpy(rl.reward_model_scores(rm, rows[i:i + 256], pool["responses"][i:i + 256],
                                                                        chat.chat_token_ids(tok).end))
                                for i in range(0, len(rows), 256)]).reshape(B, m)   # (B, m)
        gold = np.asarray(pool["gold"], dtype=float).reshape(B, m)                  # (B, m)
        k = self.scale.bon_pool
        pick, fresh = (proxy[:, :k], gold[:, :k]), proxy[:, k:]                      # pools for picks and F̂
        points = []
        n = 1
        while n <= k:
            groups = k // n  # disjoint best-of-n draws per prompt for the sampled KL
            winners = proxy[:, :groups * n].reshape(B * groups, n).max(axis=1)       # (B·groups,)
            sampled = best_of_n_kl_estimate(winners, np.repeat(fresh, groups, axis=0), n)
            points.append({"n": n, "kl": best_of_n_kl(n), "kl_sampled": sampled,
                           "gold": float(best_of_n_expectation(*pick, n).mean()),
                           "proxy": float(best_of_n_expectation(pick[0], pick[0], n).mean())})
            n *= 2
        return {"points": points}

    def _rl(self, directory: str, key) -> dict:
        """RLOO against one reward model with β = 0; held-out gold, proxy and KL every eval_every steps."""
        sc = self.scale
        sft = checkpoint.load(self.sft)
        policy, reference, tok = sft.model.eval(), checkpoint.load(self.sft).model.eval(), sft.tokenizer
        rm = load_reward_model(os.path.join(self.out, f"rm-{key[0]}-seed{key[1]}")).eval()
        cfg = RLHFConfig(**{**sc.rl, "beta": 0.0, "max_new_tokens": sc.max_new_tokens, "seed": 2000 + key[1]})
        models = Models(policy, reference, rm)
        optimizer = optim.AdamW(policy.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        block = policy.config.block_size
        prompt_ids = encode_prompts(tok, self.prompts, block, cfg.max_new_tokens)
        heldout = self.heldout[:sc.eval_prompts]
        heldout_ids = encode_prompts(tok, heldout, block, cfg.max_new_tokens)
        log, evals, stop = [], [], "step cap"
        for step in range(cfg.steps + 1):
            if step % sc.eval_every == 0 or step == cfg.steps:
                evals.append({"step": step, **held_out_eval(models, tok, heldout, heldout_ids, cfg, sc.eval_group, step)})
                e = evals[-1]
                self.say(f"rl-{key[0]}-seed{key[1]} step {step}: held-out gold {e['gold']:+.3f}, proxy "
                         f"{e['proxy']:+.3f}, KL {e['kl']:.2f} nats")
                if turned_down([x["gold"] for x in evals], sc.drop):
                    stop = f"gold turned down (two evaluations {sc.drop} below the peak) at step {step}"
                    break
            if step == cfg.steps:
                break
            batch = choose_prompts(len(self.prompts), cfg.batch_prompts, cfg.seed, step)
            record = rl_step(models, optimizer, tok, [self.prompts[i] for i in batch],
                             [prompt_ids[i] for i in batch], cfg, 0.0, step)
            log.append({"step": step + 1, **{k: record[k] for k in ("rm_score", "gold", "kl", "entropy")}})
        with open(os.path.join(directory, "log.json"), "w", encoding="utf-8") as f:
            json.dump({"train": log, "eval": evals}, f)
        return {"evals": evals, "stopped": stop, "steps": log[-1]["step"] if log else 0, "config": asdict(cfg)}


def pretrained_summary(directory: str) -> dict:
    """Size, pretraining steps and validation loss of the model a reward model started from."""
    with open(os.path.join(directory, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    return {"parameters": summary["parameters"], "steps": summary["step"], "val_loss": summary["val_loss"]}


def held_out_eval(models: Models, tok, prompts: list[str], ids: list, cfg: RLHFConfig, group: int, step: int) -> dict:
    """Gold, proxy and KL(π ‖ π_SFT) per response on `group` samples of the policy per held-out prompt.

    KL is the exact per-token KL of the two next-token distributions summed along each sample
    (`rl.exact_kl`, always >= 0); kl_sampled is the plain Σ_t log π/π_ref of the samples.
    """
    end = chat.chat_token_ids(tok).end
    ro = rl.sample_rollouts(models.policy, models.reference, ids, group, cfg.max_new_tokens, end, 1.0,
                            seed=cfg.seed + 100_003 * (step + 1))
    scored = score_rollouts(ro, models.reward_model, tok, [p for p in prompts for _ in range(group)], 0.0)
    with no_grad():
        logp = response_log_softmax(models.policy, ro.prompt_ids, ro.response_ids)
        ref = response_log_softmax(models.reference, ro.prompt_ids, ro.response_ids)
    return {"gold": float(np.mean(scored["gold"])), "proxy": float(backend.to_numpy(scored["scores"]).mean()),
            "kl": float(backend.to_numpy(rl.exact_kl(logp, ref, ro.response_mask)).mean()),
            "kl_sampled": float(backend.to_numpy(scored["kl"]).mean())}


def turned_down(golds: list[float], drop: float) -> bool:
    """True when the last two evaluations are both at least `drop` below the best one before them."""
    if len(golds) < 3:
        return False
    peak = max(golds[:-2])
    return golds[-1] <= peak - drop and golds[-2] <= peak - drop


# ----- analysis ----------------------------------------------------------------------------

def curves(sizes, seeds, bon, rl_runs) -> dict:
    """Per (method, size): per seed, the points (d, gold gain, proxy gain, gold, proxy)."""
    out = {}
    for size in sizes:
        for seed in range(seeds):
            pts = bon[(size, seed)]["points"]
            g0, p0 = pts[0]["gold"], pts[0]["proxy"]
            out.setdefault(f"bon/{size}", []).append(
                [{"d": math.sqrt(p["kl"]), "kl": p["kl"], "gain": p["gold"] - g0, "proxy_gain": p["proxy"] - p0,
                  "gold": p["gold"], "proxy": p["proxy"], "x": p["n"]} for p in pts])
            ev = rl_runs[(size, seed)]["evals"]
            g0, p0 = ev[0]["gold"], ev[0]["proxy"]
            out.setdefault(f"rl/{size}", []).append(
                [{"d": math.sqrt(max(e["kl"], 0.0)), "kl": e["kl"], "gain": e["gold"] - g0,
                  "proxy_gain": e["proxy"] - p0, "gold": e["gold"], "proxy": e["proxy"], "x": e["step"]} for e in ev])
    return out


def fit_curve(method: str, seeds_points: list[list[dict]]) -> dict:
    """Both forms fitted to the gold gain of every seed's points; the method's own form's peak."""
    d = np.array([p["d"] for pts in seeds_points for p in pts])
    gain = np.array([p["gain"] for pts in seeds_points for p in pts])
    fits = {}
    for form, (fit, curve, peak) in FORMS.items():
        alpha, beta = fit(d, gain)
        fits[form] = {"alpha": alpha, "beta": beta, "r2": r_squared(gain, curve(d, alpha, beta)),
                      "peak": peak(alpha, beta)}
    base = float(np.mean([pts[0]["gold"] for pts in seeds_points]))
    own = fits[method]
    return {"fits": fits, "alpha": own["alpha"], "beta": own["beta"], "r2": own["r2"], "gold_init": base,
            "d_star": own["peak"][0] if own["peak"] else None,
            "gold_star": base + own["peak"][1] if own["peak"] else None, "points": len(d),
            "d_max": float(d.max())}


SMOOTHING = {"bon": 1, "rl": 3}  # RL's evaluations are noisy samples: its curves are read as 3-point means
CLOSE_FIT = 0.05                 # two forms whose R² differ by less than this fit a curve equally well
KEEPS_GAIN = 0.9                 # a proxy "keeps rising" when it ends with at least this share of its best gain


def moving_average(values, window: int):
    """The mean of every `window` consecutive values: (P,) -> (P − window + 1,)."""
    return np.convolve(np.asarray(values, dtype=float), np.ones(window) / window, mode="valid")


def shape(seeds_points: list[list[dict]], window: int = 1) -> dict:
    """What the measured curves (mean over seeds, in order of n or step, `window`-point means) do.

    proxy_keeps_gain: the proxy's last value is at least KEEPS_GAIN of its best gain (it never turns
    down); gold_fall: gold's best value minus its last; peak_inside: gold's best is neither the first
    nor the last point (it rose, then fell).
    """
    length = min(len(p) for p in seeds_points)
    mean = lambda key: np.mean([[p[key] for p in pts[:length]] for pts in seeds_points], axis=0)  # noqa: E731
    proxy, gold, d = (moving_average(mean(k), window) for k in ("proxy_gain", "gain", "d"))
    top = int(np.argmax(gold))
    return {"proxy_rises": int((np.diff(mean("proxy_gain")) > 0).sum()), "proxy_steps": length - 1,
            "proxy_final": float(proxy[-1]), "proxy_best": float(proxy.max()),
            "proxy_keeps_gain": bool(proxy[-1] >= KEEPS_GAIN * proxy.max()),
            "gold_peak_gain": float(gold[top]), "gold_peak_d": float(d[top]), "gold_final_gain": float(gold[-1]),
            "d_final": float(d[-1]), "gold_fall": float(gold[top] - gold[-1]), "peak_inside": 0 < top < len(gold) - 1,
            "window": window}


def analyse(sizes, seeds, rms, pool, bon, rl_runs) -> dict:
    all_curves = curves(sizes, seeds, bon, rl_runs)
    fits = {key: fit_curve(key.split("/")[0], pts) for key, pts in all_curves.items()}
    shapes = {key: shape(pts, SMOOTHING[key.split("/")[0]]) for key, pts in all_curves.items()}
    rm_table = {size: {"parameters": rms[(size, 0)]["parameters"],
                       "val_accuracy": [rms[(size, s)]["val_accuracy"] for s in range(seeds)]} for size in sizes}
    kl_check = {size: [[p["n"], p["kl"], p["kl_sampled"]] for p in bon[(size, 0)]["points"]] for size in sizes}
    stops = {f"{size}/seed{s}": rl_runs[(size, s)]["stopped"] for size in sizes for s in range(seeds)}
    results = {"sizes": sizes, "seeds": seeds, "curves": all_curves, "fits": fits, "shapes": shapes,
               "reward_models": rm_table, "bon_pool": pool, "kl_check": kl_check, "rl_stopped": stops}
    results["findings"] = findings(results)
    return results


def findings(r: dict) -> list[dict]:
    """The paper's four findings, each judged on the measured numbers (rules in the text)."""
    sizes, fits, shapes = r["sizes"], r["fits"], r["shapes"]
    keys = [f"{m}/{s}" for m in ("bon", "rl") for s in sizes]
    # 1: the proxy keeps its gain while gold peaks inside the range and falls by >= 0.05
    ok1 = [k for k in keys if shapes[k]["proxy_keeps_gain"] and shapes[k]["peak_inside"]
           and shapes[k]["gold_fall"] >= 0.05]
    f1 = {"finding": "proxy rises monotonically while gold peaks and falls",
          "rule": f"the proxy ends with at least {KEEPS_GAIN:.0%} of its best gain, and gold peaks after d = 0 "
                  "and ends at least 0.05 below its peak (seed means; RL as 3-point means of its evaluations)",
          "holds_for": ok1, "of": keys,
          "numbers": {k: {kk: shapes[k][kk] for kk in ("proxy_rises", "proxy_steps", "proxy_final", "proxy_best", "window",
                                                         "gold_peak_gain", "gold_peak_d", "gold_final_gain", "gold_fall")}
                      for k in keys}}
    f1["status"] = _status(len(ok1), len(keys))
    # 2: each method's own form fits its points better (higher R²) than the other form
    ok2 = [k for k in keys if fits[k]["fits"][k.split("/")[0]]["r2"] >= fits[k]["fits"][_other(k)]["r2"]]
    f2 = {"finding": "best-of-n follows d(α − βd), RL follows d(α − β log d)", "holds_for": ok2, "of": keys,
          "rule": "the method's own form explains at least as much of the gold gain's variance (R²) as the other form",
          "numbers": {k: {form: round(fits[k]["fits"][form]["r2"], 3) for form in FORMS} for k in keys}}
    f2["status"] = _status(len(ok2), len(keys))
    # 3: the peak d* (and gold*) grows with reward-model size, per method
    ordered = sorted(sizes, key=lambda s: r["reward_models"][s]["parameters"])
    f3_numbers, ok3, of3 = {}, [], []
    for method in ("bon", "rl"):
        d_stars = [fits[f"{method}/{s}"]["d_star"] for s in ordered]
        f3_numbers[method] = {s: {"d_star": fits[f"{method}/{s}"]["d_star"], "gold_star": fits[f"{method}/{s}"]["gold_star"],
                                  "d_max": fits[f"{method}/{s}"]["d_max"],
                                  "alpha": fits[f"{method}/{s}"]["alpha"], "beta": fits[f"{method}/{s}"]["beta"]}
                              for s in ordered}
        of3.append(method)
        if len(ordered) > 1 and all(x is not None for x in d_stars) and all(a < b for a, b in zip(d_stars, d_stars[1:])):
            ok3.append(method)
    f3 = {"finding": "larger reward models over-optimise later (d* grows with size)", "holds_for": ok3, "of": of3,
          "rule": "the fitted peak d* rises from S to M to L, per method",
          "numbers": f3_numbers, "monotone": {m: {c: monotone([v[c] for v in f3_numbers[m].values()]) for c in ("alpha", "beta")}
                                              for m in f3_numbers}}
    f3["status"] = _status(len(ok3), len(of3)) if len(ordered) > 1 else "not tested (one size)"
    # 4: RL needs more KL than best-of-n to reach the same gold (half the lower of the two measured peaks)
    f4_numbers, ok4 = {}, []
    for s in sizes:
        level = 0.5 * min(shapes[f"bon/{s}"]["gold_peak_gain"], shapes[f"rl/{s}"]["gold_peak_gain"])
        reach = {m: first_d_reaching(r["curves"][f"{m}/{s}"], level) for m in ("bon", "rl")}
        f4_numbers[s] = {"gold_gain_level": level, "d_bon": reach["bon"], "d_rl": reach["rl"]}
        rl_range = max(p["d"] for pts in r["curves"][f"rl/{s}"] for p in pts)
        if level > 0 and reach["bon"] is not None and (
                reach["rl"] > reach["bon"] if reach["rl"] is not None else rl_range > reach["bon"]):
            ok4.append(s)
    f4 = {"finding": "RL spends more KL than best-of-n for the same gold", "holds_for": ok4, "of": sizes,
          "rule": "the seed-mean gold gain reaches half the lower of the two methods' peaks at a larger d under RL "
                  "(or never, within a larger d range) than under best-of-n",
          "numbers": f4_numbers}
    f4["status"] = _status(len(ok4), len(sizes))
    return [f1, f2, f3, f4]


def monotone(values: list[float]) -> str:
    """'rising', 'falling' or 'neither' along the list (sizes in order of parameters)."""
    if len(values) < 2:
        return "untested (one size)"
    steps = np.diff(values)
    return "rising" if (steps > 0).all() else "falling" if (steps < 0).all() else "neither"


def _other(key: str) -> str:
    return "rl" if key.startswith("bon") else "bon"


def _status(ok: int, of: int) -> str:
    return "reproduced" if ok == of else "not reproduced" if ok == 0 else f"partly reproduced ({ok} of {of})"


def first_d_reaching(seeds_points: list[list[dict]], level: float) -> float | None:
    """The smallest d (mean over seeds) at which the seed-mean gold gain reaches `level`, interpolated."""
    length = min(len(p) for p in seeds_points)
    d = np.mean([[p["d"] for p in pts[:length]] for pts in seeds_points], axis=0)
    gain = np.mean([[p["gain"] for p in pts[:length]] for pts in seeds_points], axis=0)
    for i in range(1, length):
        if gain[i] >= level > gain[i - 1]:
            t = (level - gain[i - 1]) / (gain[i] - gain[i - 1])
            return float(d[i - 1] + t * (d[i] - d[i - 1]))
    return None


# ----- the outputs -------------------------------------------------------------------------

def plot(results: dict, png_path: str) -> str:
    """Gold and proxy gain against d = sqrt(KL) per method and size: mean over seeds, band min..max."""
    from matplotlib.figure import Figure

    from minillm.io.plots import use_projector_style

    use_projector_style()
    fig = Figure(figsize=(13, 8), dpi=100)
    axes = fig.subplots(2, 2)
    colours = dict(zip(results["sizes"], ("tab:orange", "tab:green", "tab:blue", "tab:red")))
    for row, method in enumerate(("bon", "rl")):
        for col, value in enumerate(("gain", "proxy_gain")):
            ax = axes[row][col]
            for size in results["sizes"]:
                pts = results["curves"][f"{method}/{size}"]
                length = min(len(p) for p in pts)
                d = np.mean([[p["d"] for p in s[:length]] for s in pts], axis=0)
                y = np.array([[p[value] for p in s[:length]] for s in pts])
                label = f"RM {size} ({results['reward_models'][size]['parameters'] / 1e6:.2f}M)"
                ax.plot(d, y.mean(axis=0), "o-", ms=3, color=colours[size], label=label)
                ax.fill_between(d, y.min(axis=0), y.max(axis=0), color=colours[size], alpha=0.2)
                if value == "gain":
                    fit = results["fits"][f"{method}/{size}"]
                    grid = np.linspace(0, max(d.max(), 1e-3) * 1.05, 100)
                    ax.plot(grid, FORMS[method][1](grid, fit["alpha"], fit["beta"]), "--", color=colours[size], lw=1)
            name = "best-of-n" if method == "bon" else "RL (RLOO, β = 0)"
            ax.set_title(f"{name}: {'gold' if value == 'gain' else 'proxy (RM)'} gain over SFT")
            ax.set_xlabel("d = sqrt(KL(π ‖ π_SFT)), sqrt(nats)")
            ax.axhline(0, color="gray", lw=0.8)
            ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path)
    return png_path


def _peak_text(fit: dict) -> tuple[str, str]:
    """d* and gold* as table cells; a peak beyond the largest measured d is an extrapolation, marked."""
    if fit["d_star"] is None:
        return "none (β ≤ 0)", "—"
    beyond = f" (beyond the measured d ≤ {fit['d_max']:.2f})" if fit["d_star"] > fit["d_max"] else ""
    return f"{fit['d_star']:.2f}{beyond}", f"{fit['gold_star']:+.3f}"


def table(results: dict) -> str:
    """The fitted table in Markdown: one row per method and size."""
    lines = ["| method | RM | RM params | RM val. accuracy | α | β | R² (own form) | R² (other form) | d* | gold* | gold at d = 0 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method in ("bon", "rl"):
        for size in results["sizes"]:
            fit, rm = results["fits"][f"{method}/{size}"], results["reward_models"][size]
            acc = ", ".join(f"{a:.3f}" for a in rm["val_accuracy"])
            d_star, gold_star = _peak_text(fit)
            lines.append(f"| {'best-of-n' if method == 'bon' else 'RL'} | {size} | {rm['parameters']:,} | {acc} | "
                         f"{fit['alpha']:.3f} | {fit['beta']:.3f} | {fit['r2']:.3f} | "
                         f"{fit['fits'][_other(method)]['r2']:.3f} | {d_star} | {gold_star} | {fit['gold_init']:+.3f} |")
    return "\n".join(lines)


def section(results: dict, png_name: str) -> str:
    """results_section.md: the figure, the table, the KL check, the four findings, the wall time."""
    sc, pool = results["scale"], results["bon_pool"]
    md = ["## Reward-model over-optimisation (Gao, Schulman & Hilton 2022, at class scale)", "",
          "Proxy reward models of three sizes learn `gold_score`'s preferences between two answers of the class "
          "run's SFT model; best-of-n and RL (RLOO with no KL penalty) then optimise against each proxy, and "
          "the gold score is read on held-out prompts. d = sqrt(KL(π ‖ π_SFT)); the gold *gain* is the gold "
          f"score minus that of the SFT model's own samples. {results['seeds']} seeds (the reward model's "
          "training seed, and with it the RL seed; best-of-n's samples are shared, so its band shows the reward "
          "models' differences alone); bands span the seeds (min to max), dashed lines are the fits.", "",
          f"![gold and proxy against d]({png_name})", "",
          table(results), "",
          "Reward models start from pretrained models of their size (GPT parameters, pretraining steps, "
          "validation loss on the corpus): " + "; ".join(
              f"{s} {p['parameters']:,}, {p['steps']} steps, {p['val_loss']:.3f}" for s, p in results["pretrained"].items())
          + ". L is the class run's own pretrained model; " + pretraining_note(results) + " Validation accuracy is on pairs of SFT answers to training prompts that none "
          f"of the reward models saw ({results['pairs']['on_policy_val']} pairs); each was trained on "
          f"{results['pairs']['on_policy_train']} such pairs and {results['pairs']['curated_train']} shipped ones.", "",
          f"Fits: least squares on every seed's points; best-of-n R(d) = d(α − βd) (peak d* = α/2β), RL "
          f"R(d) = d(α − β log d) (peak d* = e^(α/β − 1)); gold* = gold at d = 0 + R(d*). R² of the other "
          "method's form on the same points is shown for comparison.", "",
          f"Best-of-n: {pool['prompts']} held-out prompts, a pool of {sc['bon_pool']} SFT samples each "
          f"(τ = 1; on average {pool['distinct_per_prompt']:.1f} distinct answers among all "
          f"{pool['samples_per_prompt']} samples of a prompt), the pick's gold averaged over every n-subset of the pool. "
          "KL of best-of-n from the closed form log n − (n−1)/n; checked against the estimate from "
          f"{sc['kl_pool']} further samples per prompt (`best_of_n_kl_estimate`, which counts reward ties):", ""]
    for size, rows in results["kl_check"].items():
        md.append(f"- RM {size} (seed 0): " + ", ".join(f"n={n}: {kl:.2f} vs {s:.2f}" for n, kl, s in rows))
    rl_cfg = sc["rl"]
    md += ["", f"RL: RLOO, {rl_cfg['batch_prompts']} prompts × {rl_cfg['group_size']} samples a step, lr "
           f"{rl_cfg['lr']}, β = 0, at most {rl_cfg['steps']} steps; every {sc['eval_every']} steps "
           f"{sc['eval_group']} samples for each of {sc['eval_prompts']} held-out prompts give gold, proxy and "
           "the KL (exact per-token KL summed along each sample). Stopped:", ""]
    md += [f"- {k}: {v}" for k, v in results["rl_stopped"].items()]
    md += ["", "### The paper's four findings, on these measurements", ""]
    for i, f in enumerate(results["findings"], 1):
        md.append(f"{i}. **{f['finding']}: {f['status']}** (holds for {', '.join(f['holds_for']) or 'none'} "
                  f"of {', '.join(f['of'])}).")
        md.append(f"   Rule: {f['rule']}. {describe(i, f)}")
    t = results["time"]
    cpu = ("CPU time not recorded for every call" if t["cpu_seconds"] is None else
           f"the study's process used {t['cpu_seconds'] / 60:.1f} min of CPU time (user + system, all threads)")
    md += ["", f"Total wall time of the study: {t['wall_seconds'] / 60:.1f} min on this machine, over {t['calls']} "
           f"call(s) of the command (every piece; later calls only redo the analysis); {cpu}. The machine's "
           f"1-minute load average was {t['load_average_at_end']:.1f} on {t.get('cores', 'its')} cores when it ended "
           "(the study's own threads count in it)."]
    return "\n".join(md) + "\n"


def pretraining_note(results: dict) -> str:
    """Whether the smaller models were pretrained as L was, so that size is the one difference."""
    steps = {p["steps"] for p in results["pretrained"].values()}
    if results["scale"]["pretrain"] is None and len(steps) == 1:
        return "S and M were pretrained with its settings (steps, batch, learning rate), so size is what differs."
    return "S and M were pretrained with other settings: size and pretraining differ together."


def describe(i: int, f: dict) -> str:
    """One line of the numbers behind finding i."""
    n = f["numbers"]
    if i == 1:
        return "; ".join(f"{k}: proxy rose in {v['proxy_rises']} of {v['proxy_steps']} steps, ended at "
                         f"{v['proxy_final']:+.2f} (best {v['proxy_best']:+.2f}), gold gain peaked at {v['gold_peak_gain']:+.3f} (d = "
                         f"{v['gold_peak_d']:.2f}) and ended at {v['gold_final_gain']:+.3f}" for k, v in n.items())
    if i == 2:
        ties = [k for k, v in n.items() if abs(v[k.split("/")[0]] - v[_other(k)]) < CLOSE_FIT]
        tied = (f" The two forms fit {', '.join(ties)} within {CLOSE_FIT} of each other in R²: there the points do "
                "not tell the forms apart, whichever is ahead.") if ties else ""
        return "R² own form / other form: " + "; ".join(
            f"{k}: {v[k.split('/')[0]]:.3f} / {v[_other(k)]:.3f}" for k, v in n.items()) + "." + tied
    if i == 3:
        parts = []
        for method, by_size in n.items():
            parts.append(f"{method}: " + ", ".join(
                f"{s} d* {'none' if v['d_star'] is None else format(v['d_star'], '.2f')}"
                f"{' (measured up to ' + format(v['d_max'], '.2f') + ')' if v['d_star'] and v['d_star'] > v['d_max'] else ''} "
                f"(α {v['alpha']:.3f}, β {v['beta']:.3f})" for s, v in by_size.items())
                + f"; with size α is {f['monotone'][method]['alpha']}, β {f['monotone'][method]['beta']}")
        return "; ".join(parts)
    return "; ".join(f"RM {s}: gold gain {v['gold_gain_level']:+.3f} reached at d = "
                     f"{'never' if v['d_bon'] is None else format(v['d_bon'], '.2f')} by best-of-n and "
                     f"{'never' if v['d_rl'] is None else format(v['d_rl'], '.2f')} by RL" for s, v in n.items())


# ----- the command -------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the class run directory (its sft/ and pretrain/ are read, never written)")
    parser.add_argument("--sizes", default="S,M,L", help="reward-model sizes, comma-separated: S, M, L")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per size (reward model and RL)")
    parser.add_argument("--out", default="runs/overopt")
    parser.add_argument("--quick", action="store_true", help="tiny models and a few points (the tests)")
    parser.add_argument("--corpus", help="pretraining text for S and M (default: the shipped corpus)")
    parser.add_argument("--corpus-val", help="its validation text (default: shipped, or 10%% of --corpus)")
    parser.add_argument("--prompts", help="training prompts .jsonl (default: the shipped data/rl/train.jsonl)")
    parser.add_argument("--heldout", help="held-out prompts .jsonl (default: the shipped data/rl/heldout.jsonl)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    scale = QUICK if args.quick else FULL
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    try:
        unknown = [s for s in sizes if s not in scale.sizes]
        if unknown or not sizes:
            raise UserError(f"unknown size(s) {', '.join(unknown) or '(none)'}: expected a comma-separated "
                            f"list of {', '.join(scale.sizes)}")
        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        Study(args.run, args.out, sizes, args.seeds, scale, args.corpus, args.corpus_val, args.prompts,
              args.heldout).run()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
