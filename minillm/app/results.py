"""docs/results.md, rebuilt from pipeline runs: what each run measured, and where it ran.

Every figure comes from a run directory's saved files (each phase's DONE.json marker, the
phase-3 methods' report.json, the run's pipeline.json), never from a clock or a model at
rendering time, so the same run directories always give the same bytes. The pipeline records
in each marker the machine the phase ran on and the command that reproduces the run
(`machine`, `pipeline_command`). Study sections (a directory with results_section.md and its
PNG figures) are copied in verbatim after the runs.
Left out: statistics across runs, the runs' own plots (each run's report.html has them).
"""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import time
from collections import defaultdict

import numpy

from minillm.app.pipeline_phases import CORE, DEFAULT_METHODS, METHODS, TITLES, read_marker
from minillm.app.report import COMPARISON_COLUMNS, COMPARISON_NOTE, METHOD_NAMES, comparison_rows, figures, headline
from minillm.app.report_writer import _size_cells
from minillm.data.gold import exact_reward
from minillm.data.tasks import find_task
from minillm.engine import backend
from minillm.errors import MissingFileError, UserError
from minillm.phases.summaries import AnswerScores
from minillm.io.safe_files import write_text_atomic

SECTION_FILE = "results_section.md"
FINISHED = "- Finished: "  # the one line of a run's provenance that holds a date (tests/test_no_history.py)
INTRO = ("Every number below was read from the runs' saved summaries (each phase's DONE.json, each phase-3 "
         "method's report.json); rerun the command to rebuild this page, byte for byte. Held-out prompts ask "
         "about facts that no SFT, reward-model or RL prompt asked about (the facts are in the pretraining "
         "text). Gold is the simulated labeler's score, from −1 (garbage) to 1 (correct, direct, polite); "
         "RM is the reward model's score r_θ(x, y). Times are wall-clock seconds on the machine each run names, "
         "which other jobs may have shared: compare them within a run.")


# ----- what the pipeline records about where a phase ran -------------------------------------

