"""Every preset in one table, and the settings dataclass of every phase.

A preset names a whole run: the model's shape, the tokenizer, and the settings each phase
runs with (pretraining, SFT, the reward model, then phase 3's methods), plus the pipeline's
own knobs. `minillm pretrain`, `sft`, `reward`, `rlhf`, `dpo` and `pipeline` all read `PRESETS`
(--preset), and each numeric field of a settings dataclass declared with a rule is a flag of
its command (--max-steps, --lr, --beta, ...; app/commands/train_flags.py makes them).

    TrainConfig (phases/trainer.py)   pretraining, SFT, the reward model
    DPOConfig                         DPO: a supervised run plus β of the implicit reward
    RLHFConfig                        the RLHF loop: rlhf (RLOO), ppo, grpo

The pretraining presets (tiny, shakespeare-char, small-bpe) run the later phases with the
standalone commands' settings (SFT, REWARD, DPO, RLHF below); the pipeline presets (quick,
classroom, full) size every phase for one run of the whole story.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from minillm.errors import UserError
from minillm.io import checks
from minillm.io.checks import setting
from minillm.phases.trainer import TrainConfig, fit_schedule


@dataclass
class DPOConfig(TrainConfig):
    """DPO's settings: a supervised run on the shared Trainer, and the β of the implicit reward."""

    beta: float = setting(0.1, "β of the implicit reward β·log π(y|x)/π_ref(y|x)", checks.POSITIVE)
    max_new_tokens: int = setting(60, "longest sampled answer in the report", checks.POSITIVE_INT)


@dataclass
class RLHFConfig:
    """The RLHF loop's settings (every algorithm of phases/rl/rlhf.py); numeric fields are flags of `minillm rlhf`."""

    algo: str = setting("rloo", "reinforce | rloo | ppo | ppo-seq | grpo")
    reward: str = setting("rm", "rm: the reward model (or --rm gold); exact: 1 if the answer is right")
    steps: int = setting(40, "rollout-then-update iterations", checks.POSITIVE_INT)
    batch_prompts: int = setting(16, "B prompts per step", checks.POSITIVE_INT)
    group_size: int = setting(4, "G sampled responses per prompt", checks.POSITIVE_INT)
    # Small: the policy-gradient estimate is noisy, and Adam turns noise into steps of about lr per weight
    lr: float = setting(3e-5, "AdamW learning rate, constant (RL steps are few)", checks.POSITIVE)
    beta1: float = setting(0.9, "AdamW's β1 (policy and value model)", checks.BETA)
    beta2: float = setting(0.99, "AdamW's β2 (policy and value model)", checks.BETA)
    beta: float = setting(0.1, "β of the KL penalty (the start value with --target-kl); 0 switches it off",
                          checks.NONNEGATIVE)
    target_kl: float | None = setting(None, "adapt β toward this mean KL per response, in nats (default: β fixed)",
                                      checks.POSITIVE)
    kl_horizon: int = setting(1000, "horizon of the adaptive β controller, in responses", checks.POSITIVE_INT)
    temperature: float = setting(1.0, "sampling temperature τ; the policy is softmax(z/τ)", checks.POSITIVE)
    max_new_tokens: int = setting(40, "longest response", checks.POSITIVE_INT)
    normalize_adv: bool = setting(False, "divide advantages by their std")
    ppo_epochs: int = setting(4, "PPO and GRPO: passes over one batch of rollouts", checks.POSITIVE_INT)
    ppo_minibatch: int = setting(16, "PPO and GRPO: responses per gradient step", checks.POSITIVE_INT)
    clip_eps: float = setting(0.2, "PPO and GRPO: ε of clip(ρ, 1−ε, 1+ε); PPO's value clip too", checks.POSITIVE)
    gamma: float = setting(1.0, "PPO: GAE's discount γ (1: the reward at the end counts fully)", checks.UNIT)
    lam: float = setting(0.95, "PPO: GAE's λ", checks.UNIT)
    value_lr: float = setting(1e-4, "PPO: the value model's learning rate", checks.POSITIVE)
    grad_clip: float = setting(1.0, "max global gradient norm (0 disables)", checks.NONNEGATIVE)
    eval_interval: int = setting(10, "greedy held-out answers every this many steps", checks.POSITIVE_INT)
    eval_prompts: int = setting(48, "held-out prompts the periodic evaluation answers", checks.POSITIVE_INT)
    checkpoint_interval: int = setting(20, "save every this many steps", checks.POSITIVE_INT)
    seed: int = setting(1337, "seeds prompts, samples, minibatches", checks.SEED)


RLHF_RULES = checks.rules_of(RLHFConfig)


# ----- the standalone commands' settings of the later phases ------------------------------
# Tuned on the shipped tiny world from a `shakespeare-char` pretrain.
SFT = TrainConfig(max_steps=300, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=20, weight_decay=0.0,
                  eval_interval=50, log_interval=10, checkpoint_interval=100)
