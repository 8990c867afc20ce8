"""The flawed labelers: each flaw does what its definition says (exactly where the formula is
deterministic, statistically with a fixed seed where it draws), and bad settings get one line."""
import json
import math
import random

import pytest

from minillm.app.cli import main
from minillm.data import labelers, phrases
from minillm.data.folders import shipped
from minillm.data.gold import gold_score
from minillm.data.labelers import Labeler
from minillm.data.readers import read_preferences
from minillm.errors import UserError

PROMPT = "Where does Anna live?"
GOOD = "Anna lives in Rivertown."
LONG = f"Well, let me think about that for a moment. {GOOD} Anyway, where was I?"
NO_DRAWS = (0.99, 0.99, 0.99, 0.99)  # no position bias, no flip fires for settings below 0.99


@pytest.fixture(scope="module")
def pairs():
    return [dict(p) for p in read_preferences(shipped().preferences)][:2000]


def test_gold_labeler_agrees_with_gold_on_every_pair(pairs):
    labelled = labelers.relabel(pairs, Labeler(), seed=0)
    assert labelers.agreement_with_gold(labelled) == 1.0
    assert [p["chosen"] for p in labelled] == [p["chosen"] for p in pairs]


def test_noise_flips_a_share_P_of_labels_and_larger_noise_flips_a_superset(pairs):
    flipped = {}
    for noise in (0.1, 0.3):
        labelled = labelers.relabel(pairs, Labeler(noise=noise), seed=3)
        flipped[noise] = {i for i, p in enumerate(labelled) if not p["gold_agrees"]}
        sd = math.sqrt(noise * (1 - noise) / len(pairs))
        assert abs(len(flipped[noise]) / len(pairs) - noise) < 4 * sd
    assert flipped[0.1] < flipped[0.3]


