"""Phase 3 end to end: `minillm rlhf` on a tiny run — log, plot, report, checkpoint, exact resume."""
import json

import numpy
import pytest

from minillm.io import checkpoint
from minillm.app.cli import main
from minillm.model.reward_model import RewardModel
from minillm.phases.common import pairwise_wins
from minillm.phases.trainer import read_log
from tiny_runs import PAIRS, write_tiny_data



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-step pretrain, a 3-step SFT, and a reward model initialised from the SFT model."""
    root = tmp_path_factory.mktemp("rlhf")
    write_tiny_data(root, PAIRS)
    corpus, pairs = root / "corpus.txt", root / "pairs.jsonl"
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(root / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    assert main(["sft", "--init", str(root / "pt"), "--data", str(pairs), "--val", str(pairs), "--test",
                 str(pairs), "--out", str(root / "sft"), "--max-steps", "3", "--batch-size", "2", "--quiet"]) == 0
    sft = checkpoint.load(root / "sft")
    rm = RewardModel.from_gpt(sft.model)
    rm.score_head.weight.data[...] = 0.1  # a non-constant score, so advantages are not all zero
    checkpoint.save(rm, root / "rm", tokenizer=sft.tokenizer, meta={"phase": "reward"})
    return root


def rlhf_args(root, out, *extra):
    return ["rlhf", "--policy", str(root / "sft"), "--rm", str(root / "rm"), "--prompts", str(root / "pairs.jsonl"),
            "--heldout", str(root / "pairs.jsonl"), "--out", str(out), "--group-size", "2", "--batch-prompts", "2",
            "--max-new-tokens", "8", "--eval-interval", "2", "--checkpoint-interval", "2", "--quiet", *extra]


@pytest.mark.parametrize("algo", ["reinforce", "rloo", "ppo", "ppo-seq", "grpo"])
def test_rlhf_command_on_a_tiny_run(runs, algo):
    out = runs / f"rl_{algo}"
    assert main(rlhf_args(runs, out, "--algo", algo, "--steps", "2", "--ppo-minibatch", "2")) == 0
    log = read_log(out / "log.jsonl")
    train = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert {"reward", "rm_score", "kl", "beta", "gold", "response_length", "entropy", "loss"} <= set(train[0])
    assert ("clip_frac" in train[0]) == (algo in ("ppo", "ppo-seq", "grpo"))
    assert ("value_loss" in train[0]) == (algo == "ppo") == (out / "value").is_dir()
    header = log[0]
    assert header["kind"] == "header" and set(header["models"]) == (
        {"policy", "reference", "reward", "value"} if algo == "ppo" else {"policy", "reference", "reward"})
    assert [r["step"] for r in log if r["kind"] == "eval"] == [0, 2]   # step 0 = the SFT model
    report = json.loads((out / "report.json").read_text())
    assert report["sft"]["n"] == 3 and {"kl_to_reference", "rlhf_vs_sft_win_rate"} <= set(report["summary"])
    assert "win rate" in (out / "report.md").read_text() and (out / "rlhf.png").exists()
    saved = checkpoint.load(out)
    assert saved.step == 2 and saved.meta["chat_template"] == checkpoint.load(runs / "sft").meta["chat_template"]
    assert saved.meta["phase"] == "rlhf" and saved.meta["rlhf_config"]["algo"] == algo


def test_resume_continues_exactly(runs):
    straight, resumed = runs / "straight", runs / "resumed"
    assert main(rlhf_args(runs, straight, "--steps", "4", "--target-kl", "1")) == 0
    assert main(rlhf_args(runs, resumed, "--steps", "2", "--target-kl", "1")) == 0
    assert main(rlhf_args(runs, resumed, "--steps", "4", "--target-kl", "1", "--resume")) == 0
    a, b = checkpoint.load(straight), checkpoint.load(resumed)
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        numpy.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert a.meta["beta"] == b.meta["beta"] != 0.05                     # β adapted, and restored
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]  # noqa: E731
    assert drop_time(read_log(straight / "log.jsonl")) == drop_time(read_log(resumed / "log.jsonl"))


def test_ppo_resume_restores_the_value_model_too(runs):
    straight, resumed = runs / "ppo_straight", runs / "ppo_resumed"
    args = ("--algo", "ppo", "--ppo-epochs", "2", "--ppo-minibatch", "2")
    assert main(rlhf_args(runs, straight, "--steps", "4", *args)) == 0
    assert main(rlhf_args(runs, resumed, "--steps", "2", *args)) == 0
    assert main(rlhf_args(runs, resumed, "--steps", "4", "--resume", *args)) == 0
    for directory in ("checkpoint", "value"):
        a, b = checkpoint.load(straight / directory), checkpoint.load(resumed / directory)
        for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
            numpy.testing.assert_array_equal(p.data, q.data, err_msg=f"{directory}: {name}")


def test_grpo_with_the_exact_reward_trains_on_verifiable_prompts_only(runs, capsys):
    out = runs / "grpo_exact"
    assert main(rlhf_args(runs, out, "--algo", "grpo", "--reward", "exact", "--steps", "1")) == 0
    train = [r for r in read_log(out / "log.jsonl") if r["kind"] == "train"]
    exact = 4 * train[0]["rm_score"]  # the mean of 0/1 rewards over 2 prompts × 2 samples
    assert exact == pytest.approx(round(exact)) and 0 <= exact <= 4
    how_to = runs / "howto.jsonl"
    how_to.write_text(json.dumps({"prompt": "How to make pasta"}) + "\n")
    args = rlhf_args(runs, runs / "bad_exact", "--algo", "grpo", "--reward", "exact", "--steps", "1")
    args[args.index("--prompts") + 1] = str(how_to)
    assert main(args) == 2
    assert "one right answer" in capsys.readouterr().err


def test_policy_must_be_an_sft_run_and_rm_a_reward_model(runs, capsys):
    assert main(rlhf_args(runs, runs / "bad", "--steps", "1")[:2] + [str(runs / "pt")]
                + rlhf_args(runs, runs / "bad", "--steps", "1")[3:]) == 2
    assert "not an SFT checkpoint" in capsys.readouterr().err
    args = rlhf_args(runs, runs / "bad", "--steps", "1")
    args[args.index("--rm") + 1] = str(runs / "sft")
    assert main(args) == 2
    assert "not a reward model" in capsys.readouterr().err


def test_pairwise_wins_counts_ties_apart():
    assert pairwise_wins([1, 0.5, 0, 1], [0, 0.5, 1, 0.2]) == {
        "wins": 2, "losses": 1, "ties": 1, "win_rate": 2 / 3, "win_rate_ties_half": 2.5 / 4}


def test_the_oracle_run_uses_gold_score_as_the_reward(runs):
    """--rm gold: r(x, y) = gold_score(x, y) exactly, so the logged reward score is the logged gold."""
    out = runs / "rl_oracle"
    args = rlhf_args(runs, out, "--steps", "2")
    args[args.index("--rm") + 1] = "gold"
    assert main(args + ["--beta", "0"]) == 0
    log = read_log(out / "log.jsonl")
    for record in log[1:]:  # after the header
        assert record["rm_score"] == pytest.approx(record["gold"], abs=1e-6)
    assert checkpoint.load(out).meta["reward_model"] == "gold"


def test_the_report_compares_sampled_answers_too(runs):
    out = runs / "rl_compare"
    assert main(rlhf_args(runs, out, "--steps", "1")) == 0
    summary = json.loads((out / "report.json").read_text())["summary"]
    n = summary["sampled_wins"] + summary["sampled_losses"] + summary["sampled_ties"]
    assert n == 3 * 4  # 4 samples for each of the 3 held-out prompts
    assert -1 <= summary["sampled_gold_sft"] <= 1 and -1 <= summary["sampled_gold_rlhf"] <= 1
    assert summary["seen_n"] == 3 and summary["seen_wins"] + summary["seen_losses"] + summary["seen_ties"] == 3


PREFS = [{"prompt": "where does anna live?", "chosen": "anna lives in rivertown.", "rejected": "no idea."},
         {"prompt": "what is two plus two?", "chosen": "four.", "rejected": "three."},
         {"prompt": "add two and three.", "chosen": "five.", "rejected": "what?"}]


def test_dpo_command_on_a_tiny_run(runs):
    prefs = runs / "prefs.jsonl"
    prefs.write_text("".join(json.dumps(r) + "\n" for r in PREFS), encoding="utf-8")
    out = runs / "dpo"
    args = ["dpo", "--policy", str(runs / "sft"), "--data", str(prefs), "--val", str(prefs), "--heldout",
            str(runs / "pairs.jsonl"), "--rm", str(runs / "rm"), "--out", str(out), "--max-steps", "4",
            "--batch-size", "2", "--lr", "1e-3", "--eval-interval", "2", "--max-new-tokens", "8", "--quiet"]
    assert main(args) == 0
    evals = [r for r in read_log(out / "log.jsonl") if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert {"val_loss", "reward_accuracy", "reward_margin", "chosen_logp", "rejected_logp",
            "chosen_logp_change", "rejected_logp_change"} <= set(evals[0])
    assert evals[-1]["reward_margin"] > 0 and evals[-1]["val_loss"] < numpy.log(2)  # it learned the pairs
    trains = [r for r in read_log(out / "log.jsonl") if r["kind"] == "train"]
    assert trains and all(r["entropy"] > 0 for r in trains)  # the policy's entropy at every logged step
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "dpo" and {"kl_to_reference", "rlhf_vs_sft_win_rate", "rm_score_rlhf"} <= set(summary)
    assert checkpoint.load(out).meta["phase"] == "dpo"
    assert main(args[:-1] + ["--beta", "0", "--quiet"]) == 2


def test_generate_best_of_n_prints_the_reward_models_favourite(runs, capsys):
    args = ["generate", "--ckpt", str(runs / "sft"), "--prompt", "where does anna live?", "--max-new-tokens", "8",
            "--seed", "3"]
    assert main(args + ["--best-of", "3", "--rm", str(runs / "rm")]) == 0
    captured = capsys.readouterr()
    ranked = [line for line in captured.err.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert len(ranked) == 3 and "log 3 − 2/3 = 0.432 nats" in captured.err
    assert captured.out.strip() == ranked[0].split("  ", 1)[1].strip()
    assert main(args + ["--best-of", "3"]) == 2 and "go together" in capsys.readouterr().err
    assert main(args + ["--best-of", "3", "--rm", str(runs / "sft")]) == 2
    assert "not a reward model" in capsys.readouterr().err


def test_best_of_n_run_writes_its_report_and_both_kls(runs):
    from minillm.phases.rl.best_of_n import best_of_n_kl
    from minillm.phases.rl.best_of_n_run import BestOfNRun
    out = runs / "bon" / "nested"  # a directory that does not exist yet
    summary = BestOfNRun(policy=str(runs / "sft"), reward_model=str(runs / "rm"), out=str(out), n=2,
                         heldout=str(runs / "pairs.jsonl"), max_new_tokens=8, kl_samples=3, quiet=True).run()
    assert summary["kl_formula"] == pytest.approx(best_of_n_kl(2))
    assert numpy.isfinite(summary["kl_to_reference"])  # measured from 3 fresh samples a prompt: an estimate
    assert summary["method"] == "best-of-2" and (out / "report.md").exists() and (out / "summary.json").exists()
    # at τ = 1 the distribution sampled is the SFT model's: both KLs are one
    assert summary["temperature"] == 1.0 and summary["kl_to_reference"] == pytest.approx(summary["kl_to_sampled"])
    # the diagnosis: the reward model's pick is the answer judged; the gold labeler's pick bounds it and one sample
    assert summary["rm_pick_gold"] == pytest.approx(summary["mean_gold_rlhf"])
    assert summary["oracle_gold"] >= max(summary["rm_pick_gold"], summary["sample_gold"])
    assert 0.0 <= summary["rm_pick_is_oracle"] <= 1.0 and summary["entropy"] > 0


def test_best_of_n_at_a_lower_temperature_states_it_and_both_kls(runs):
    from minillm.phases.rl.best_of_n_run import BestOfNRun
    out = runs / "bon_sharp"
    kwargs = dict(policy=str(runs / "sft"), reward_model=str(runs / "rm"), n=2, heldout=str(runs / "pairs.jsonl"),
                  max_new_tokens=8, kl_samples=3, quiet=True)
    summary = BestOfNRun(out=str(out), temperature=0.1, **kwargs).run()
    assert summary["temperature"] == 0.1 and "τ = 0.1" in (out / "report.md").read_text()
    # KL to SFT = KL to π_τ + E[log π_τ − log π] over the winners; near τ = 0 the winners are about the
    # greedy answers, which π_τ gives probability near 1 and π less: the second term is positive
    assert summary["kl_to_reference"] > summary["kl_to_sampled"]
    with pytest.raises(ValueError, match="temperature > 0"):
        BestOfNRun(out=str(out), temperature=0.0, **kwargs).run()
