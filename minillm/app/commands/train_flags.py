"""The flags the training commands share, made from the fields of each phase's settings dataclass.

`add_preset_flag` adds --preset (the names of phases/presets.py's one table). `add_setting_flags`
walks a settings dataclass (TrainConfig, DPOConfig, RLHFConfig) and adds one flag per field
declared with a rule: `max_steps` becomes --max-steps, parsed (and range-checked) by the
field's rule, with the field's help sentence and its value in the command's default preset;
a flag left out keeps the preset's value. `setting_overrides` gives back the fields the user
set. --resume, --overwrite and --quiet belong to every training command. `number_flag` adds
any other numeric flag with its rule, so a zero, negative or non-finite value is refused
before any work, in one line.
"""
from __future__ import annotations

import argparse

from minillm.io import checks
from minillm.phases import presets


def number_flag(parser: argparse.ArgumentParser, flag: str, rule: checks.Rule, **kwargs) -> None:
    """Add a numeric flag parsed (and range-checked) by `rule`; the help names the range."""
    help_text = kwargs.pop("help", None)
    expected = f"({rule.expected})"
    parser.add_argument(flag, type=rule.parse, help=f"{help_text} {expected}" if help_text else expected, **kwargs)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--resume, --overwrite and --quiet: every training command has them."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out (with the settings it was started with)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the minillm run already in --out (files minillm did not write are never deleted)")
    parser.add_argument("--quiet", action="store_true")


def add_preset_flag(parser: argparse.ArgumentParser, default: str = presets.COMMAND_PRESET) -> None:
    """--preset: a name of the one table of presets (phases/presets.py), each described in --help."""
    parser.add_argument("--preset", choices=list(presets.PRESETS), default=default,
                        help=f"the settings to start from (default {default}): "
                             + "; ".join(presets.describe(name) for name in presets.PRESETS))


def add_setting_flags(parser: argparse.ArgumentParser, settings_class, defaults) -> None:
    """One --field-name flag per ruled field of `settings_class`, parsed by the field's rule;
    `defaults` (the default preset's settings) gives the value shown in the help."""
    for f in checks.ruled_fields(settings_class):
        number_flag(parser, "--" + f.name.replace("_", "-"), f.metadata["rule"], dest=f.name, default=None,
                    help=f"{f.metadata['help']}; the preset's by default ({presets.COMMAND_PRESET}: "
                         f"{getattr(defaults, f.name)})")


def add_training_flags(parser: argparse.ArgumentParser, settings_class, defaults) -> None:
    """What every training command takes: --resume, --overwrite, --quiet, --preset, and one flag per
    ruled field of its settings dataclass (`add_setting_flags`)."""
    add_run_flags(parser)
    add_preset_flag(parser)
    add_setting_flags(parser, settings_class, defaults)


def setting_overrides(args: argparse.Namespace, settings_class) -> dict:
    """{field: value} of the flags of `settings_class` the user gave."""
    return {f.name: getattr(args, f.name) for f in checks.ruled_fields(settings_class) if getattr(args, f.name) is not None}
