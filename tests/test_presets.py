"""The one table of presets (phases/presets.py): every preset holds every phase, every training
command reads the table, flags come from the settings dataclasses' fields, `--beta` is the
KL β of RLHF and the β of DPO, a short run names what it changed, and the classroom preset
resolves to the settings its shipped run and documented figures were made with."""
import argparse
import dataclasses

import pytest

from minillm.app import cli, pipeline
from minillm.app.commands import dpo_command, rlhf_command
from minillm.data.folders import resolve_data
from minillm.phases import presets
from minillm.phases.presets import DPOConfig, Preset, RLHFConfig
from minillm.phases.pretrain import PretrainRun
from minillm.phases.trainer import TrainConfig, fit_schedule, short_run_note

COMMANDS = {"pretrain": TrainConfig, "sft": TrainConfig, "reward": TrainConfig, "dpo": DPOConfig,
            "rlhf": RLHFConfig, "pipeline": None}
PHASES = {"pretrain": TrainConfig, "sft": TrainConfig, "rm": TrainConfig, "dpo": DPOConfig, "rlhf": RLHFConfig,
          "ppo": RLHFConfig, "grpo": RLHFConfig}


def subcommands() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


# ----- the one table ---------------------------------------------------------------------

def test_the_table_holds_every_preset_and_every_phase():
    assert list(presets.PRESETS) == ["tiny", "quick", "classroom", "full", "shakespeare-char", "small-bpe"]
    for name, preset in presets.PRESETS.items():
        assert isinstance(preset, Preset)
        for phase, kind in PHASES.items():
            assert isinstance(getattr(preset, phase), kind), (name, phase)
        assert {"n_layer", "n_head", "n_embd", "block_size"} <= set(preset.model)
        assert preset.tokenizer and preset.eval_batches >= 1 and preset.ngram_orders


def test_the_pretraining_presets_run_the_later_phases_as_the_standalone_commands():
    for name in ("tiny", "shakespeare-char", "small-bpe"):
        p = presets.PRESETS[name]
        assert (p.sft, p.rm, p.dpo, p.rlhf) == (presets.SFT, presets.REWARD, presets.DPO, presets.RLHF)
        assert p.ppo == dataclasses.replace(presets.RLHF, algo="ppo")
        assert p.grpo == dataclasses.replace(presets.RLHF, algo="grpo")


def test_every_training_command_offers_the_tables_presets():
    parsers = subcommands()
    for command in COMMANDS:
        action = next(a for a in parsers[command]._actions if a.dest == "preset")
        assert list(action.choices) == list(presets.PRESETS), command
    assert parsers["pipeline"].get_default("preset") == "classroom"
    for command in ("pretrain", "sft", "reward", "dpo", "rlhf"):
        assert parsers[command].get_default("preset") == presets.COMMAND_PRESET


def test_an_unknown_preset_is_one_sentence():
    with pytest.raises(Exception, match="unknown preset 'huge': choose one of tiny, quick"):
        presets.get("huge")


# ----- flags from fields -----------------------------------------------------------------

@pytest.mark.parametrize("kind", [TrainConfig, DPOConfig, RLHFConfig])
def test_every_number_a_user_chooses_has_a_rule_and_a_help_sentence(kind):
    for f in dataclasses.fields(kind):
        assert f.metadata.get("help"), f.name
        if type(f.default) in (int, float) or f.name == "target_kl":
            assert f.metadata.get("rule") is not None, f.name


@pytest.mark.parametrize("command", [c for c, kind in COMMANDS.items() if kind])
def test_every_field_with_a_rule_is_a_flag_of_its_command(command):
    parser = subcommands()[command]
    for f in dataclasses.fields(COMMANDS[command]):
        if f.metadata.get("rule") is not None:
            flag = "--" + f.name.replace("_", "-")
            action = parser._option_string_actions[flag]
            assert action.dest == f.name and action.type == f.metadata["rule"].parse, (command, flag)
            assert f.metadata["help"] in action.help


