"""`minillm pipeline`: the lecture's whole story in one command, ending in a report.

    minillm pipeline                                   # classroom preset into runs/pipeline
    minillm pipeline --preset quick --out runs/quick   # about a minute
    minillm pipeline --methods rlhf,ppo,dpo,best-of-n,grpo   # every phase-3 method, side by side
    minillm pipeline --data my_data/ --out runs/mine   # the layout of the shipped data/
Run it again with the same --out after an interruption: finished phases are skipped.
"""
from __future__ import annotations

import argparse

from minillm.io import checks
from minillm.app.commands.train_flags import number_flag
from minillm.data.folders import LAYOUT_HELP
from minillm.app.pipeline_phases import DEFAULT_METHODS, METHODS
from minillm.app.pipeline import Pipeline
from minillm.phases import presets


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="run every phase (tokens, pretraining, SFT, reward model, RLHF) and write a report",
        description="Run the phases in order, each from the previous phase's checkpoint (OUT/pretrain, "
                    "OUT/sft, OUT/rm, OUT/rlhf), then answer the same held-out prompts with the "
                    "pretrained, SFT and RLHF models and write OUT/report.html and OUT/report.md. "
                    "Interrupted, it resumes where it stopped when run again with the same --out. "
                    "Presets: " + "; ".join(presets.describe(n) for n in presets.PRESETS) + ".")
    p.add_argument("--preset", choices=list(presets.PRESETS), default=presets.PIPELINE_PRESET,
                   help=f"quick: about a minute; {presets.PIPELINE_PRESET} (default): a few minutes on a 2-core "
                        "CPU; full: about twenty minutes (measured times: docs/results.md); the pretraining "
                        "presets run the later phases with the standalone commands' settings")
    p.add_argument("--out", default="runs/pipeline", help="run directory (default: runs/pipeline)")
    number_flag(p, "--seed", checks.SEED, default=1337, help="seeds every phase (default 1337)")
    p.add_argument("--data", help=f"a data directory instead of the shipped data/: {LAYOUT_HELP}")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="phase 3's methods, comma-separated, each from the same SFT model: "
                        f"{', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)}, which keeps the classroom "
                        "preset within its budget); a rerun with more methods reuses the finished phases")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the minillm run already in --out (files minillm did not write are never deleted)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    paths = Pipeline(out=args.out, preset=args.preset, seed=args.seed, data=args.data, methods=methods,
                     overwrite=args.overwrite, quiet=args.quiet).run()
    print(paths["html"])
    return 0
