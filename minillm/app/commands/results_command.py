"""`minillm results`: docs/results.md from pipeline runs' saved summaries, byte for byte.

    minillm results runs/pipeline runs/full --out docs/results.md
    minillm results runs/pipeline --section runs/study --out docs/results.md   # a study's section after the runs
Each run's phase table, key figures and phase-3 comparison, with the command, preset, seed,
machine and date the run recorded; each --section DIR's results_section.md verbatim, its PNGs
copied beside the page.
"""
from __future__ import annotations

import argparse

from minillm.app.results import SECTION_FILE, write_results


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "results", help="write docs/results.md from pipeline runs (and study sections)",
        description="Render each run's phases, key figures and phase-3 comparison from its saved DONE "
                    "markers, with the command, preset, seed, machine and date it recorded. The same "
                    "runs and sections always give the same bytes.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="pipeline run directories (minillm pipeline --out)")
    p.add_argument("--section", action="append", default=[], metavar="DIR",
                   help=f"a study directory holding {SECTION_FILE} and its PNG figures; repeatable")
    p.add_argument("--out", default="docs/results.md", help="the page to write (default: docs/results.md)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = write_results(args.runs, args.out, args.section)
    print(f"wrote {path}")
    return 0
