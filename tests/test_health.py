"""Health notes: every range names a figure the report prints, and a figure outside its range is flagged
next to its value (the RM at 0.5, a negative KL, reward up while gold falls, entropy collapse, GRPO's loss)."""
import dataclasses
import json
import pathlib

import pytest

from minillm.app import health, report
from minillm.app.pipeline_phases import PhaseMarker

RUN = pathlib.Path(__file__).parent / "fixtures" / "results_run"


def summary(phase):
    return PhaseMarker.from_json(json.loads((RUN / phase / "DONE.json").read_text())).summary


def flagged(phase, s, log=None, rows=None):
    """The rows of the report for this summary that carry a flag, as {label: value}."""
    rows = rows if rows is not None else report.figures(phase, s) + health.log_rows(phase, log or {})
    return {k: v for k, v in health.annotate(phase, s, rows, log) if health.FLAG in v}


@pytest.mark.parametrize("phase", ["pretrain", "sft", "rm", "rlhf", "grpo", "best-of-n"])
def test_every_range_is_on_a_row_the_report_prints(phase):
    s = summary(phase)
    log = {"entropy_first": 1.0, "entropy_last": 0.9, "loss_last": 0.01}
    labels = [k for k, _ in report.figures(phase, s) + health.log_rows(phase, log)]
    for r in health.ranges_for(phase):
        if phase == "best-of-n" and r.row in ("policy entropy", "policy loss"):
            continue  # best-of-n trains nothing, so it has no training log
        assert any(r.row in label for label in labels), (phase, r.row)
    assert health.notes(phase)  # every phase has its notes


def test_the_quick_fixture_run_is_flagged_where_it_is_unhealthy_and_nowhere_else():
    flags = {phase: list(flagged(phase, summary(phase))) for phase in ("pretrain", "sft", "rm", "rlhf", "grpo")}
    # a quick-preset run: its GPT loses to the 4-gram, its RM agrees with gold on 0 of 1 pair; every RL prompt tied
    assert flags == {"pretrain": ["validation loss (nats/token)"], "sft": [],
                     "rm": ["agreement with the gold labeler on fresh SFT samples"], "rlhf": [], "grpo": []}


def test_a_reward_model_is_a_coin_before_training_and_must_not_stay_one():
    s = summary("rm")
    s.baseline.val_accuracy, s.val_accuracy, s.rm_gold_agreement = 0.5, 0.52, 0.8
    [(label, value)] = flagged("rm", s).items()
    assert label.startswith("pairwise accuracy") and "0.52 outside the normal range (at least 0.6)" in value
    s.baseline.val_accuracy, s.val_accuracy = 0.7, 0.9  # not 0.5 before training: the head did not start at 0
    assert "0.7 outside the normal range (0.45 to 0.55)" in flagged("rm", s)[label]


def test_kl_is_never_negative_beyond_rounding():
    s = summary("rlhf")
    s.kl_to_reference = -1e-8
    assert not any(k.startswith("KL") for k in flagged("rlhf", s))
    s.kl_to_reference = -0.01
    assert "-0.01 outside the normal range (0 to 5)" in next(v for k, v in flagged("rlhf", s).items() if k.startswith("KL"))


def test_reward_rising_while_gold_falls_is_flagged_on_the_gold_row():
    s = summary("rlhf")
    s = dataclasses.replace(s, rm_score_sft=0.1, rm_score_rlhf=2.0, mean_gold_sft=0.2, mean_gold_rlhf=0.1)
    [value] = [v for k, v in flagged("rlhf", s).items() if k.startswith("gold score of held-out answers, SFT")]
    assert "over-optimisation" in value and "-0.1 outside" in value
    s.rm_score_rlhf = 0.0  # both fell: a bad run, but not the reward model being exploited
    assert not [k for k in flagged("rlhf", s) if k.startswith("gold score of held-out answers, SFT")]


def test_entropy_collapse_and_the_grpo_loss_from_the_training_log(tmp_path):
    rows = [{"kind": "eval", "step": 0}, {"kind": "train", "step": 1, "entropy": 1.2, "loss": 0.02},
            {"kind": "train", "step": 2, "entropy": 0.1, "loss": 0.03}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = health.log_summary(str(tmp_path))
    assert log == {"entropy_first": 1.2, "entropy_last": 0.1, "loss_last": 0.03}
    s = summary("grpo")
    bad = flagged("grpo", s, log)
    assert "entropy collapse" in bad["policy entropy (nats/token), first → last training step"]
    assert "policy loss, last training step" not in bad  # near 0 is what GRPO shows
    log["loss_last"] = 2.0
    assert "2 outside the normal range (-0.5 to 0.5)" in flagged("grpo", s, log)["policy loss, last training step"]
    s.algo = "rloo"  # REINFORCE/RLOO's loss has no normal value
    assert "policy loss, last training step" not in flagged("rlhf", s, log)


def test_checked_figures_reads_the_log_beside_the_summary(tmp_path):
    (tmp_path / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "entropy": 0.5, "loss": -1.0}) + "\n")
    rows = dict(health.checked_figures("rlhf", summary("rlhf"), str(tmp_path)))
    assert rows["policy entropy (nats/token), first → last training step"] == "0.500 → 0.500"
    sft = summary("sft")
    assert health.checked_figures("sft", sft, str(tmp_path)) == report.figures("sft", sft)  # no log rows, no flags