def machine() -> str:
    """One line naming the machine a phase runs on: CPU model and cores, system, NumPy, device."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass  # not Linux: platform's name is the best there is
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, NumPy {numpy.__version__}, device {backend.device}")


def pipeline_command(out: str, preset: str, seed: int, data: str | None, methods) -> str:
    """The `minillm pipeline` command line that runs (or resumes) this run."""
    inside = os.path.relpath(out)
    out = out if inside.startswith(os.pardir) else inside  # a run under the working directory, as typed there
    words = ["minillm", "pipeline", "--preset", preset, "--seed", str(seed), "--out", out]
    if data:
        words += ["--data", data]
    if tuple(methods) != DEFAULT_METHODS:
        words += ["--methods", ",".join(methods)]
    return " ".join(shlex.quote(w) for w in words)


def results_command(runs: list[str], sections: list[str], out: str) -> str:
    """The `minillm results` command line that rebuilds a page from these runs and sections."""
    words = ["minillm", "results", *runs] + [w for s in sections for w in ("--section", s)] + ["--out", out]
    return " ".join(shlex.quote(w) for w in words)


# ----- reading a run ----------------------------------------------------------------------

def read_run(run_dir: str) -> dict:
    """A run's settings and every finished phase's marker: {"dir", "settings", "phases": {phase: PhaseMarker or None}}."""
    path = os.path.join(run_dir, "pipeline.json")
    if not os.path.isfile(path):
        raise MissingFileError(f"{run_dir} is not a pipeline run: expected {path} (made by minillm pipeline --out DIR)")
    with open(path, encoding="utf-8") as f:
        settings = json.load(f)
    phases = {p: read_marker(run_dir, p) for p in CORE + METHODS}
    phases = {p: m for p, m in phases.items() if m is not None or p in CORE or os.path.isdir(os.path.join(run_dir, p))}
    if all(m is None for m in phases.values()):
        raise UserError(f"{run_dir} holds no finished phase yet: run `minillm pipeline --out {run_dir}` first")
    return {"dir": run_dir, "settings": settings, "phases": phases}


def _provenance(run: dict) -> list[str]:
    """Command, settings, machine and date of a run, from what its markers recorded."""
    s, finished = run["settings"], [m for m in run["phases"].values() if m]
    last = max(finished, key=lambda m: m.finished_at)
    recorded = [m.command for m in sorted(finished, key=lambda m: m.finished_at) if m.command is not None]
    methods = [p for p in run["phases"] if p in METHODS] or DEFAULT_METHODS
    command = (_as_given(recorded[-1], run["dir"]) if recorded
               else pipeline_command(run["dir"], s["preset"], s["seed"], s["data"], methods))
    first = min(m.finished_at - m.seconds for m in finished)
    return [f"- Command: `{command}`",
            f"- Preset `{s['preset']}`, seed {s['seed']}, data {s['data'] or 'shipped data/'}",
            f"- Machine: {_machines(run)}",
            f"{FINISHED}{_utc(last.finished_at)}, after {_minutes(sum(m.seconds for m in finished))} of phase "
            f"time (first phase started about {_utc(first)})"]


def _machines(run: dict) -> str:
    """The machine the phases recorded; where they differ, each with its phases."""
    machines = defaultdict(list)
    for phase, m in run["phases"].items():
        if m:
            machines[m.machine or "not recorded by the run"].append(phase)
    if len(machines) == 1:
        return next(iter(machines))
    return "; ".join(f"{name} ({', '.join(phases)})" for name, phases in machines.items())


def _as_given(command: str, run_dir: str) -> str:
    """The recorded command with its --out written as this page names the run, where both are
    the same directory (a run started from Python records an absolute path)."""
    words = shlex.split(command)
    if "--out" in words and os.path.abspath(words[words.index("--out") + 1]) == os.path.abspath(run_dir):
        words[words.index("--out") + 1] = run_dir
    return " ".join(shlex.quote(w) for w in words)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


# ----- rendering one run ----------------------------------------------------------------------

def _phase_table(run: dict) -> list[str]:
    rows = ["| phase | parameters | tokens | training FLOPs | time | headline |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]
    for p, m in run["phases"].items():
        if m is None:
            rows.append(f"| {TITLES[p]} | not finished | | | | |")
            continue
        rows.append(f"| {TITLES[p]} | " + " | ".join(_size_cells(m.size))
                    + f" | {m.seconds:.0f} s | {headline(p, m.summary)} |")
    return rows


def _figure_table(run: dict) -> list[str]:
    rows = ["| phase | figure | value |", "| --- | --- | --- |"]
    for p, m in run["phases"].items():
        if m is not None:
            rows += [f"| {TITLES[p]} | {k} | {v} |" for k, v in figures(p, m.summary)]
    return rows


def _comparison(run: dict) -> list[str]:
    rows = comparison_rows(run["phases"])
    if not rows:
        return []
    return (["", "### Phase 3 side by side", "", "| " + " | ".join(COMPARISON_COLUMNS) + " |",
             "| --- |" + " ---: |" * (len(COMPARISON_COLUMNS) - 1)]
            + ["| " + " | ".join(r) + " |" for r in rows] + ["", COMPARISON_NOTE])


def right_by_kind(prompts: list[str], answers: list[str]) -> dict[str, list[float]]:
    """{task kind: [exact reward of each verifiable answer]} (prompts without one right value left out)."""
    by_kind = defaultdict(list)
    for prompt, answer in zip(prompts, answers):
        reward = exact_reward(prompt, answer)
        if reward is not None:
            by_kind[find_task(prompt).kind].append(reward)
    return by_kind


def _method_report(run_dir: str, method: str) -> dict | None:
    path = os.path.join(run_dir, method, "report.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _answer_changes(run: dict) -> list[str]:
    """Per phase-3 method, how its greedy held-out answers differ from SFT's: form, direct answers,
    and right answers by task kind (the verifiable reward, `exact_reward`)."""
    rows, form_change, right_change, totals = [], [], defaultdict(list), {}
    for m in (m for m in METHODS if run["phases"].get(m)):
        report = _method_report(run["dir"], m)
        if report is None:
            continue
        sft, new = AnswerScores.from_json(report["sft"]), AnswerScores.from_json(report["rlhf"])  # "rlhf": the method's policy
        before = right_by_kind(report["prompts"], report["answers"]["sft"])
        after = right_by_kind(report["prompts"], report["answers"]["rlhf"])
        right = "; ".join(f"{kind} {sum(before[kind]):.0f} → {sum(after[kind]):.0f} of {len(before[kind])}"
                          for kind in sorted(before))
        rows.append(f"| {METHOD_NAMES[m]} | {sft.answer_form:.0%} → {new.answer_form:.0%} | "
                    f"{sft.direct_rate:.0%} → {new.direct_rate:.0%} | {right} |")
        form_change.append(round(100 * new.answer_form) - round(100 * sft.answer_form))
        for kind in before:
            right_change[kind].append(int(sum(after[kind]) - sum(before[kind])))
            totals[kind] = len(before[kind])
    if not rows:
        return []
    return ["", "### What phase 3 changed in the answers", "",
            "Held-out answers, SFT → each method (greedy; best-of-n: its pick of n samples). Answer form: the share without the labeler's style "
            "penalty (no hedge, no follow-up question). Direct: gold ≥ 0.5. Right: the verifiable reward, 1 when "
            "the answer states the prompt's right value (prompts with one right value only).", "",
            "| method | answer form | direct answers | right answers by kind |", "| --- | ---: | ---: | --- |", *rows,
            "", _changes_sentence(form_change, right_change, totals)]


def _span(values: list[int]) -> str:
    """'+3' for one value or equal values, '-1 to +4' for a range (0 without a sign)."""
    signed = [f"{v:+d}" if v else "0" for v in (min(values), max(values))]
    return signed[0] if signed[0] == signed[1] else f"{signed[0]} to {signed[1]}"


def _changes_sentence(form_change: list[int], right_change: dict, totals: dict) -> str:
    """The table's changes in one sentence: answer form in points, right answers per kind, over the methods."""
    methods = "the method" if len(form_change) == 1 else f"the {len(form_change)} methods"
    rights = ", ".join(f"{_span(right_change[kind])} of {totals[kind]} {kind} prompts" for kind in sorted(right_change))
    return f"Over {methods}, answer form changed by {_span(form_change)} points, and the right answers by {rights}."


