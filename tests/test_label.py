"""`minillm label` driven through a pipe: two raters, the pairs they share, resuming, bad keys and
files, Ctrl-C; Cohen's κ by hand; a reward model trained on the class's labels and its report."""
import io
import json
import sys

import pytest

from minillm.app import labeling
from minillm.app.cli import main
from minillm.errors import UserError


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """A 2-step pretrain and a 2-step SFT on a slice of the tiny world: answers are noise, which is enough."""
    root = tmp_path_factory.mktemp("label")
    corpus = root / "corpus.txt"
    corpus.write_text(("Where does Anna live? Anna lives in Rivertown. What is 2 plus 2? 2 plus 2 is 4. "
                       "How do I make tea? First, boil water. Kind, clever, great! 0 1 3 5 6 7 8 9\n") * 30)
    demos = root / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in [
        ("Where does Anna live?", "Anna lives in Rivertown."), ("What is 2 plus 2?", "2 plus 2 is 4.")] * 4))
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"What is {i} plus 2?"}) + "\n" for i in range(10)))
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(root / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    for name in ("sft", "sft2"):
        assert main(["sft", "--init", str(root / "pt"), "--data", str(demos), "--val", str(demos), "--test",
                     str(demos), "--out", str(root / name), "--max-steps", str(2 if name == "sft" else 3),
                     "--batch-size", "2", "--quiet"]) == 0
    return root


def label(sft, out, rater, keys, *more, monkeypatch, capsys):
    """Run `minillm label` with `keys` piped into stdin; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(k + "\n" for k in keys)))
    code = main(["label", "--policy", str(sft / "sft"), "--out", str(out), "--rater", rater,
                 "--prompts", str(sft / "prompts.jsonl"), "--n", "4", "--shared-fraction", "0.5", *more])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_two_raters_share_the_same_pairs_and_keep_their_own(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "class.jsonl"
    assert label(sft, out, "ana", ["a", "b", "t", "a"], monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    assert label(sft, out, "ben", ["a", "a", "b", "b"], monkeypatch=monkeypatch, capsys=capsys)[0] == 0
    rows = records(out)
    ana, ben = ([r for r in rows if r["rater"] == name] for name in ("ana", "ben"))
    assert len(ana) == len(ben) == 4
    shared = [r["prompt_id"] for r in ana if r["shared"]]
    assert len(shared) == 2 and shared == [r["prompt_id"] for r in ben if r["shared"]]  # shared ones first, alike
    assert [r["label"] for r in ana] == ["A", "B", "tie", "A"]
    for a, b in zip(ana[:2], ben[:2]):  # the same answers, shown the same way round
        assert {a.get("chosen"), a.get("rejected")} == {b.get("chosen"), b.get("rejected")}
    tie = ana[2]
    assert "chosen" not in tie and {"answer_a", "answer_b", "gold_a", "gold_b"} <= set(tie)
    for r in rows:
        assert r["policy"] == str(sft / "sft") and r["against"] is None
        if r["label"] != "tie":
            assert {"prompt", "chosen", "rejected", "gold_chosen", "gold_rejected", "prompt_id"} <= set(r)


def test_the_judge_scores_are_never_shown(sft, tmp_path, monkeypatch, capsys):
    code, shown, _ = label(sft, tmp_path / "c.jsonl", "ana", ["a"] * 4, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "gold" not in shown.lower()
    assert "A" in shown and " | B" in shown and "shared" in shown


def test_a_rerun_resumes_after_what_the_rater_labelled(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.jsonl"
    code, shown, _ = label(sft, out, "ana", ["a", "q"], monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "(quit)" in shown and len(records(out)) == 1
    code, shown, _ = label(sft, out, "ana", ["b", "s", "b"], monkeypatch=monkeypatch, capsys=capsys)
    assert "1 of 4 pairs labelled so far" in shown and "(end of input)" in shown
    assert len(records(out)) == 3  # the skipped pair is not recorded; input ran out
    label(sft, out, "ana", ["a"] * 5, monkeypatch=monkeypatch, capsys=capsys)
    ids = [r["prompt_id"] for r in records(out)]
    assert len(ids) == 4 and len(set(ids)) == 4  # no prompt labelled twice, n reached


def test_a_bad_key_gets_one_line_and_the_same_pair_again(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.jsonl"
    code, shown, _ = label(sft, out, "ana", ["x", "A", "q"], monkeypatch=monkeypatch, capsys=capsys)
    errors = [line for line in shown.splitlines() if line.startswith("error:")]
    assert code == 0 and errors == ["error: unknown key 'x': type " + labeling.KEY_HELP]
    assert [r["label"] for r in records(out)] == ["A"]
    with pytest.raises(UserError, match="unknown key"):
        labeling.check_key("yes")


def test_a_label_file_from_another_policy_is_refused(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.jsonl"
    label(sft, out, "ana", ["a", "q"], monkeypatch=monkeypatch, capsys=capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\n"))
    code = main(["label", "--policy", str(sft / "sft2"), "--out", str(out), "--rater", "ben",
                 "--prompts", str(sft / "prompts.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "was labelled from policy" in err
    (tmp_path / "junk.jsonl").write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
    code = main(["label", "--policy", str(sft / "sft"), "--out", str(tmp_path / "junk.jsonl"), "--rater", "ana"])
    assert code == 2 and "not a `minillm label` file" in capsys.readouterr().err
    code = main(["label", "--policy", str(sft / "pt"), "--out", str(tmp_path / "new.jsonl"), "--rater", "ana"])
    assert code == 2 and "not a chat policy" in capsys.readouterr().err
    code = main(["label", "--policy", str(sft / "sft"), "--out", str(tmp_path / "new.jsonl"), "--rater", " "])
    assert code == 2 and "--rater" in capsys.readouterr().err


def test_against_takes_one_answer_from_each_policy(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.jsonl"
    label(sft, out, "ana", ["a", "b", "q"], "--against", str(sft / "sft2"), monkeypatch=monkeypatch, capsys=capsys)
    rows = records(out)
    assert len(rows) == 2 and all(r["against"] == str(sft / "sft2") for r in rows)
    assert all({r["chosen_source"], r["rejected_source"]} == {"policy", "against"} for r in rows)


def test_ctrl_c_loses_nothing_already_labelled(sft, tmp_path):
    session = labeling.LabelSession(policy=str(sft / "sft"), out=str(tmp_path / "c.jsonl"), rater="ana", n=4,
                                    prompts=str(sft / "prompts.jsonl"))
    keys = iter(["a\n", "b\n"])

    def read_line():
        try:
            return next(keys)
        except StopIteration:
            raise KeyboardInterrupt from None
    with pytest.raises(KeyboardInterrupt):
        labeling.run_terminal(session, read_line, lambda text: None)
    assert [r["label"] for r in records(tmp_path / "c.jsonl")] == ["A", "B"]


def test_a_simulated_rater_labels_through_the_notebook_entry(sft, tmp_path):
    session = labeling.LabelSession(policy=str(sft / "sft"), out=str(tmp_path / "c.jsonl"), rater="bot", n=3,
                                    prompts=str(sft / "prompts.jsonl"))
    counts = labeling.label_in_notebook(session, rater=lambda pair: "a" if len(pair.a) <= len(pair.b) else "b")
    assert counts["labelled"] == 3 and counts["total"] == 3
    for r in records(tmp_path / "c.jsonl"):
        assert len(r["chosen"]) <= len(r["rejected"])


def test_cohens_kappa_by_hand():
    assert labeling.cohen_kappa(list("AABB"), list("ABBB")) == pytest.approx(0.5)  # p_o 0.75, p_e 0.5
    assert labeling.cohen_kappa(list("AB"), list("AB")) == 1.0
    assert labeling.cohen_kappa(list("ABAB"), list("AABB")) == pytest.approx(0.0)
    assert labeling.cohen_kappa(list("AAA"), list("AAA")) == 1.0  # one label only, agreed
    with pytest.raises(ValueError):
        labeling.cohen_kappa(["A"], [])


def test_agreement_between_raters_and_with_gold():
    def row(rater, pid, label, shared=True, gold=(1.0, 0.0)):
        return {"rater": rater, "prompt_id": pid, "label": label, "shared": shared,
                "gold_chosen": gold[0], "gold_rejected": gold[1]}
    rows = [row("a", 1, "A"), row("a", 2, "A"), row("a", 3, "B", gold=(0.0, 1.0)), row("a", 9, "A", shared=False),
            row("b", 1, "A"), row("b", 2, "B"), row("b", 3, "B", gold=(1.0, 0.0))]
    agree = labeling.rater_agreement(rows)
    assert agree["raw"] == pytest.approx(2 / 3) and len(agree["pairs"]) == 1 and agree["pairs"][0]["items"] == 3
    gold = labeling.gold_agreement_by_rater(rows)
    assert gold["a"]["agree"] == pytest.approx(3 / 4)  # rater a chose gold's loser on prompt 3
    assert gold["b"]["agree"] == 1.0


def test_a_reward_model_trains_on_the_class_labels_and_reports_them(sft, tmp_path, monkeypatch, capsys):
    out = tmp_path / "class.jsonl"
    label(sft, out, "ana", ["a", "b", "a", "b"], monkeypatch=monkeypatch, capsys=capsys)
    label(sft, out, "ben", ["a", "a", "b", "t"], monkeypatch=monkeypatch, capsys=capsys)
    extra = tmp_path / "gold.jsonl"
    extra.write_text(json.dumps({"prompt": "What is 2 plus 2?", "chosen": "2 plus 2 is 4.", "rejected": "Kind?"}) + "\n")
    code = main(["reward", "--init", str(sft / "sft"), "--data", str(out), str(extra), "--out", str(tmp_path / "rm"),
                 "--max-steps", "2", "--batch-size", "2", "--agreement-prompts", "2", "--prompts", str(sft / "prompts.jsonl"),
                 "--skip-bad", "--quiet"])
    captured = capsys.readouterr()
    shown = captured.out
    assert code == 0, captured.err
    mixed = records(str(tmp_path / "rm") + ".pairs.jsonl")
    assert len(mixed) == 7 + 1 and all(set(p) == {"prompt", "chosen", "rejected"} for p in mixed)  # the tie left out
    report = json.loads((tmp_path / "rm" / "class_report.json").read_text())
    assert report["raters"] == ["ana", "ben"] and report["rater_agreement"]["pairs"][0]["items"] == 2
    assert report["rater_agreement"]["raw"] == pytest.approx(0.5)  # shared pairs: (A, B) against (A, A)
    assert 0.0 <= report["rm_on_class"] <= 1.0 and report["class_pairs"] == 7 and report["gold_pairs"] > 0
    assert "Cohen's κ" in shown and (tmp_path / "rm" / "class_report.md").exists()


def test_the_pipeline_report_shows_a_flawed_labelers_chain(tmp_path):
    from minillm.data import labelers

    data, run = tmp_path / "data", tmp_path / "run"
    (data / "preferences").mkdir(parents=True)
    labelers.write_settings(str(data / "preferences"), labelers.Labeler(noise=0.2), 0, 0.0, {"train_agreement": 0.8})
    (run / "rm").mkdir(parents=True)
    (run / "rlhf").mkdir()
    from minillm.phases.summaries import RewardMetrics, RewardSummary

    rm = RewardSummary(step=10, tokens_seen=1000, val_loss=0.5, val_accuracy=0.8, val_margin=1.0, train_pairs=20,
                       val_pairs=5, baseline=RewardMetrics(val_loss=0.69, val_accuracy=0.5, val_margin=0.0), skipped=0,
                       truncated=0, bad_records=0, val_skipped=0, rm_gold_agreement=0.75, agreement_pairs=8,
                       seconds=1.0)
    (run / "rm" / "summary.json").write_text(json.dumps(rm.to_json()))
    prompts = ["Where does Anna live?", "Add 2 and 3."]
    answers = {"sft": ["I'm not sure, but Anna lives in Rivertown.", "2 plus 3 is 5. Is this for school?"],
               "rlhf": ["What a great question! Anna lives in Rivertown.", "2 plus 3 is 5."]}
    (run / "rlhf" / "report.json").write_text(json.dumps({"prompts": prompts, "answers": answers,
                                                           "sft": {"answer_form": 0.0}, "rlhf": {"answer_form": 1.0}}))
    text = "\n".join(labeling.flaw_chain(str(run), str(data)))
    assert "noise 0.2" in text and "labels agreeing with gold (shipped training pairs): 0.800" in text
    assert "fresh SFT answer pairs: 0.750" in text and "flattery rate 0.000 → 0.500" in text
    assert "mean answer length 38.0 → 30.5 characters" in text and "answer form 0.000 → 1.000" in text
    assert labeling.flaw_chain(str(run), None) == [] and labeling.flaw_chain(str(run), "shipped data/") == []