def test_position_bias_lets_the_first_shown_answer_win_with_probability_p():
    rng = random.Random(0)
    p, n = 0.6, 4000
    first_wins = sum(labelers.judge(Labeler(position_bias=p), PROMPT, LONG, GOOD,
                                    tuple(rng.random() for _ in range(4))) == 0 for _ in range(n))
    # the first shown (LONG) is gold's loser: it wins only when the labeler does not read
    assert abs(first_wins / n - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert labelers.judge(Labeler(position_bias=p), PROMPT, LONG, GOOD, NO_DRAWS) == 1


def test_position_bias_agrees_with_gold_on_one_minus_half_p_of_randomly_ordered_pairs(pairs):
    p = 0.5
    agreement = labelers.agreement_with_gold(labelers.relabel(pairs, Labeler(position_bias=p), seed=5))
    expected = 1 - p / 2
    assert abs(agreement - expected) < 4 * math.sqrt(expected * (1 - expected) / len(pairs))


def test_length_bias_prefers_the_longer_answer_exactly_when_B_times_the_length_gap_beats_the_gold_gap():
    gap = gold_score(PROMPT, GOOD) - gold_score(PROMPT, LONG)
    extra = (len(LONG) - len(GOOD)) / labelers.LENGTH_UNIT
    threshold = gap / extra  # u(LONG) = u(GOOD) at this B
    assert gap > 0
    below, above = round(threshold - 0.01, 4), round(threshold + 0.01, 4)
    assert labelers.judge(Labeler(length_bias=below), PROMPT, GOOD, LONG, NO_DRAWS) == 0
    assert labelers.judge(Labeler(length_bias=above), PROMPT, GOOD, LONG, NO_DRAWS) == 1
    # a negative bias prefers the shorter one even more firmly
    assert labelers.judge(Labeler(length_bias=-above), PROMPT, LONG, GOOD, NO_DRAWS) == 1


def test_length_bias_moves_the_labels_of_the_shipped_pairs_towards_the_longer_answer(pairs):
    longer_chosen = {}
    for bias in (0.0, 0.5):
        labelled = labelers.relabel(pairs, Labeler(length_bias=bias), seed=0)
        longer_chosen[bias] = sum(len(p["chosen"]) > len(p["rejected"]) for p in labelled) / len(labelled)
    assert longer_chosen[0.5] > longer_chosen[0.0] + 0.1


def test_sycophancy_adds_S_to_a_flattering_answer():
    flattering = f"{phrases.FLATTERY[0]} I'm not sure."
    assert labelers.flatters(flattering) and not labelers.flatters(GOOD)
    gap = gold_score(PROMPT, GOOD) - gold_score(PROMPT, flattering)  # 1.4: a dodge against the answer
    assert labelers.perceived_score(Labeler(sycophancy=1.0), PROMPT, flattering) == pytest.approx(
        gold_score(PROMPT, flattering) + 1.0)
    assert labelers.judge(Labeler(sycophancy=gap - 0.05), PROMPT, GOOD, flattering, NO_DRAWS) == 0
    assert labelers.judge(Labeler(sycophancy=min(2.0, gap + 0.05)), PROMPT, GOOD, flattering, NO_DRAWS) == 1


def test_flattery_reaches_the_share_asked_and_both_sides_alike(pairs):
    flattered = labelers.add_flattery(pairs, 0.3, seed=1)
    on_chosen = sum(labelers.flatters(p["chosen"]) for p in flattered)
    on_rejected = sum(labelers.flatters(p["rejected"]) for p in flattered)
    assert abs((on_chosen + on_rejected) / len(pairs) - 0.3) < 4 * math.sqrt(0.21 / len(pairs))
    assert abs(on_chosen - on_rejected) < 0.25 * (on_chosen + on_rejected)
    assert all(gold_score(p["prompt"], p["chosen"]) >= gold_score(p["prompt"], p["rejected"]) for p in flattered)


@pytest.mark.parametrize("name, bad", [("noise", 0.51), ("noise", -0.1), ("length_bias", 5.5),
                                       ("position_bias", 1.2), ("sycophancy", float("inf")),
                                       ("sycophancy", float("nan")), ("noise", "lots")])
def test_a_setting_outside_its_range_is_refused_with_its_range(name, bad):
    with pytest.raises(UserError, match=rf"--{name.replace('_', '-')} .*\[.*\]"):
        Labeler(**{name: bad})


def test_the_command_writes_a_folder_the_pipeline_reads_with_its_labeler(tmp_path, capsys):
    out = tmp_path / "noisy"
    assert main(["data", "preferences", "--out", str(out), "--noise", "0.2", "--length-bias", "0.3"]) == 0
    assert "agreement with gold" in capsys.readouterr().out
    saved = json.loads((out / "preferences" / "labeler.json").read_text())
    assert saved["noise"] == 0.2 and 0.5 < saved["train_agreement"] < 0.85
    assert (out / "preferences" / "test.jsonl").read_bytes() == open(shipped().preferences.replace(
        "train.jsonl", "test.jsonl"), "rb").read()  # the test split stays gold
    assert (out / "sft" / "train.jsonl").read_bytes() == open(shipped().sft, "rb").read()
    from minillm.data.folders import resolve_data
    layout = resolve_data(str(out))
    assert len(read_preferences(layout.preferences)) == len(read_preferences(shipped().preferences))
    labeler, seed = labelers.read_settings(layout.preferences)
    assert labeler == Labeler(noise=0.2, length_bias=0.3) and seed == 0
    assert labelers.read_settings(shipped().preferences) is None


def test_the_command_refuses_bad_values_and_a_full_folder_in_one_line(tmp_path, capsys):
    assert main(["data", "preferences", "--out", str(tmp_path / "a"), "--position-bias", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--position-bias '2' is outside its range" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["data", "preferences", "--out", str(tmp_path / "full")]) == 2
    assert "already holds files" in capsys.readouterr().err


def test_the_flaw_study_runs_end_to_end_in_quick_mode(tmp_path):
    """benchmarks/labeler_flaws.py --quick: data, reward model, RLHF and the section for three labelers."""
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).parents[1]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((root / "data" / "pretrain" / "validation.txt").read_text()[:60000])
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join((root / "data" / "sft" / "train.jsonl").read_text().splitlines(True)[:20]))
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(tmp_path / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    assert main(["sft", "--init", str(tmp_path / "pt"), "--data", str(demos), "--val", str(demos), "--test",
                 str(demos), "--out", str(tmp_path / "sft"), "--max-steps", "2", "--batch-size", "2", "--quiet"]) == 0
    spec = importlib.util.spec_from_file_location("labeler_flaws", root / "benchmarks" / "labeler_flaws.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    out = tmp_path / "flaws"
    assert study.main(["--quick", "--run", str(tmp_path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    names = [r["setting"] for r in results["results"]]
    assert names == [name for name, _ in study.QUICK_SETTINGS] and results["seconds"] > 0
    by = {r["setting"]: r for r in results["results"]}
    assert by["gold"]["train_agreement"] == 1.0 and by["noise 0.3"]["train_agreement"] < 0.9
    section = (out / "results_section.md").read_text()
    assert "![labeler flaws](labeler_flaws.png)" in section and (out / "labeler_flaws.png").stat().st_size > 0
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) == len(names) + 1  # the header and one row per labeler
    before = (out / "gold" / "result.json").stat().st_mtime
    assert study.main(["--quick", "--run", str(tmp_path), "--out", str(out)]) == 0  # resumed: nothing retrained
    assert (out / "gold" / "result.json").stat().st_mtime == before


def test_the_reward_phase_relabels_its_on_policy_pairs_with_the_data_folders_labeler(monkeypatch, capsys):
    """`minillm pipeline --data DIR` on a flawed folder: the SFT answer pairs get the file's labeler too."""
    import minillm.phases.reward as reward_phase

    class Model:  # the phase only switches the model to eval mode before sampling
        def eval(self):
            return self

    gold = [{"prompt": PROMPT, "chosen": GOOD, "rejected": f"{GOOD} {GOOD} {GOOD}"}] * 200
    monkeypatch.setattr(reward_phase, "gold_labelled_pairs", lambda *args, **kwargs: gold)
    plain = reward_phase.RewardRun(init="sft", out="rm")._on_policy_pairs(Model(), None, [PROMPT] * 200, seed=0)
    assert plain == gold
    run = reward_phase.RewardRun(init="sft", out="rm", labeler=(Labeler(noise=0.5), 7))
    flawed = run._on_policy_pairs(Model(), None, [PROMPT] * 200, seed=0)
    assert "relabelling them with the data's labeler: noise 0.5" in capsys.readouterr().err
    assert 0.35 < labelers.agreement_with_gold(flawed) < 0.65
    assert flawed == labelers.relabel(gold, Labeler(noise=0.5), 7 * 2 + 2)