def _best_of_n(run: dict) -> list[str]:
    """Where best-of-n's gold comes from: one sample against greedy SFT, the reward model's pick,
    the labeler's pick of the same candidates."""
    m = run["phases"].get("best-of-n")
    if not m:
        return []
    s = m.summary
    tau, n = s.temperature, s.n
    cost, regained = s.mean_gold_sft - s.sample_gold, s.rm_pick_gold - s.sample_gold
    return ["", "### Best-of-n's candidates", "",
            f"| greedy SFT | one sample at τ = {tau} | the reward model's pick of {n} | the labeler's pick of {n} "
            "| reward model picked a top-gold candidate |", "| ---: | ---: | ---: | ---: | ---: |",
            f"| {s.mean_gold_sft:+.3f} | {s.sample_gold:+.3f} | {s.rm_pick_gold:+.3f} | "
            f"{s.oracle_gold:+.3f} | {s.rm_pick_is_oracle:.0%} |", "",
            f"Sampling at τ = {tau} instead of answering greedily changes the SFT model's mean gold by "
            f"{-cost:+.3f}; the reward model's pick of {n} scores {regained:+.3f} against one sample, so "
            f"{s.rm_pick_gold - s.mean_gold_sft:+.3f} against greedy SFT, and a perfect picker of the same "
            f"candidates would reach {s.oracle_gold:+.3f}."]


