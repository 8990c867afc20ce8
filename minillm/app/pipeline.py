"""The lecture's whole story in one run: tokens → pretraining → SFT → reward model → RLHF.

Each phase starts from the previous phase's checkpoint and owns one directory under the
run's --out (pretrain, sft, rm, then one per phase-3 method: rlhf by default; ppo, dpo,
best-of-n and grpo with --methods, each from the same SFT model and the same data). When a phase has saved its final checkpoint, a
DONE.json marker (its summary) is written atomically; a rerun with the same --out skips the
finished phases and resumes an unfinished one from its own last checkpoint. At the end
`minillm.app.report` answers the same held-out prompts with every model; `report_writer` writes report.html/md.
Left out: running phases in parallel, hyperparameter sweeps, picking the best checkpoint.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace

from minillm.app import report, report_writer, results
from minillm.data import labelers
from minillm.data.folders import DataLayout, check_files, resolve_data
from minillm.data.readers import read_demonstrations, read_prompts
from minillm.data.tasks import find_task
from minillm.errors import UserError
from minillm.app.pipeline_phases import (
    DEFAULT_METHODS, SUMMARIES, TITLES, PhaseMarker, phases_for, read_marker, write_done,
)
from minillm.io import checks
from minillm.io.run_dir import prepare_output_dir, settings_differences
from minillm.io.safe_files import read_json, write_json_atomic, write_text_atomic
from minillm.phases.rl.best_of_n_run import BestOfNRun
from minillm.phases.rl.dpo import DPORun
from minillm.phases import presets
from minillm.phases.presets import Preset
from minillm.phases.pretrain import PretrainRun
from minillm.phases.reward import RewardRun
from minillm.phases.rl.rlhf import RLHFRun
from minillm.phases.sft import SFTRun

LECTURE_PROMPT = "How to make pasta"


def pick_prompts(path: str, n: int) -> list[str]:
    """The lecture's prompt first, then held-out prompts taking each task kind in turn.

    Example: kinds [fact, fact, sum, how-to] -> fact, sum, how-to, fact (so a short table
    still shows every kind of question).
    """
    prompts = list(dict.fromkeys(r["prompt"] for r in read_prompts(path, skip_bad=True)))
    by_kind: dict[str, list[str]] = {}
    for p in prompts:
        if p != LECTURE_PROMPT:
            by_kind.setdefault(getattr(find_task(p), "kind", "other"), []).append(p)
    chosen = [LECTURE_PROMPT]
    while len(chosen) < n and any(by_kind.values()):
        for queue in by_kind.values():
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def pick_conversation(path: str | None) -> list[str] | None:
    """The user turns of the first held-out conversation with three exchanges or more (else the
    first one): the report's multi-turn exchange. None without a conversations file."""
    if path is None:
        return None
    talks = [r["messages"] for r in read_demonstrations(path, skip_bad=True) if "messages" in r]
    if not talks:
        return None
    chosen = next((m for m in talks if len(m) >= 6), talks[0])
    return [m["content"] for m in chosen if m["role"] == "user"]


# ----- the marker and progress ------------------------------------------------------------

