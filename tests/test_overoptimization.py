"""benchmarks/overoptimization.py: the formulas (best-of-n KL, the two fitted forms, the subset
average) on synthetic data with known answers, and a --quick run end to end on a tiny class run."""
import importlib.util
import itertools
import json
import math
import sys
from pathlib import Path

import numpy
import pytest

from minillm.app.cli import main as cli
from minillm.phases.pretrain import build_tokenizer
from minillm.phases.rl.best_of_n import best_of_n_kl, best_of_n_kl_estimate

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("overoptimization", ROOT / "benchmarks" / "overoptimization.py")
oo = importlib.util.module_from_spec(spec)
sys.modules["overoptimization"] = oo  # dataclasses look their module up there
spec.loader.exec_module(oo)


@pytest.mark.parametrize("n", [2, 4, 16])
def test_closed_form_best_of_n_kl_matches_sampling(n):
    """Continuous rewards (no ties): the sampled estimate of KL(π_n ‖ π) lands on log n − (n−1)/n."""
    rng = numpy.random.default_rng(n)
    draws = rng.normal(size=(4000, n))                     # 4000 best-of-n draws
    fresh = rng.normal(size=(4000, 400))                   # samples of π for the CDF
    estimate = best_of_n_kl_estimate(draws.max(axis=1), fresh, n)
    assert estimate == pytest.approx(best_of_n_kl(n), abs=0.06)


def test_best_of_n_expectation_is_the_average_over_every_subset():
    rng = numpy.random.default_rng(0)
    proxy, gold = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    for n in (1, 2, 3, 6):
        brute = [numpy.mean([gold[b][max(c, key=lambda i: proxy[b][i])] for c in itertools.combinations(range(6), n)])
                 for b in range(3)]
        numpy.testing.assert_allclose(oo.best_of_n_expectation(proxy, gold, n), brute)
    numpy.testing.assert_allclose(oo.best_of_n_expectation(proxy, gold, 1), gold.mean(axis=1))


@pytest.mark.parametrize("method", ["bon", "rl"])
def test_the_fits_recover_known_alpha_and_beta(method):
    fit, form, peak = oo.FORMS[method]
    d = numpy.linspace(0.05, 3.0, 40)
    alpha, beta = 0.7, 0.3
    noisy = form(d, alpha, beta) + numpy.random.default_rng(1).normal(scale=0.005, size=d.size)
    a, b = fit(d, noisy)
    assert a == pytest.approx(alpha, abs=0.02) and b == pytest.approx(beta, abs=0.02)
    assert fit(d, form(d, alpha, beta)) == pytest.approx((alpha, beta), abs=1e-9)
    d_star, r_star = peak(alpha, beta)
    grid = numpy.linspace(1e-4, 20, 200001)
    assert d_star == pytest.approx(grid[numpy.argmax(form(grid, alpha, beta))], abs=1e-3)
    assert r_star == pytest.approx(float(form(d_star, alpha, beta)), rel=1e-9)
    assert peak(alpha, -beta) is None  # no over-optimisation: no peak
    assert oo.r_squared(noisy, form(d, a, b)) > 0.99
    other = oo.FORMS["rl" if method == "bon" else "bon"]
    assert oo.r_squared(noisy, other[1](d, *other[0](d, noisy))) < oo.r_squared(noisy, form(d, a, b))


def test_turned_down_needs_two_evaluations_below_the_peak():
    assert not oo.turned_down([0.0, 0.3, 0.1], 0.1)
    assert oo.turned_down([0.0, 0.3, 0.1, 0.15], 0.1)
    assert not oo.turned_down([0.0, 0.3, 0.1, 0.25], 0.1)