@pytest.mark.parametrize("command, flag, value, expected", [
    ("sft", "--lr", "-1", "must be a positive finite number"),
    ("reward", "--warmup-steps", "1.5", "must be an integer >= 0"),
    ("pretrain", "--beta2", "1", "must be a number in [0, 1)"),
    ("dpo", "--beta", "0", "must be a positive finite number"),
    ("rlhf", "--beta", "nan", "must be a finite number >= 0"),
    ("rlhf", "--beta1", "-0.5", "must be a number in [0, 1)"),
])
def test_a_bad_flag_value_is_one_line(command, flag, value, expected, capsys, tmp_path):
    required = {"pretrain": [], "sft": ["--init", "x"], "reward": ["--init", "x"], "dpo": ["--policy", "x"],
                "rlhf": ["--policy", "x", "--rm", "y"]}[command]
    assert cli.main([command, *required, "--out", str(tmp_path / "out"), flag, value]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and flag in err and expected in err, err
    assert not (tmp_path / "out").exists()


def test_the_kl_coefficient_is_beta(capsys, tmp_path):
    assert cli.main(["rlhf", "--policy", "x", "--rm", "y", "--out", str(tmp_path), "--kl-coef", "0.1"]) == 2
    assert "unrecognized arguments: --kl-coef" in capsys.readouterr().err
    assert "kl_coef" not in {f.name for f in dataclasses.fields(RLHFConfig)}


# ----- --beta and --preset reach the runs --------------------------------------------------

@pytest.fixture
def captured(monkeypatch):
    """The run object each command builds, instead of running it."""
    runs = []
    monkeypatch.setattr(rlhf_command.RLHFRun, "run", lambda self: runs.append(self) or {})
    monkeypatch.setattr(dpo_command.DPORun, "run", lambda self: runs.append(self) or {})
    return runs


def test_beta_reaches_rlhf(captured):
    assert cli.main(["rlhf", "--policy", "p", "--rm", "r", "--out", "o", "--beta", "0.03"]) == 0
    assert captured[-1].config.beta == 0.03 and captured[-1].config.algo == "rloo"
    assert cli.main(["rlhf", "--policy", "p", "--rm", "r", "--out", "o", "--preset", "classroom", "--algo", "grpo"]) == 0
    assert captured[-1].config == dataclasses.replace(presets.PRESETS["classroom"].grpo)  # β 0.04, exact reward
    assert cli.main(["rlhf", "--policy", "p", "--rm", "r", "--out", "o", "--preset", "classroom", "--algo", "ppo",
                     "--beta", "0.2", "--reward", "exact", "--beta1", "0.8"]) == 0
    config = captured[-1].config
    assert (config.algo, config.beta, config.reward, config.beta1, config.lr) == ("ppo", 0.2, "exact", 0.8, 1e-5)


def test_beta_reaches_dpo(captured):
    assert cli.main(["dpo", "--policy", "p", "--out", "o", "--beta", "0.25", "--max-steps", "150"]) == 0
    run = captured[-1]
    assert run.overrides == {"beta": 0.25, "max_steps": 150} and run.preset == presets.COMMAND_PRESET
    cfg, fitted = presets.phase_settings(run.preset, "dpo", run.overrides)
    assert cfg.beta == 0.25 and cfg == dataclasses.replace(presets.DPO, beta=0.25) and fitted == {}


def test_rlhf_uses_adamws_betas_from_its_settings():
    source = open(pipeline.RLHFRun.run.__code__.co_filename, encoding="utf-8").read()
    assert "0.99" not in source and "betas=(cfg.beta1, cfg.beta2)" in source


# ----- a short run says what it changed ----------------------------------------------------

def test_fit_schedule_returns_what_a_short_run_changed():
    cfg = TrainConfig(max_steps=40, warmup_steps=100, eval_interval=250, checkpoint_interval=500, log_interval=10)
    fitted, changes = fit_schedule(cfg, 2000, 0, None, {"max_steps": 40})
    assert (fitted.warmup_steps, fitted.eval_interval, fitted.checkpoint_interval, fitted.log_interval) == (4, 40, 40, 10)
    assert changes == {"warmup_steps": (100, 4), "eval_interval": (250, 40), "checkpoint_interval": (500, 40)}
    assert short_run_note(changes) == ("short run: warmup_steps 100 -> 4, eval_interval 250 -> 40, "
                                       "checkpoint_interval 500 -> 40 (set them to keep yours)")
    kept, changes = fit_schedule(cfg, 2000, 0, None, {"max_steps": 40, "eval_interval": 250, "warmup_steps": 100,
                                                      "checkpoint_interval": 500})
    assert kept == cfg and changes == {} and short_run_note(changes) is None
    assert fit_schedule(cfg, 40, 0, None, {}) == (cfg, {})  # not shorter than the preset's run


def test_a_short_pretraining_run_prints_one_line_naming_its_changes(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log. " * 80, encoding="utf-8")
    PretrainRun(out=str(tmp_path / "run"), preset="tiny", data=str(corpus), overrides={"max_steps": 10}).run()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("short run:")]
    assert lines == ["short run: warmup_steps 5 -> 1, eval_interval 20 -> 10, checkpoint_interval 20 -> 10 "
                     "(set them to keep yours)"]


# ----- the classroom preset, resolved as the pipeline runs it ------------------------------

CLASSROOM = {
    "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.0},
    "tokenizer": "bpe:1024", "eval_batches": 20, "ngram_orders": (2, 3, 4),
    "pretrain": dict(max_steps=2000, batch_size=8, grad_accum=1, lr=0.002, min_lr=0.0002, warmup_steps=100,
                     weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=400, log_interval=40,
                     checkpoint_interval=400, seed=1337),
    "sft": dict(max_steps=200, batch_size=16, grad_accum=1, lr=0.001, min_lr=0.0001, warmup_steps=10,
                weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=40, log_interval=4,
                checkpoint_interval=40, seed=1337),
    "sft_eval_prompts": 140,
    "rm": dict(max_steps=150, batch_size=16, grad_accum=1, lr=0.0005, min_lr=5e-05, warmup_steps=7,
               weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=30, log_interval=3,
               checkpoint_interval=30, seed=1337),
    "rm_on_policy": 1123,
    "rlhf": dict(algo="rloo", reward="rm", steps=40, batch_prompts=16, group_size=4, lr=3e-05, beta1=0.9,
                 beta2=0.99, beta=0.1, target_kl=None, kl_horizon=1000, temperature=1.0, max_new_tokens=60,
                 normalize_adv=False, ppo_epochs=4, ppo_minibatch=16, clip_eps=0.2, gamma=1.0, lam=0.95,
                 value_lr=0.0001, grad_clip=1.0, eval_interval=10, eval_prompts=48, checkpoint_interval=10,
                 seed=1337),
    "ppo": dict(algo="ppo", reward="rm", steps=40, batch_prompts=16, group_size=4, lr=1e-05, beta1=0.9,
                beta2=0.99, beta=0.1, target_kl=None, kl_horizon=1000, temperature=1.0, max_new_tokens=60,
                normalize_adv=False, ppo_epochs=2, ppo_minibatch=16, clip_eps=0.2, gamma=1.0, lam=0.95,
                value_lr=0.0001, grad_clip=1.0, eval_interval=10, eval_prompts=48, checkpoint_interval=10,
                seed=1337),
    "grpo": dict(algo="grpo", reward="exact", steps=40, batch_prompts=16, group_size=4, lr=3e-05, beta1=0.9,
                 beta2=0.99, beta=0.04, target_kl=None, kl_horizon=1000, temperature=1.0, max_new_tokens=60,
                 normalize_adv=False, ppo_epochs=1, ppo_minibatch=64, clip_eps=0.2, gamma=1.0, lam=0.95,
                 value_lr=0.0001, grad_clip=1.0, eval_interval=10, eval_prompts=48, checkpoint_interval=10,
                 seed=1337),
    "dpo": dict(max_steps=150, batch_size=16, grad_accum=1, lr=1e-05, min_lr=1e-05, warmup_steps=10,
                weight_decay=0.0, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=15, log_interval=5,
                checkpoint_interval=50, seed=1337, beta=0.1, max_new_tokens=60),
    "dpo_on_policy": 1123,
    "best-of-n": {"n": 4, "temperature": 0.5, "max_new_tokens": 60, "seed": 1337},
    "pipeline": {"eval_prompts": 140, "report_prompts": 8, "shares": (0.6, 0.1, 0.17, 0.13)},
}


def resolved_pipeline(name: str, seed: int, monkeypatch) -> dict:
    """What each of the pipeline's phases runs with: its runner is called, and the run object it
    builds is read instead of run (the supervised settings through the function the phases call)."""
    for run_class in ("PretrainRun", "SFTRun", "RewardRun", "DPORun", "RLHFRun", "BestOfNRun"):
        monkeypatch.setattr(getattr(pipeline, run_class), "run", lambda self: self)
    run, preset = pipeline.Pipeline(out="unused", preset=name, seed=seed), presets.get(name)
    phase = {phase: pipeline.RUNNERS[phase](run, preset, resolve_data(None), "heldout.jsonl", "out")
             for phase in ("pretrain", "sft", "rm", "rlhf", "ppo", "grpo", "dpo", "best-of-n")}

    def supervised(phase_name, key):
        r = phase[key]
        return dataclasses.asdict(presets.phase_settings(r.preset, phase_name, r.overrides)[0])

    pt, table = phase["pretrain"], presets.get(phase["pretrain"].preset)
    best = phase["best-of-n"]
    return {"model": {**table.model, **pt.model_overrides}, "tokenizer": pt.tokenizer or table.tokenizer,
            "eval_batches": table.eval_batches, "ngram_orders": table.ngram_orders,
            "pretrain": supervised("pretrain", "pretrain"), "sft": supervised("sft", "sft"),
            "sft_eval_prompts": phase["sft"].eval_prompts, "rm": supervised("rm", "rm"),
            "rm_on_policy": phase["rm"].on_policy_prompts,
            **{m: dataclasses.asdict(phase[m].config) for m in ("rlhf", "ppo", "grpo")},
            "dpo": supervised("dpo", "dpo"), "dpo_on_policy": phase["dpo"].on_policy_prompts,
            "best-of-n": {"n": best.n, "temperature": best.temperature, "max_new_tokens": best.max_new_tokens,
                          "seed": best.seed},
            "pipeline": {"eval_prompts": preset.eval_prompts, "report_prompts": preset.report_prompts,
                         "shares": preset.shares}}


def test_the_classroom_preset_resolves_to_the_settings_of_the_class_run(monkeypatch):
    resolved = resolved_pipeline("classroom", 1337, monkeypatch)
    for key, expected in CLASSROOM.items():
        assert resolved[key] == expected, key
    assert resolved.keys() == CLASSROOM.keys()
