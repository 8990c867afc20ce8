"""`minillm pipeline` end to end on the quick preset, crashed once and resumed; the report it
writes (self-contained HTML, every phase, the answers table); `minillm compare`; --data errors.

The quick pipeline runs once per module: a first run is killed by a simulated Ctrl-C right
after the reward model's first checkpoint, a second run with the same --out finishes it.
"""
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from minillm.app import cli, pipeline_phases as phases, pipeline, report
from minillm.data.folders import shipped
from minillm.phases import presets, trainer as loop

PHASES = ("pretrain", "sft", "rm", "rlhf")


def _snapshot(out, phase):
    """What must not change once a phase has finished: its marker (bytes, mtime) and its log."""
    d = out / phase
    return {name: ((d / name).read_bytes(), (d / name).stat().st_mtime_ns) for name in ("DONE.json", "log.jsonl")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    args = ["pipeline", "--preset", "quick", "--out", str(out), "--quiet"]
    patch = pytest.MonkeyPatch()
    original = loop.Trainer.save

    def save_then_interrupt(self):
        original(self)
        if self.meta.get("phase") == "reward":
            raise KeyboardInterrupt  # Ctrl-C right after the reward model's first checkpoint
    patch.setattr(loop.Trainer, "save", save_then_interrupt)
    try:
        first = cli.main(args)
    finally:
        patch.undo()
    state = {"first_rc": first, "done_after_crash": {p: (out / p / "DONE.json").exists() for p in PHASES},
             "rm_step_after_crash": json.loads((out / "rm" / "checkpoint" / "config.json").read_text())["step"],
             "finished": {p: _snapshot(out, p) for p in ("pretrain", "sft")}}
    state["second_rc"] = cli.main(args)
    return out, state


def test_an_interrupted_pipeline_resumes_without_redoing_finished_phases(run):
    out, state = run
    assert state["first_rc"] == 130  # the CLI's answer to Ctrl-C
    assert state["done_after_crash"] == {"pretrain": True, "sft": True, "rm": False, "rlhf": False}
    assert state["second_rc"] == 0
    for phase in ("pretrain", "sft"):  # finished phases were neither rerun nor rewritten
        assert _snapshot(out, phase) == state["finished"][phase]
    rm = json.loads((out / "rm" / "DONE.json").read_text())
    assert rm["resumed"] and 0 < state["rm_step_after_crash"] < rm["summary"]["step"]
    assert (out / "rm" / "ATTEMPTS.json").exists()  # the interrupted attempt's time is counted
    steps = [r["step"] for r in loop.read_log(str(out / "rm" / "log.jsonl")) if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "the resumed log repeats or loses steps"


def test_every_phase_finished_with_its_summary_and_size(run):
    out, _ = run
    for phase in PHASES:
        marker = phases.read_done(str(out), phase)
        assert marker["phase"] == phase and marker["seconds"] > 0
        assert marker["size"]["parameters"] > 0 and marker["size"]["tokens"] > 0 and marker["size"]["flops"] > 0
    assert phases.read_done(str(out), "pretrain")["summary"]["baseline_val_loss"] > 0
    assert "after" in phases.read_done(str(out), "sft")["summary"]


def test_rerunning_a_finished_pipeline_changes_no_phase(run, capsys):
    out, _ = run
    before = {p: _snapshot(out, p) for p in PHASES}
    assert cli.main(["pipeline", "--preset", "quick", "--out", str(out)]) == 0
    assert {p: _snapshot(out, p) for p in PHASES} == before
    assert capsys.readouterr().err.count("already finished") == len(PHASES)


def test_other_settings_on_the_same_out_are_refused(run, capsys):
    out, _ = run
    assert cli.main(["pipeline", "--preset", "quick", "--seed", "5", "--out", str(out)]) == 2
    assert "seed: 1337 when started, 5 now" in capsys.readouterr().err


def test_report_is_self_contained_and_holds_every_phase_and_the_answers(run):
    out, _ = run
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert page.count("<img") == 5  # pretrain, SFT, RM loss + margins, RLHF
    for phase in PHASES:
        assert f"id='{phase}'" in page and phases.TITLES[phase] in page
    assert "id='answers'" in page and "How to make pasta" in page and "<th>RLHF</th>" in page
    md = (out / "report.md").read_text(encoding="utf-8")
    for title in (phases.TITLES[p] for p in PHASES):
        assert f"## {title}" in md
    answers = json.loads((out / "answers.json").read_text())
    assert answers[0]["prompt"] == "How to make pasta" and len(answers) == presets.PRESETS["quick"].report_prompts
    for row in answers:
        assert set(row["answers"]) == {"pretrained", "SFT", "RLHF"}
        assert all(-1 <= a["gold"] <= 1 and isinstance(a["rm"], float) for a in row["answers"].values())


def test_report_shows_one_held_out_multi_turn_exchange_per_model(run):
    out, _ = run
    turns = pipeline.pick_conversation(shipped().chat_test)
    assert len(turns) >= 3 and all({"she", "he", "her", "his", "it", "that"} & set(t.rstrip("?").split())
                                   for t in turns[1:])  # the later questions refer back
    md = (out / "report.md").read_text(encoding="utf-8")
    section = md[md.index("## A multi-turn conversation (held out, greedy)"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith(("| user", "| ---"))]
    assert [r.split(" | ")[0][2:] for r in rows] == turns and all(r.count(" | ") == 3 for r in rows)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "id='conversation'" in page and all(t in page for t in turns)
    models, _ = report.load_models(str(out))
    replies = report.converse(models, turns)
    assert [r.split(" | ")[1] for r in rows] == [(a or "(empty)").replace("|", "/").replace("\n", " ")
                                                 for a in replies["pretrained"]]  # greedy: the same replies


def test_report_renders_in_a_headless_browser(run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from matplotlib.image import imread
    out, _ = run
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000",
                    f"--user-data-dir={tempfile.mkdtemp()}", f"--screenshot={shot}", "--window-size=1200,3000",
                    (out / "report.html").as_uri()], check=True, timeout=120, capture_output=True)
    pixels = imread(str(shot))[..., :3]  # (H, W, 3) floats in [0, 1]
    assert pixels.std() > 0.05, "the screenshot is blank"
    blue = abs(pixels - [31 / 255, 119 / 255, 180 / 255]).max(axis=-1) < 0.06  # matplotlib's first colour
    orange = abs(pixels - [255 / 255, 127 / 255, 14 / 255]).max(axis=-1) < 0.06
    assert blue.sum() > 200 and orange.sum() > 50, "the plots did not render"


def test_compare_prints_plain_answers_with_scores_when_piped(run, capsys):
    out, _ = run
    assert cli.main(["compare", str(out), "--prompt", "How to make pasta"]) == 0
    text = capsys.readouterr().out
    assert "\033[" not in text and "prompt: How to make pasta" in text
    for name in ("pretrained", "SFT", "RLHF"):
        assert re.search(rf"{name}\s+RM [+-]\d\.\d\d\s+gold [+-]\d\.\d\d", text), text


def test_compare_interactive_reads_prompts_until_an_empty_line(run, capsys, monkeypatch):
    out, _ = run
    monkeypatch.setattr("sys.stdin", io.StringIO("Add 2 and 3.\n\nWhere does Anna live?\n"))
    assert cli.main(["compare", str(out), "--interactive"]) == 0
    text = capsys.readouterr().out
    assert "prompt: Add 2 and 3." in text and "Anna" not in text


def test_every_method_from_the_same_sft_model_and_one_comparison_table(run, capsys):
    """A rerun with --methods reuses pretrain, sft, rm and rlhf, runs the four others, and the report
    and `minillm compare` show them all."""
    out, _ = run
    before = {p: _snapshot(out, p) for p in PHASES}
    methods = "rlhf,ppo,dpo,best-of-n,grpo"
    assert cli.main(["pipeline", "--preset", "quick", "--out", str(out), "--methods", methods, "--quiet"]) == 0
    assert {p: _snapshot(out, p) for p in PHASES} == before
    for method in ("ppo", "dpo", "best-of-n", "grpo"):
        summary = json.loads((out / method / "DONE.json").read_text())["summary"]
        assert {"mean_gold_rlhf", "rlhf_vs_sft_win_rate", "rlhf_vs_sft_win_rate_ties_half", "rm_score_rlhf",
                "kl_to_reference"} <= set(summary), method
        assert summary["mean_gold_sft"] == pytest.approx(
            json.loads((out / "rlhf" / "DONE.json").read_text())["summary"]["mean_gold_sft"])  # the same SFT answers
    best_of_n = json.loads((out / "best-of-n" / "DONE.json").read_text())["summary"]
    assert best_of_n["temperature"] == presets.PRESETS["quick"].best_of_n_temperature
    md = (out / "report.md").read_text()
    table = md.split("## Phase 3 side by side", 1)[1].split("\n\n")[1]
    assert f"(best-of-{best_of_n['n']}, τ = {best_of_n['temperature']})" in table
    assert len(table.splitlines()) == 2 + 1 + 5 and "| SFT |" in table  # header, rule, SFT, five methods
    assert "value" in json.loads((out / "ppo" / "log.jsonl").read_text().splitlines()[0])["models"]
    assert cli.main(["compare", str(out), "--prompt", "Add 2 and 3."]) == 0
    text = capsys.readouterr().out
    for name in ("pretrained", "SFT", "RLHF", "PPO", "DPO", "best-of-n", "GRPO"):
        assert re.search(rf"{name}\s+RM [+-]\d\.\d\d\s+gold [+-]\d\.\d\d", text), (name, text)
    assert cli.main(["pipeline", "--preset", "quick", "--out", str(out), "--methods", "rlhf,sft"]) == 2
    assert "unknown method(s) sft" in capsys.readouterr().err


def test_the_presets_best_of_n_temperature_reaches_its_run(run, tmp_path):
    out, _ = run
    preset = dataclasses.replace(presets.PRESETS["quick"], best_of_n_temperature=0.7)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("Add 2 and 3.", "Where does Anna live?")))
    summary = pipeline._best_of_n(pipeline.Pipeline(out=str(out), preset="quick", quiet=True), preset, None,
                                  str(heldout), str(tmp_path / "best-of-n"))
    assert summary["temperature"] == 0.7 and "τ = 0.7" in (tmp_path / "best-of-n" / "report.md").read_text()
    for name in ("classroom", "full"):  # the value benchmarks/best_of_n_sweep.py chose on the classroom run
        assert presets.PRESETS[name].best_of_n_temperature == 0.5