class PipelineProgress:
    """One line per phase start and end, with elapsed time and an ETA for the whole run.

    The ETA scales the time the phases run by this call took by the preset's time shares
    (each phase-3 method counts as much as the preset's RLHF share).
    """

    def __init__(self, shares: tuple, quiet: bool = False):
        self.shares, self.quiet, self.start, self.done_share = shares, quiet, time.perf_counter(), 0.0

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[pipeline {_clock(time.perf_counter() - self.start)}] {message}", file=sys.stderr, flush=True)

    def phase_end(self, index: int, phase: str, seconds: float, headline: str) -> None:
        self.done_share += self.shares[index]
        elapsed = time.perf_counter() - self.start
        left = sum(self.shares[index + 1:])
        eta = f", about {_clock(elapsed / self.done_share * left)} to go" if left and elapsed > 1 else ""
        self.say(f"{phase} done in {_clock(seconds)}: {headline}{eta}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


# ----- the run -------------------------------------------------------------------------

@dataclass
class Pipeline:
    """One whole run; `run()` runs (or resumes) every phase, writes the report, returns its paths."""

    out: str = "runs/pipeline"
    preset: str = presets.PIPELINE_PRESET  # a name in phases/presets.py's PRESETS
    seed: int = 1337
    data: str | None = None         # a directory in the layout of data/ (default: the shipped data)
    methods: tuple = DEFAULT_METHODS  # phase 3's methods: rlhf, ppo, dpo, best-of-n, grpo
    overwrite: bool = False         # replace another minillm run (or pipeline) in `out`
    quiet: bool = False

    def run(self) -> dict:
        preset = presets.get(self.preset)
        checks.SEED.check("seed (--seed)", self.seed)
        phases = phases_for(self.methods)
        layout = resolve_data(self.data)
        check_files(layout)  # every record read once before the first phase starts
        self._check_settings()
        heldout = self._heldout_file(layout, preset.eval_prompts)
        shares = preset.shares + (preset.shares[-1],) * (len(phases) - len(preset.shares))
        progress = PipelineProgress(shares, self.quiet)
        progress.say(f"preset {self.preset}, seed {self.seed}, data {self.data or 'shipped data/'}, out {self.out}, "
                     f"phase 3: {', '.join(phases[3:])}")
        for index, phase in enumerate(phases):
            done = read_marker(self.out, phase)
            if done is not None:
                progress.say(f"{phase} already finished ({report.headline(phase, done.summary)}): skipped")
                continue
            self._run_phase(index, phase, len(phases), preset, layout, heldout, progress)
        progress.say("answering the report's prompts with the pretrained, SFT and phase-3 models")
        prompts = pick_prompts(layout.held_out(), preset.report_prompts)
        paths = report_writer.write_report(self.out, prompts, {"preset": self.preset, "seed": self.seed,
                                                        "data": self.data or "shipped data/",
                                                        "methods": phases[3:]},
                                    conversation=pick_conversation(layout.chat_test))
        progress.say(f"report: {paths['html']} (and {os.path.basename(paths['md'])})")
        return paths

    def _run_phase(self, index, phase, total, preset, layout, heldout, progress) -> None:
        directory = os.path.join(self.out, phase)
        resuming = os.path.isdir(os.path.join(directory, "checkpoint"))
        progress.say(f"phase {index + 1}/{total}, {TITLES[phase]}: "
                     + ("resuming from its last checkpoint" if resuming else "starting"))
        start, before = time.perf_counter(), _spent(directory)
        try:
            summary = SUMMARIES[phase].from_json(RUNNERS[phase](self, preset, layout, heldout, directory))
        except BaseException:
            _add_spent(directory, time.perf_counter() - start)
            progress.say(f"{phase} stopped; run the same command again to resume it from its last checkpoint")
            raise
        seconds = before + time.perf_counter() - start
        marker = PhaseMarker(phase=phase, finished_at=time.time(), seconds=seconds, resumed=resuming,
                             machine=results.machine(), command=results.pipeline_command(
                                 self.out, self.preset, self.seed, self.data, phases_for(self.methods)[3:]),
                             size=report.phase_size(phase, directory, summary), summary=summary)
        write_done(self.out, marker)  # only now is the phase finished
        progress.phase_end(index, phase, seconds, report.headline(phase, summary))

    def _check_settings(self) -> None:
        """A run directory holds one pipeline: resuming with other settings would mix two runs, and
        a directory holding anything else is never written into (--overwrite replaces a minillm run)."""
        settings = {"preset": self.preset, "seed": self.seed,
                    "data": os.path.abspath(self.data) if self.data else None}
        path = os.path.join(self.out, "pipeline.json")
        if os.path.exists(path) and not self.overwrite:
            differences = settings_differences(read_json(path), settings)
            if differences:
                raise UserError(f"{self.out} holds a pipeline run started with other settings; differences: "
                                + "; ".join(differences) + ". Rerun it with those settings to resume it, pass "
                                "--overwrite to replace it, or choose another --out")
            return
        prepare_output_dir(self.out, self.overwrite)
        write_json_atomic(path, settings)

    def _heldout_file(self, layout: DataLayout, n: int) -> str:
        """The first n distinct held-out prompts, written once: RM agreement and RLHF evaluate them."""
        path = os.path.join(self.out, "heldout_prompts.jsonl")
        if not os.path.exists(path):
            prompts = list(dict.fromkeys(r["prompt"] for r in read_prompts(layout.held_out(), skip_bad=True)))
            write_text_atomic(path, "".join(json.dumps({"prompt": p}) + "\n" for p in prompts[:n]))
        return path


def _spent(directory: str) -> float:
    """Seconds earlier, interrupted attempts at this phase took (kept in its ATTEMPTS.json)."""
    path = os.path.join(directory, "ATTEMPTS.json")
    if not os.path.exists(path):
        return 0.0
    with open(path, encoding="utf-8") as f:
        return float(json.load(f)["seconds"])


def _add_spent(directory: str, seconds: float) -> None:
    os.makedirs(directory, exist_ok=True)
    write_json_atomic(os.path.join(directory, "ATTEMPTS.json"), {"seconds": _spent(directory) + seconds})


# ----- one function per phase: the previous phase's directory in, this one's out ------------

def _pretrain(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
    return PretrainRun(out=out, preset=run.preset, data=layout.pretrain, val=layout.pretrain_val,
                       overrides={"seed": run.seed}, resume=True, quiet=run.quiet).run()


def _sft(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
    data = [f for f in (layout.sft, layout.chat) if f]
    val = [f for f in (layout.sft_val, layout.chat_val) if f] or None
    return SFTRun(init=os.path.join(run.out, "pretrain"), out=out, data=data, val=val,
                  test=layout.sft_test or layout.sft_val or layout.sft, preset=run.preset,
                  overrides={"seed": run.seed}, eval_prompts=preset.eval_prompts, skip_bad=True, resume=True,
                  quiet=run.quiet).run()


def _rm(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
    return RewardRun(init=os.path.join(run.out, "sft"), out=out, data=layout.preferences,
                     val=layout.preferences_val, prompts=heldout, preset=run.preset, overrides={"seed": run.seed},
                     on_policy_prompts=preset.rm_on_policy, on_policy_source=layout.rl,
                     labeler=labelers.read_settings(layout.preferences),  # a flawed data folder's labeler
                     skip_bad=True, resume=True, quiet=run.quiet).run()


def _rl_method(name: str):
    """The runner of an RLHF-loop method (rlhf, ppo, grpo): the preset's settings of that method."""
    def run_method(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
        config = replace(getattr(preset, name), seed=run.seed)
        return RLHFRun(policy=os.path.join(run.out, "sft"), reward_model=os.path.join(run.out, "rm"), out=out,
                       config=config, prompts=layout.rl, heldout=heldout, resume=True, quiet=run.quiet).run()
    return run_method


def _dpo(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
    """DPO on the reward model's data: the preference pairs and the same gold-labelled SFT samples."""
    return DPORun(policy=os.path.join(run.out, "sft"), out=out, data=layout.preferences, val=layout.preferences_val,
                  heldout=heldout, preset=run.preset, overrides={"seed": run.seed},
                  on_policy_prompts=preset.rm_on_policy, on_policy_source=layout.rl,
                  reward_model=os.path.join(run.out, "rm"), resume=True, quiet=run.quiet).run()


def _best_of_n(run: Pipeline, preset: Preset, layout: DataLayout, heldout: str, out: str) -> dict:
    return BestOfNRun(policy=os.path.join(run.out, "sft"), reward_model=os.path.join(run.out, "rm"), out=out,
                      n=preset.best_of_n, heldout=heldout, max_new_tokens=preset.rlhf.max_new_tokens,
                      temperature=preset.best_of_n_temperature, seed=run.seed, resume=True, quiet=run.quiet).run()


RUNNERS = {"pretrain": _pretrain, "sft": _sft, "rm": _rm, "rlhf": _rl_method("rlhf"), "ppo": _rl_method("ppo"),
           "dpo": _dpo, "best-of-n": _best_of_n, "grpo": _rl_method("grpo")}
