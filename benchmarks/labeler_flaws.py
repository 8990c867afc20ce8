"""Study: how a flawed labeler's mistakes travel through the reward model into the policy.

Run:  nice -n 10 python benchmarks/labeler_flaws.py --out runs/flaws            (class scale)
      python benchmarks/labeler_flaws.py --quick --run RUN --out DIR             (plumbing, seconds)

From the class run's SFT model (--run, default runs/pipeline; read only), for each labeler of
`SETTINGS` (label noise 0, 0.1, 0.2, 0.3; length bias off and on): label the reward model's
training pairs with that labeler (the shipped pairs, relabelled by `minillm data preferences`'s
code, plus the SFT model's own answer pairs that the classroom pipeline adds, relabelled the same
way), train a reward model and run RLHF with the classroom preset's settings, and measure the
chain: labeler agreement with gold -> reward-model accuracy against gold (gold test pairs, and
fresh SFT answer pairs) -> RLHF's gold gain on held-out prompts and what the policy changed
(mean answer length, flattery rate, answer form). Every run keeps the seed of the class run, so
two labelers differ in their labels only. Resumable: a finished labeler is skipped on a rerun.
Writes OUT/results.json, OUT/results_section.md (the table, the figure, the conclusions as
measured) and OUT/labeler_flaws.png; the wall time of the whole study is recorded in both.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

if __name__ == "__main__":  # the speed wing, as the `minillm` command runs it, before NumPy loads (a test
    import minillm.fast     # importing this file keeps its process plain)

    minillm.fast.enable()

from minillm.app.labeling import policy_habits, rm_pair_accuracy  # noqa: E402
from minillm.phases.presets import PRESETS  # noqa: E402
from minillm.data import labelers  # noqa: E402
from minillm.data.folders import resolve_data  # noqa: E402
from minillm.data.readers import read_preferences, read_prompts  # noqa: E402
from minillm.io import checkpoint  # noqa: E402
from minillm.phases.common import gold_labelled_pairs  # noqa: E402
from minillm.phases.reward import RewardRun  # noqa: E402
from minillm.phases.rl.rlhf import RLHFRun  # noqa: E402

SEED = 1337  # the class run's seed: every reward model and RLHF run of the study uses it
LENGTH_BIAS = 0.5  # "on": 100 more characters are worth half a gold point to the labeler
SETTINGS = [("gold", labelers.Labeler()),
            ("noise 0.1", labelers.Labeler(noise=0.1)),
            ("noise 0.2", labelers.Labeler(noise=0.2)),
            ("noise 0.3", labelers.Labeler(noise=0.3)),
            (f"length bias {LENGTH_BIAS}", labelers.Labeler(length_bias=LENGTH_BIAS))]
QUICK_SETTINGS = [SETTINGS[0], SETTINGS[3], SETTINGS[4]]
QUICK = dict(rm={"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "eval_interval": 1, "log_interval": 1,
                 "checkpoint_interval": 2},
             rlhf=dict(steps=1, batch_prompts=2, group_size=2, max_new_tokens=8, eval_interval=1, eval_prompts=2,
                       checkpoint_interval=1), on_policy=4, heldout=3, pairs=40)


def slug(name: str) -> str:
    return name.replace(" ", "-")


# ----- the data each labeler labels ---------------------------------------------------------

def on_policy_pairs(run: str, out: str, prompts: list[str]) -> list[dict]:
    """The SFT model's own answer pairs, ordered by gold, as the classroom reward phase makes them
    (two samples per training prompt, seed + 1); sampled once and kept in OUT/on_policy_pairs.jsonl."""
    path = os.path.join(out, "on_policy_pairs.jsonl")
    if os.path.exists(path):
        return [dict(r) for r in read_preferences(path)]
    sft = checkpoint.load(os.path.join(run, "sft"))
    sft.model.eval()
    pairs = gold_labelled_pairs(sft.model, sft.tokenizer, prompts, SEED + 1)
    labelers.write_pairs(path + ".tmp", pairs)
    os.replace(path + ".tmp", path)
    return pairs


def build_data(out: str, labeler: labelers.Labeler, extra: list[dict], limit: int | None) -> dict:
    """OUT/<setting>/data: the shipped data relabelled (`minillm data preferences`), plus the SFT
    answer pairs relabelled by the same labeler, appended to preferences/train.jsonl."""
    data = os.path.join(out, "data")
    measured = labelers.write_flawed_data(None, data, labeler, seed=0)
    train = os.path.join(data, "preferences", "train.jsonl")
    curated = [dict(r) for r in read_preferences(train)][:limit]
    relabelled = labelers.relabel(extra, labeler, seed=2)
    labelers.write_pairs(train, curated + relabelled)
    curated_agreement = measured["train_agreement"]  # of the curated pairs, before any were cut
    n_curated = len(curated)
    both = (curated_agreement * n_curated + labelers.agreement_with_gold(relabelled) * len(relabelled))
    return {"data": data, "curated_agreement": curated_agreement,
            "on_policy_agreement": labelers.agreement_with_gold(relabelled),
            "train_agreement": both / (n_curated + len(relabelled)), "train_pairs": n_curated + len(relabelled)}


# ----- what the reward model and the policy became --------------------------------------------

def rm_accuracy_on_gold_pairs(rm_dir: str, pairs: list[dict]) -> float:
    """Share of gold-labelled pairs (the shipped test split) the reward model orders as gold does,
    a tie counting half (pairs too long for the block are left out, as in training)."""
    rm = checkpoint.load(rm_dir)
    rm.model.eval()
    return rm_pair_accuracy(rm.model, rm.tokenizer, pairs)[0]


def run_setting(name: str, labeler, args, preset, layout, extra, gold_test, heldout) -> dict:
    """One labeler's chain: data -> reward model -> RLHF -> measurements (OUT/<name>/result.json)."""
    out = os.path.join(args.out, slug(name))
    done = os.path.join(out, "result.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    start = time.perf_counter()
    if os.path.exists(out):  # an interrupted setting starts again from its data
        import shutil
        shutil.rmtree(out)
    os.makedirs(out)
    limit = QUICK["pairs"] if args.quick else None
    data = build_data(out, labeler, extra, limit)
    rm_overrides = {**(QUICK["rm"] if args.quick else {}), "seed": SEED}  # over the classroom preset's
    rm = RewardRun(init=os.path.join(args.run, "sft"), out=os.path.join(out, "rm"),
                   data=os.path.join(data["data"], "preferences", "train.jsonl"),
                   val=os.path.join(data["data"], "preferences", "validation.jsonl"), prompts=heldout,
                   preset="classroom", overrides=rm_overrides, skip_bad=True, quiet=True).run()
    rlhf_settings = {**(QUICK["rlhf"] if args.quick else {}), "seed": SEED}
    rl = RLHFRun(policy=os.path.join(args.run, "sft"), reward_model=os.path.join(out, "rm"),
                 out=os.path.join(out, "rlhf"), config=replace(preset.rlhf, **rlhf_settings),
                 prompts=layout.rl, heldout=heldout, quiet=True).run()
    with open(os.path.join(out, "rlhf", "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    prompts = report["prompts"]
    result = {"setting": name, "labeler": asdict(labeler), **{k: v for k, v in data.items() if k != "data"},
              "rm_val_accuracy": rm["val_accuracy"], "rm_gold_test_accuracy": rm_accuracy_on_gold_pairs(
                  os.path.join(out, "rm"), gold_test), "rm_gold_agreement": rm["rm_gold_agreement"],
              "rm_agreement_pairs": rm["agreement_pairs"],
              "gold_sft": rl["mean_gold_sft"], "gold_rlhf": rl["mean_gold_rlhf"],
              "gold_gain": rl["mean_gold_rlhf"] - rl["mean_gold_sft"], "kl": rl["kl_to_reference"],
              "wins": rl["rlhf_vs_sft_wins"], "losses": rl["rlhf_vs_sft_losses"],
              "sft": policy_habits(prompts, report["answers"]["sft"], report["sft"]["answer_form"]),
              "rlhf": policy_habits(prompts, report["answers"]["rlhf"], report["rlhf"]["answer_form"]),
              "seconds": time.perf_counter() - start}
    with open(done + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(done + ".tmp", done)
    return result


# ----- the section: table, figure, conclusions ----------------------------------------------

def table(results: list[dict]) -> list[str]:
    rows = ["| labeler | labels agreeing with gold | RM accuracy, gold test pairs | RM agreement with gold, "
            "fresh SFT pairs | held-out gold, SFT → RLHF (gain) | RLHF wins–losses vs SFT | KL (nats) | "
            "mean answer length, SFT → RLHF (chars) | flattery rate, RLHF | answer form, SFT → RLHF |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rows.append(f"| {r['setting']} | {r['train_agreement']:.3f} | {r['rm_gold_test_accuracy']:.3f} | "
                    f"{r['rm_gold_agreement']:.3f} | {r['gold_sft']:+.3f} → {r['gold_rlhf']:+.3f} "
                    f"({r['gold_gain']:+.3f}) | {r['wins']}–{r['losses']} | {r['kl']:.3f} | "
                    f"{r['sft']['length']:.1f} → {r['rlhf']['length']:.1f} | {r['rlhf']['flattery']:.3f} | "
                    f"{r['sft']['answer_form']:.3f} → {r['rlhf']['answer_form']:.3f} |")
    return rows


def plot(results: list[dict], path: str) -> None:
    """Three panels: the labels and the reward model against noise, RLHF's gold gain against noise,
    and the mean answer length with length bias off and on."""
    from matplotlib.figure import Figure
    from minillm.io.plots import use_projector_style

    use_projector_style()
    fig = Figure(figsize=(13, 4), dpi=100)
    left, middle, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 2, 2]})
    noise = [r for r in results if not r["labeler"]["length_bias"]]
    xs = [r["labeler"]["noise"] for r in noise]
    left.plot(xs, [r["train_agreement"] for r in noise], "o-", label="labels agreeing with gold")
    left.plot(xs, [r["rm_gold_test_accuracy"] for r in noise], "s-", label="RM accuracy, gold test pairs")
    left.plot(xs, [r["rm_gold_agreement"] for r in noise], "^-", label="RM agreement, fresh SFT pairs")
    left.set(ylim=(0, 1.05), xlabel="label noise P (probability of a flip)", ylabel="share of pairs",
             title="labels and reward model vs noise")
    left.legend(loc="lower left", fontsize=8)
    middle.bar([str(x) for x in xs], [r["gold_gain"] for r in noise], color="tab:gray")
    middle.axhline(0, color="black", lw=0.8)
    middle.set(xlabel="label noise P", ylabel="held-out gold, RLHF − SFT", title="RLHF gold gain vs noise")
    bias = [noise[0]] + [r for r in results if r["labeler"]["length_bias"]]
    width = 0.35
    for i, (key, label) in enumerate((("sft", "SFT"), ("rlhf", "after RLHF"))):
        right.bar([j + (i - 0.5) * width for j in range(len(bias))], [r[key]["length"] for r in bias], width, label=label)
    right.set_xticks(range(len(bias)), [r["setting"] for r in bias])
    top = max(r[key]["length"] for r in bias for key in ("sft", "rlhf"))
    right.set(ylim=(0, max(1.4 * top, 1.0)), ylabel="mean held-out answer (characters)", title="answer length, length bias off/on")
    right.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def conclusions(results: list[dict]) -> list[str]:
    """Each finding as measured, the unexpected ones included (nothing here is fixed in advance)."""
    by = {r["setting"]: r for r in results}
    gold, said = by["gold"], []
    noise = [r for r in results if r["labeler"]["noise"]]
    for r in noise:
        said.append(f"Label noise {r['labeler']['noise']:g}: {r['train_agreement']:.1%} of the training labels agree "
                    f"with gold (gold labeler: {gold['train_agreement']:.1%}); the reward model orders "
                    f"{r['rm_gold_test_accuracy']:.1%} of the gold test pairs as gold does "
                    f"({gold['rm_gold_test_accuracy']:.1%} with gold labels) and {r['rm_gold_agreement']:.1%} of the "
                    f"fresh SFT pairs ({gold['rm_gold_agreement']:.1%}); RLHF's gold gain is {r['gold_gain']:+.3f} "
                    f"({gold['gold_gain']:+.3f}).")
    worst = noise[-1] if noise else gold
    drop_rm = gold["rm_gold_test_accuracy"] - worst["rm_gold_test_accuracy"]
    drop_labels = gold["train_agreement"] - worst["train_agreement"]
    said.append(f"From gold to noise {worst['labeler']['noise']:g} the labels lose {drop_labels:.1%} of their agreement "
                f"with gold and the reward model {drop_rm:.1%} of its accuracy on the gold test pairs: "
                + ("the reward model absorbs most of the noise (a flipped label is outvoted by the many correct "
                   "labels of similar pairs)." if drop_rm < drop_labels / 2 else
                   "the reward model loses about as much as its labels."))
    gains = [gold["gold_gain"]] + [r["gold_gain"] for r in noise]
    monotone = all(a >= b for a, b in zip(gains, gains[1:]))
    said.append("RLHF's gold gain " + ("falls at every step of noise" if monotone else
                "does not fall steadily with noise") + f" ({', '.join(f'{g:+.3f}' for g in gains)} for noise "
                f"{', '.join(f'{x:g}' for x in [0] + [r['labeler']['noise'] for r in noise])}); one seed per "
                "labeler, so differences of a few hundredths are within what another seed could change.")
    for r in (x for x in results if x["labeler"]["length_bias"]):
        longer = r["rlhf"]["length"] - r["sft"]["length"]
        gold_longer = gold["rlhf"]["length"] - gold["sft"]["length"]
        said.append(f"Length bias {r['labeler']['length_bias']:g}: the labels agree with gold on {r['train_agreement']:.1%}"
                    f" of the pairs; the reward model's accuracy on gold test pairs is {r['rm_gold_test_accuracy']:.1%}; "
                    f"RLHF changes the mean held-out answer by {longer:+.1f} characters against the SFT model's "
                    f"(with gold labels: {gold_longer:+.1f}), and the gold gain is {r['gold_gain']:+.3f} "
                    f"({gold['gold_gain']:+.3f} with gold labels). "
                    + ("The policy did grow longer answers than with gold labels." if longer > gold_longer + 2 else
                       "The policy did NOT grow its answers beyond what gold labels give: the bias cost the reward "
                       "model accuracy on gold pairs, but RLHF still shortened the answers as much as with gold "
                       "labels (it drops the hedges and afterthoughts every labeler here penalises)."))
    flattery = max(r["rlhf"]["flattery"] for r in results)
    said.append(f"No labeler here rewards flattery, and the highest flattery rate after RLHF is {flattery:.1%}: the "
                "SFT model never flatters, so there is nothing for RLHF to reinforce.")
    return said


def write_section(args, results: list[dict], seconds: float, png: str) -> str:
    preset = "quick settings (plumbing only)" if args.quick else "the classroom preset's reward-model and RLHF settings"
    md = ["## Labeler flaws: from the labels through the reward model to the policy", "",
          f"Command: `python benchmarks/labeler_flaws.py --out {args.out}{' --quick' if args.quick else ''}` "
          f"(from `{os.path.relpath(args.run, ROOT)}/sft`; {preset}; seed {SEED} for every run). Whole study: {seconds / 60:.1f} minutes "
          f"of wall time on this machine ({os.cpu_count()} cores visible, shared with other work).", "",
          "Each labeler labels the reward model's training pairs: the shipped pairs and the SFT model's own "
          "answer pairs that the classroom pipeline adds (`minillm data preferences` defines the flaws: noise P "
          "flips a label with probability P; length bias B adds B gold points per 100 characters to an answer "
          "before comparing). The reward model and RLHF then run exactly as in the class run. Accuracy against "
          "gold is measured on the shipped gold test pairs and on fresh pairs of SFT answers; the policy is "
          "measured on held-out prompts (greedy answers).", ""]
    md += table(results)
    md += ["", f"![labeler flaws]({os.path.basename(png)})", "", "Findings, as measured:", ""]
    md += [f"- {line}" for line in conclusions(results)]
    path = os.path.join(args.out, "results_section.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    return path


def wait_for(run: str, minutes: float) -> None:
    """The class run's report marks it finished; wait for it (the class run may still be training)."""
    report = os.path.join(run, "report.md")
    deadline = time.time() + minutes * 60
    while not os.path.exists(report):
        if time.time() > deadline:
            sys.exit(f"labeler_flaws: {report} did not appear within {minutes:g} minutes; train the class run first "
                     "(minillm pipeline)")
        print(f"waiting for the class run ({report})", flush=True)
        time.sleep(20)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.path.join(ROOT, "runs", "pipeline"),
                        help="the class run: RUN/sft is the starting policy (read only; default runs/pipeline)")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "flaws"), help="output folder (default runs/flaws)")
    parser.add_argument("--quick", action="store_true", help="tiny settings that check the plumbing in seconds")
    parser.add_argument("--wait", type=float, default=30, help="minutes to wait for RUN/report.md (default 30)")
    args = parser.parse_args(argv)
    if not args.quick:
        wait_for(args.run, args.wait)
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    timing = os.path.join(args.out, "seconds.json")  # time spent by earlier, interrupted calls
    before = json.load(open(timing))["seconds"] if os.path.exists(timing) else 0.0
    preset, layout = PRESETS["classroom"], resolve_data(None)
    n_on_policy = QUICK["on_policy"] if args.quick else preset.rm_on_policy
    train_prompts = [r["prompt"] for r in read_prompts(layout.rl)][:n_on_policy]
    heldout = os.path.join(args.run, "heldout_prompts.jsonl")
    if args.quick or not os.path.exists(heldout):
        heldout = os.path.join(args.out, "heldout_prompts.jsonl")
        prompts = list(dict.fromkeys(r["prompt"] for r in read_prompts(layout.held_out())))
        prompts = prompts[:QUICK["heldout"] if args.quick else preset.eval_prompts]
        with open(heldout, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"prompt": p}) + "\n" for p in prompts)
    gold_test = [dict(r) for r in read_preferences(layout.preferences.replace("train.jsonl", "test.jsonl"))]
    gold_test = gold_test[:QUICK["pairs"]] if args.quick else gold_test
    extra = on_policy_pairs(args.run, args.out, train_prompts)
    results = []
    for name, labeler in (QUICK_SETTINGS if args.quick else SETTINGS):
        print(f"[{(before + time.perf_counter() - start) / 60:5.1f} min] {name}", flush=True)
        results.append(run_setting(name, labeler, args, preset, layout, extra, gold_test, heldout))
        with open(timing, "w") as f:
            json.dump({"seconds": before + time.perf_counter() - start}, f)
    seconds = before + time.perf_counter() - start
    png = os.path.join(args.out, "labeler_flaws.png")
    plot(results, png)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"seconds": seconds, "quick": args.quick, "results": results}, f, indent=2)
    section = write_section(args, results, seconds, png)
    print("\n".join(table(results)))
    print(f"{seconds / 60:.1f} minutes; {section}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