def test_a_bad_data_layout_is_one_clear_error_before_any_work(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "pretrain").mkdir(parents=True)
    (data / "pretrain" / "corpus.txt").write_text("hello world\n")
    (data / "sft").mkdir()
    out = tmp_path / "out"
    assert cli.main(["pipeline", "--preset", "quick", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("error") == 1 and "sft/train.jsonl, preferences/train.jsonl, rl/train.jsonl" in err
    assert "expected DIR/pretrain/" in err and not out.exists()


def test_a_custom_layout_resolves_optional_files(tmp_path):
    data = tmp_path / "data"
    for name in ("pretrain/a.txt", "pretrain/b.txt", "sft/train.jsonl", "preferences/train.jsonl",
                 "rl/train.jsonl", "rl/heldout.jsonl"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text('{"prompt": "x"}\n')
    layout = pipeline.resolve_data(str(data))
    assert layout.pretrain == str(data / "pretrain") and layout.pretrain_val is None  # every .txt, 10% held out
    assert layout.sft_val is None and layout.held_out() == str(data / "rl" / "heldout.jsonl")
    assert layout.chat is None and pipeline.pick_conversation(layout.chat_test) is None
    assert shipped().chat.endswith(os.path.join("data", "chat", "train.jsonl"))


def test_held_out_prompts_start_with_the_lecture_prompt_and_mix_kinds():
    prompts = pipeline.pick_prompts(shipped().held_out(), 8)
    from minillm.data.tasks import find_task
    assert prompts[0] == "How to make pasta" and len(set(prompts)) == 8
    assert len({find_task(p).kind for p in prompts}) >= 5


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_builds_valid_phase_configs(name):
    from minillm.model.gpt import GPTConfig
    from minillm.phases.rl.rlhf import check_config
    preset = presets.PRESETS[name]
    config = GPTConfig(vocab_size=80, **preset.model)
    for phase in (preset.pretrain, preset.sft, preset.rm, preset.dpo):
        assert phase.warmup_steps <= phase.max_steps and phase.eval_interval <= phase.max_steps
    if preset.rlhf != presets.RLHF:  # a pipeline preset: the prompt keeps at least half the block
        assert preset.rlhf.max_new_tokens < config.block_size // 2
    for method in (preset.rlhf, preset.ppo, preset.grpo):
        check_config(method)
    assert preset.ppo.algo == "ppo" and preset.grpo.algo == "grpo" and preset.dpo.beta > 0
    assert abs(sum(preset.shares) - 1) < 1e-9 and len(preset.shares) == len(PHASES)
