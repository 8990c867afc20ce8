"""What is in a data file: its kind, record count, token count and length percentiles.

Before training any phase of Lecture 5 it pays to look at the data: how many records, how
long they are in characters and in tokens (which sets block_size and the cost of a step),
and whether anything odd is inside (empty responses, HH pairs that part before their last
turn). `minillm data stats PATH` prints this report. Left out: duplicate detection, language
identification, and any per-topic breakdown.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minillm.data.readers import (DOC_SEPARATOR, Records, detect_kind, read_demonstrations,
                                  read_preferences, read_prompts, read_text)

FIELDS = {"text": ("document",), "demonstrations": ("prompt", "response"),
          "preferences": ("prompt", "chosen", "rejected"), "prompts": ("prompt",)}
READERS = {"demonstrations": read_demonstrations, "preferences": read_preferences,
           "prompts": read_prompts}
HH_EARLY = "hh (differs before last turn)"


def percentiles(values: list[int]) -> dict[str, int]:
    """p50 / p90 / p99 / max of a list of lengths (nearest-rank, so each is a real length).

    Example: percentiles([1, 2, 3, 4]) -> {"p50": 2, "p90": 4, "p99": 4, "max": 4}
    """
    if not values:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    ordered = np.sort(np.asarray(values))
    ranks = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
    out = {k: int(ordered[max(0, int(np.ceil(q * len(ordered))) - 1)]) for k, q in ranks.items()}
    out["max"] = int(ordered[-1])
    return out


def load_records(path: str | Path, kind: str, skip_bad: bool = False) -> Records:
    """The records of a file of a known kind; a text file gives one record per document."""
    if kind == "text":
        docs = [d for d in read_text(path).split(DOC_SEPARATOR.strip("\n")) if d.strip()]
        return Records({"document": d.strip("\n")} for d in docs)
    return READERS[kind](path, skip_bad=skip_bad)


def make_tokenizer(spec: str | None, records: Records, fields: tuple[str, ...]):
    """None, a char tokenizer trained on the records themselves ('char'), or a saved one."""
    if spec is None:
        return None
    from minillm import tokenizers  # imported late: stats without tokens need no tokenizer
    if spec == "char":
        return tokenizers.CharTokenizer.train([r[f] for r in records for f in fields])
    return tokenizers.load(spec)


def file_stats(path: str | Path, tokenizer: str | None = None, skip_bad: bool = False) -> dict:
    """Everything `data stats` prints, as a dict.

    Args:
        path: a .txt file, a folder of .txt files, or a .jsonl file of any supported layout.
        tokenizer: None (characters only), "char", or the path of a saved tokenizer.
        skip_bad: skip bad records and count them instead of stopping at the first.
    """
    kind = detect_kind(path)
    fields = FIELDS[kind]
    records = load_records(path, kind, skip_bad)
    tok = make_tokenizer(tokenizer, records, fields)
    stats = {"path": str(path), "kind": kind, "records": len(records),
             "layouts": dict(records.layouts), "skipped": list(records.skipped), "fields": {}}
    for field in fields:
        texts = [r[field] for r in records]
        entry = {"chars": percentiles([len(t) for t in texts]), "total_chars": sum(map(len, texts))}
        if tok is not None:
            counts = [len(tok.encode(t)) for t in texts]
            entry.update(tokens=percentiles(counts), total_tokens=sum(counts))
        stats["fields"][field] = entry
    stats.update(_oddities(kind, records))
    return stats


def _oddities(kind: str, records: Records) -> dict[str, int]:
    """Counts worth a second look: empty responses, HH pairs that part before the last turn."""
    if kind == "preferences":
        return {"empty_chosen": sum(r["chosen"] == "" for r in records),
                "empty_rejected": sum(r["rejected"] == "" for r in records),
                "hh_differ_before_last_turn": records.layouts.get(HH_EARLY, 0)}
    if kind == "demonstrations":
        # An empty demonstration response is an error; with --skip-bad it shows up here.
        return {"empty_responses_skipped": sum("empty response" in s for s in records.skipped)}
    return {}


def format_stats(stats: dict) -> str:
    """The stats dict as the short table `minillm data stats` prints."""
    layouts = ", ".join(f"{k} {v:,}" for k, v in stats["layouts"].items())
    lines = [f"{stats['path']}: {stats['kind']}, {stats['records']:,} records"
             + (f" ({layouts})" if layouts else "")]
    lines.append(f"skipped bad records: {len(stats['skipped']):,}")
    lines += [f"  {message}" for message in stats["skipped"][:10]]
    for key in ("empty_chosen", "empty_rejected", "empty_responses_skipped",
                "hh_differ_before_last_turn"):
        if key in stats:
            lines.append(f"{key.replace('_', ' ')}: {stats[key]:,}")
    has_tokens = any("tokens" in f for f in stats["fields"].values())
    header = f"{'field':<10} {'total chars':>12} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8}"
    if has_tokens:
        header += f" | {'total tokens':>12} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8}"
    lines.append(header)
    for name, f in stats["fields"].items():
        row = f"{name:<10} {f['total_chars']:>12,} " + " ".join(f"{v:>7,}" for v in f["chars"].values())
        if has_tokens:
            row += f" | {f['total_tokens']:>12,} " + " ".join(f"{v:>7,}" for v in f["tokens"].values())
        lines.append(row)
    return "\n".join(lines)