def test_a_saved_tokenizer_can_be_reused_by_pretraining(tmp_path):
    tok = build_tokenizer("char", "abc", "abcd")
    tok.save(tmp_path / "tok.json")
    again = build_tokenizer(f"file:{tmp_path / 'tok.json'}", "zzz", "zzz")
    assert again.encode("dab") == tok.encode("dab")


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """A tiny class run (2-step pretrain, 3-step SFT) and prompt files its tokenizer can read."""
    root = tmp_path_factory.mktemp("overopt")
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "data/rl/train.jsonl").read_text().splitlines()[:20]]
    heldout = [json.loads(line)["prompt"] for line in (ROOT / "data/rl/heldout.jsonl").read_text().splitlines()[:4]]
    curated = (ROOT / "data/preferences/train.jsonl").read_text().splitlines()[:20] + \
        (ROOT / "data/preferences/validation.jsonl").read_text().splitlines()[:6]
    texts = [v for line in curated for v in json.loads(line).values()]
    text = (ROOT / "data/pretrain/train.txt").read_text()[:20000] + "\n".join(prompts + heldout + texts) + "\n"
    (root / "corpus.txt").write_text(text)
    pairs = [{"prompt": p, "response": "Four."} for p in prompts[:6]]
    (root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    (root / "heldout.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in heldout))
    run = root / "run"
    assert cli(["pretrain", "--preset", "tiny", "--data", str(root / "corpus.txt"), "--out", str(run / "pretrain"),
                "--max-steps", "2", "--quiet"]) == 0
    assert cli(["sft", "--init", str(run / "pretrain"), "--data", str(root / "sft.jsonl"), "--val",
                str(root / "sft.jsonl"), "--test", str(root / "sft.jsonl"), "--out", str(run / "sft"),
                "--max-steps", "3", "--batch-size", "2", "--quiet"]) == 0
    return root


def quick_args(root, out, *extra):
    return [str(root / "run"), "--quick", "--seeds", "2", "--out", str(out), "--corpus", str(root / "corpus.txt"),
            "--prompts", str(root / "prompts.jsonl"), "--heldout", str(root / "heldout.jsonl"), *extra]


def test_quick_study_end_to_end_and_resume(class_run, capsys):
    out = class_run / "study"
    assert oo.main(quick_args(class_run, out)) == 0
    for name in ("results_section.md", "overoptimization.png", "results.json"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["fits"]) == {f"{m}/{s}" for m in ("bon", "rl") for s in "SML"}
    params = [results["reward_models"][s]["parameters"] for s in "SML"]
    assert params == sorted(params) and len(set(params)) == 3
    ns = [row[0] for row in results["kl_check"]["S"]]
    assert ns == [1, 2, 4, 8]
    assert [row[1] for row in results["kl_check"]["S"]] == [pytest.approx(math.log(n) - (n - 1) / n) for n in ns]
    assert len(results["curves"]["rl/M"]) == 2 and results["curves"]["rl/M"][0][0]["d"] == 0.0
    section = (out / "results_section.md").read_text()
    assert "](overoptimization.png)" in section and section.count("reproduced") >= 4
    assert "Total wall time" in section and results["time"]["wall_seconds"] > 0 and results["time"]["calls"] == 1
    assert results["time"]["cpu_seconds"] > 0
    err = capsys.readouterr().err
    assert "rl-L-seed1 step" in err
    # a rerun finds every piece finished and only redoes the analysis
    assert oo.main(quick_args(class_run, out)) == 0
    err = capsys.readouterr().err
    assert "starting" not in err and err.count("already finished, skipped") == 1 + 2 + 6 + 1 + 6 + 6
    again = json.loads((out / "results.json").read_text())["time"]
    assert again["calls"] == 2 and again["wall_seconds"] > results["time"]["wall_seconds"]


def test_bad_sizes_and_missing_run_are_one_line_errors(class_run, tmp_path, capsys):
    assert oo.main(quick_args(class_run, tmp_path / "x", "--sizes", "S,XL")) == 2
    assert "unknown size(s) XL" in capsys.readouterr().err
    assert oo.main([str(tmp_path / "nowhere"), "--quick", "--out", str(tmp_path / "y")]) == 2
    assert "has no finished SFT model" in capsys.readouterr().err


def test_finding_2_names_the_curves_whose_two_fits_tie():
    finding = {"numbers": {"bon/S": {"bon": 0.9, "rl": 0.7}, "rl/S": {"bon": 0.47, "rl": 0.48}}}
    text = oo.describe(2, finding)
    assert "rl/S within 0.05" in text and "bon/S" not in text.split("R²:")[-1]
    assert "tell the forms apart" not in oo.describe(2, {"numbers": {"bon/S": {"bon": 0.9, "rl": 0.7}}})