# About 2 epochs of the pairs that fit a block of 64.
REWARD = TrainConfig(max_steps=250, batch_size=16, lr=5e-4, min_lr=5e-5, warmup_steps=20, weight_decay=0.0,
                     eval_interval=50, log_interval=10, checkpoint_interval=50)
# A small constant-ish learning rate, like RL's, over few steps.
DPO = DPOConfig(max_steps=150, batch_size=16, lr=1e-5, min_lr=1e-5, warmup_steps=10, weight_decay=0.0,
                eval_interval=15, log_interval=5, checkpoint_interval=50)
RLHF = RLHFConfig()


def run_of(base: TrainConfig, steps: int, batch: int, **more) -> TrainConfig:
    """`base` sized for a run of `steps` steps: warmup a twentieth of it, an evaluation and a
    checkpoint every fifth, a log line every fiftieth.

    Example: run_of(SFT, 200, 16) -> max_steps 200, batch 16, warmup 10, eval and checkpoint every 40, log every 4.
    """
    every = max(1, steps // 5)
    return replace(base, max_steps=steps, batch_size=batch, warmup_steps=max(1, steps // 20), eval_interval=every,
                   checkpoint_interval=every, log_interval=max(1, steps // 50), **more)


@dataclass(frozen=True)
class Preset:
    """One whole run: the model, the tokenizer and every phase's settings."""

    model: dict                     # GPTConfig fields except vocab_size (set by the tokenizer)
    pretrain: TrainConfig
    tokenizer: str = "char"         # char | word[:MAX_VOCAB] | bpe[:VOCAB]
    eval_batches: int = 20          # pretraining: validation batches per evaluation
    ngram_orders: tuple = (2, 3, 4)  # pretraining: the baseline is the best of these n-gram models
    sft: TrainConfig = field(default_factory=lambda: SFT)
    rm: TrainConfig = field(default_factory=lambda: REWARD)
    dpo: DPOConfig = field(default_factory=lambda: DPO)
    rlhf: RLHFConfig = field(default_factory=lambda: RLHF)  # the rlhf method (`minillm rlhf`'s other algorithms too)
    ppo: RLHFConfig = field(default_factory=lambda: replace(RLHF, algo="ppo"))
    grpo: RLHFConfig = field(default_factory=lambda: replace(RLHF, algo="grpo"))
    # the pipeline's own knobs
    eval_prompts: int = 48          # held-out prompts each phase evaluates (SFT, RM agreement, RLHF)
    report_prompts: int = 8         # prompts in the report's side-by-side table
    shares: tuple = (0.4, 0.2, 0.2, 0.2)  # rough share of the run's time per phase, for the ETA
    rm_on_policy: int = 0           # training prompts whose 2 sampled SFT answers gold labels (RM and DPO)
    best_of_n: int = 4              # n of --methods best-of-n
    best_of_n_temperature: float = 1.0  # τ its n samples are drawn at (docs/decisions.md: why)

    def rl(self, algo: str | None = None) -> RLHFConfig:
        """The settings of an RLHF-loop algorithm: the preset's ppo or grpo settings for those,
        its rlhf settings (with `algo`) for the others."""
        if algo in ("ppo", "grpo"):
            return getattr(self, algo)
        return self.rlhf if algo is None else replace(self.rlhf, algo=algo)


def phase3_of(steps: int, every: int) -> dict:
    """The rlhf, ppo and grpo settings of a pipeline preset run for `steps`, evaluated and saved
    `every` steps: the lecture's RLOO, PPO with its value model, GRPO on the exact reward."""
    run = dict(steps=steps, batch_prompts=16, group_size=4, max_new_tokens=60, eval_interval=every, eval_prompts=48,
               checkpoint_interval=every)
    return {"rlhf": RLHFConfig(lr=3e-5, beta=0.1, **run),
            "ppo": RLHFConfig(algo="ppo", lr=1e-5, beta=0.1, ppo_epochs=2, ppo_minibatch=16, value_lr=1e-4, **run),
            "grpo": RLHFConfig(algo="grpo", reward="exact", lr=3e-5, beta=0.04, ppo_epochs=1, ppo_minibatch=64, **run)}


# Times and results of the pipeline presets: docs/results.md (`minillm results`; measured, they change with the code).
PRESETS = {
    # seconds: for tests, notebooks and trying the command
    "tiny": Preset(
        model=dict(n_layer=2, n_head=2, n_embd=32, block_size=32),
        pretrain=TrainConfig(max_steps=40, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_interval=20,
                             log_interval=5, checkpoint_interval=20),
        eval_batches=4, ngram_orders=(2, 3)),
    # the whole pipeline in about a minute, for tests and notebooks; the model is too small to answer well
    "quick": Preset(
        model=dict(n_layer=2, n_head=2, n_embd=48, block_size=96, dropout=0.0), tokenizer="char",
        pretrain=run_of(TrainConfig(), 200, 8, lr=3e-3, min_lr=3e-4), eval_batches=4, ngram_orders=(2, 3),
        sft=run_of(SFT, 60, 16), rm=run_of(REWARD, 30, 16),
        rlhf=RLHFConfig(steps=6, batch_prompts=4, group_size=2, max_new_tokens=32, eval_interval=3, eval_prompts=8,
                        checkpoint_interval=3),
        ppo=RLHFConfig(algo="ppo", steps=6, batch_prompts=4, group_size=2, max_new_tokens=32, eval_interval=3,
                       eval_prompts=8, checkpoint_interval=3, ppo_epochs=2, ppo_minibatch=4),
        grpo=RLHFConfig(algo="grpo", reward="exact", steps=6, batch_prompts=4, group_size=2, max_new_tokens=32,
                        eval_interval=3, eval_prompts=8, checkpoint_interval=3, ppo_epochs=1),
        dpo=replace(DPO, max_steps=6, batch_size=8, warmup_steps=1, eval_interval=3, checkpoint_interval=3,
                    max_new_tokens=32),
        eval_prompts=12, report_prompts=6, shares=(0.35, 0.25, 0.2, 0.2)),
    # the lecture demo, a few minutes on a 2-core laptop. Byte-level BPE, not characters: a word of
    # the tiny world is one token, so the same compute reads more text and the model learns the
    # world's facts (docs/decisions.md)
    "classroom": Preset(
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0), tokenizer="bpe:1024",
        pretrain=run_of(TrainConfig(), 2000, 8, lr=2e-3, min_lr=2e-4),
        sft=run_of(SFT, 200, 16), rm=run_of(REWARD, 150, 16),
        **phase3_of(steps=40, every=10),
        dpo=replace(DPO, max_steps=150, batch_size=16, lr=1e-5, beta=0.1),
        eval_prompts=140, shares=(0.6, 0.1, 0.17, 0.13), rm_on_policy=1123, best_of_n_temperature=0.5),
    # the best this project does on a laptop CPU in one sitting
    "full": Preset(
        model=dict(n_layer=6, n_head=6, n_embd=192, block_size=128, dropout=0.0), tokenizer="bpe:1024",
        pretrain=run_of(TrainConfig(), 5000, 8, lr=1.5e-3, min_lr=1.5e-4),
        sft=run_of(SFT, 300, 16), rm=run_of(REWARD, 250, 16),
        **phase3_of(steps=60, every=20),
        dpo=replace(DPO, max_steps=200, batch_size=16, lr=1e-5, beta=0.1),
        eval_prompts=140, report_prompts=10, shares=(0.75, 0.05, 0.1, 0.1), rm_on_policy=1123,
        best_of_n_temperature=0.5),
    # the scale a CPU user starts with (nanoGPT's "baby" Shakespeare config, no dropout)
    "shakespeare-char": Preset(
        model=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
        pretrain=TrainConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                             eval_interval=250, checkpoint_interval=500)),
    # a larger subword model
    "small-bpe": Preset(
        model=dict(n_layer=4, n_head=4, n_embd=256, block_size=128, dropout=0.0), tokenizer="bpe:512",
        pretrain=TrainConfig(max_steps=3000, batch_size=16, lr=6e-4, min_lr=6e-5, warmup_steps=200,
                             eval_interval=250, checkpoint_interval=500),
        ngram_orders=(2, 3)),
}

# The preset of each command run without --preset: the training commands start from a
# `shakespeare-char` pretrain, the pipeline runs the lecture's classroom demo.
COMMAND_PRESET = "shakespeare-char"
PIPELINE_PRESET = "classroom"


def get(name: str) -> Preset:
    """The preset called `name`, or a UserError naming the choices."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def describe(name: str) -> str:
    """One line about a preset, for --help.

    Example: "tiny: 2 layers, 32 channels, block 32, char; 40 pretraining, 300 SFT, 250 reward-model, 40 RLHF steps".
    """
    p = PRESETS[name]
    return (f"{name}: {p.model['n_layer']} layers, {p.model['n_embd']} channels, block {p.model['block_size']}, "
            f"{p.tokenizer}; {p.pretrain.max_steps} pretraining, {p.sft.max_steps} SFT, {p.rm.max_steps} "
            f"reward-model, {p.rlhf.steps} RLHF steps")


def phase_settings(name: str, phase: str, overrides: dict, examples: int = 0,
                   epochs: float | None = None) -> tuple[TrainConfig, dict]:
    """The settings a supervised phase (pretrain, sft, rm, dpo) of preset `name` runs with: the
    preset's, the user's `overrides` over them, and a run shorter than the preset's fitted
    (`fit_schedule`); with what the short run changed, for `short_run_note`."""
    preset = getattr(get(name), phase)
    return fit_schedule(replace(preset, **overrides), preset.max_steps, examples, epochs, overrides)