def render_run(run: dict) -> list[str]:
    s = run["settings"]
    return ([f"## Preset `{s['preset']}`, seed {s['seed']}: {run['dir']}", ""] + _provenance(run)
            + ["", "### Phases", ""] + _phase_table(run) + ["", "### Key figures", ""] + _figure_table(run)
            + _comparison(run) + _answer_changes(run) + _best_of_n(run))


# ----- the page ---------------------------------------------------------------------------

READING = """## Reading these numbers

- **What a reward can reinforce.** A policy-gradient step raises the probability of sampled answers
  whose reward beats that of the others drawn for the same prompt (RLOO's and GRPO's baselines are
  those other samples), so an answer the policy never samples cannot be reinforced; where the reward
  scores every sample of a prompt alike, what is left of the signal is the KL penalty, which pulls
  the policy back toward the SFT model. A habit such as a hedge or a follow-up question is in some
  samples and not in others, so a reward that prefers its absence can remove it; a sum the model
  never gets right offers no right sample to reinforce. The table "What phase 3 changed in the
  answers" separates the two: how an answer is said (answer form, direct answers) and what it says
  (right answers by kind).
- **Best-of-n pays for its samples.** Its candidates are samples, not greedy answers: whatever
  sampling costs against the SFT model's greedy answer, the reward model's pick must win back before
  best-of-n can beat SFT. The table "Best-of-n's candidates" (present when the run has best-of-n)
  shows both halves. A lower sampling temperature τ brings the samples closer to the greedy answer,
  at the price of candidates that differ less (docs/decisions.md: the temperature the pipeline
  samples at).
- **Reading small differences.** A win rate rests on the prompts counted beside it; a change of a
  few prompts, or of a reward-model accuracy by one validation pair in a few hundred, can move with the
  seed and with the last bits of the arithmetic, so compare runs by their larger differences."""


def render(runs: list[dict], sections: list[str], command: str) -> str:
    lines = ["# Results", "", f"Generated by `{command}`.", "", INTRO, ""]
    for run in runs:
        lines += render_run(run) + [""]
    lines += [READING, ""]
    for text in sections:
        lines += [text.rstrip("\n"), ""]
    return "\n".join(lines)


_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def read_section(directory: str) -> tuple[str, list[str]]:
    """A study section's Markdown and its PNG files; every image it links must be one of them."""
    path = os.path.join(directory, SECTION_FILE)
    if not os.path.isfile(path):
        raise MissingFileError(f"no {SECTION_FILE} in {directory}: a study section is a directory holding one")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    pngs = sorted(name for name in os.listdir(directory) if name.endswith(".png"))
    missing = [link for link in _LINK.findall(text) if "://" not in link and link not in pngs]
    if missing:
        raise UserError(f"{path} links {', '.join(missing)}: expected PNG files beside it in {directory}")
    return text, [os.path.join(directory, name) for name in pngs]


def build_page(runs: list[str], out: str, sections: list[str] = ()) -> tuple[str, dict[str, str]]:
    """The page for these runs and study sections, and the figures to copy beside it.

    Returns:
        (the Markdown text, {figure file name: its path in a section directory}).
    """
    read = [read_run(r) for r in runs]
    texts, figures_by_name = [], {}
    for directory in sections:
        text, pngs = read_section(directory)
        texts.append(text)
        for png in pngs:
            name = os.path.basename(png)
            if name in figures_by_name:
                raise UserError(f"two sections hold a figure named {name} ({figures_by_name[name]}, {png}): rename one")
            figures_by_name[name] = png
    return render(read, texts, results_command(runs, list(sections), out)), figures_by_name


def write_results(runs: list[str], out: str, sections: list[str] = ()) -> str:
    """Write `out` (Markdown) from the runs and study sections, copying the sections' PNGs beside it.

    Returns:
        the path written.
    """
    page, figures_by_name = build_page(runs, out, sections)
    target = os.path.dirname(out) or "."
    os.makedirs(target, exist_ok=True)
    for name, png in figures_by_name.items():
        shutil.copyfile(png, os.path.join(target, name))
    write_text_atomic(out, page)
    return out
