"""Writing the pipeline's report: report.md and report.html from what `report.collect` gathered.

report.html embeds its plots as base64 PNG, so it opens in any browser, offline, with no
server; report.md is its plain twin. Split from `app/report.py`, which answers the prompts and
gathers each phase's figures: one module collects, this one renders and writes.
"""
from __future__ import annotations

import base64
import html
import json
import os
import time

from minillm.app import health, labeling
from minillm.app.pipeline_phases import DEFAULT_METHODS, TITLES, PhaseSize
from minillm.app.report import (
    COMPARISON_COLUMNS,
    COMPARISON_NOTE,
    NOT_FINISHED,
    PLOTS,
    SIZE_NOTE,
    collect,
    comparison_rows,
)
from minillm.io.safe_files import write_text_atomic


CONVERSATION_NOTE = ("Each model hears the same user turns, greedy; its context holds its own earlier replies. The "
                     "later questions refer back (\"she\", \"that town\", \"it\"), so only a model that reads the "
                     "conversation can answer them. The pretrained model reads the raw text, one line per turn.")


def _conversation_rows(data: dict) -> list[list[str]]:
    """[user turn, each model's reply] per turn ("—" for a model whose phase has not finished)."""
    talk = data["conversation"]
    return [[user] + [(talk["replies"][m][i] or "(empty)") if m in talk["replies"] else "—" for m in data["models"]]
            for i, user in enumerate(talk["user"])]


# ----- writing ---------------------------------------------------------------------------

def _size_cells(size: PhaseSize) -> list[str]:
    """Parameters and tokens with thousands separators; FLOPs in powers of ten."""
    return [f"{size.parameters:,}", f"{size.tokens:,}", f"{size.flops:.3g}"]


def _cell(answer: dict | None) -> tuple[str, str]:
    """(answer text, 'RM +0.12 · gold -0.50') of one table cell."""
    if answer is None:
        return "—", "not available"
    rm = "n/a" if answer["rm"] is None else f"{answer['rm']:+.2f}"
    return answer["text"] or "(empty)", f"RM {rm} · gold {answer['gold']:+.2f}"


def render_md(data: dict, settings: dict) -> str:
    md = ["# minillm pipeline report", "", _settings_line(settings), "", "| phase | parameters | tokens | "
          "training FLOPs | time |", "| --- | ---: | ---: | ---: | ---: |"]
    for p in data["phases"]:
        d = data["phases"][p]
        md.append(f"| {TITLES[p]} | " + (" | ".join(_size_cells(d.size))
                                       + f" | {d.seconds:.0f} s |" if d else "not finished | | | |"))
    md += ["", SIZE_NOTE]
    rows = comparison_rows(data["phases"])
    if rows:
        md += ["", "## Phase 3 side by side", "", "| " + " | ".join(COMPARISON_COLUMNS) + " |",
               "| --- |" + " ---: |" * (len(COMPARISON_COLUMNS) - 1)] + ["| " + " | ".join(r) + " |" for r in rows]
        md += ["", COMPARISON_NOTE]
    if data["tokens"]:
        t = data["tokens"]
        md += ["", f"Tokenizer: a {t['kind']} with {t['vocab_size']} tokens; {t['prompt']!r} → "
               + " ".join(f"`{x}`" for x in t["pieces"])]
    for p in data["phases"]:
        d = data["phases"][p]
        md += ["", f"## {TITLES[p]}", ""]
        if d is None:
            md.append(NOT_FINISHED)
            continue
        md += ["| figure | value |", "| --- | --- |"] + [
            f"| {k} | {v} |" for k, v in health.checked_figures(p, d.summary, os.path.join(settings["out"], p))]
        md += [""] + [f"![{p} {name}]({p}/{name})" for name in PLOTS[p] if os.path.exists(os.path.join(settings["out"], p, name))]
    md += [""] + labeling.flaw_chain(settings["out"], settings.get("data"))  # only for a flawed data folder
    md += ["## Health notes", "", health.HEALTH_NOTE, ""]
    md += [f"- {n}" for n in health.all_notes(p for p, d in data["phases"].items() if d)]
    md += ["", "## The same held-out prompts after each phase (greedy)", "",
           "| prompt | " + " | ".join(data["models"]) + " |", "| --- |" + " --- |" * len(data["models"])]
    for row in data["answers"]:
        cells = [_cell(row["answers"].get(m)) for m in data["models"]]
        md.append(f"| {row['prompt']} | " + " | ".join(f"{t.replace('|', '/')} ({s})" for t, s in cells) + " |")
    if data.get("conversation"):
        md += ["", "## A multi-turn conversation (held out, greedy)", "", CONVERSATION_NOTE, "",
               "| user | " + " | ".join(data["models"]) + " |", "| --- |" + " --- |" * len(data["models"])]
        md += ["| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |" for row in _conversation_rows(data)]
    return "\n".join(md) + "\n"


def _settings_line(settings: dict) -> str:
    return (f"Preset `{settings['preset']}`, seed {settings['seed']}, data {settings['data']}; written "
            f"{time.strftime('%Y-%m-%d %H:%M')}. RM: the reward model's score r_θ(x, y); gold: the simulated "
            "labeler's score from -1 (garbage) to 1 (correct, direct, polite).")


def _img(path: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{html.escape(os.path.basename(path))}" src="data:image/png;base64,{data}">'


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
         "vertical-align:top;text-align:left}th{background:#eee}img{max-width:100%;margin:4px}"
         ".s{color:#666;font-size:85%;white-space:nowrap}.na{color:#a00}.note{color:#555;font-size:90%}code{background:#f4f4f4}")


def render_html(data: dict, settings: dict) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>minillm pipeline report</title>"
             f"<style>{STYLE}</style></head><body><h1>minillm pipeline report</h1><p>{e(_settings_line(settings))}</p>",
             "<table><tr><th>phase</th><th>parameters</th><th>tokens</th><th>training FLOPs</th><th>time</th></tr>"]
    for p in data["phases"]:
        d = data["phases"][p]
        cells = (_size_cells(d.size) + [f"{d.seconds:.0f} s"]
                 if d else ["not finished", "", "", ""])
        parts.append(f"<tr><td>{e(TITLES[p])}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append(f"</table><p class='note'>{e(SIZE_NOTE)}</p>")
    rows = comparison_rows(data["phases"])
    if rows:
        parts.append("<h2 id='comparison'>Phase 3 side by side</h2><table><tr>"
                     + "".join(f"<th>{e(c)}</th>" for c in COMPARISON_COLUMNS) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                     + f"</table><p class='note'>{e(COMPARISON_NOTE)}</p>")
    if data["tokens"]:
        t = data["tokens"]
        parts.append(f"<p>Tokenizer: a {e(t['kind'])} with {t['vocab_size']} tokens; {e(repr(t['prompt']))} → "
                     + " ".join(f"<code>{e(x)}</code>" for x in t["pieces"]) + "</p>")
    for p in data["phases"]:
        d = data["phases"][p]
        parts.append(f"<h2 id='{p}'>{e(TITLES[p])}</h2>")
        if d is None:
            parts.append(f"<p class='na'>{e(NOT_FINISHED)}</p>")
            continue
        rows = health.checked_figures(p, d.summary, os.path.join(settings["out"], p))
        parts.append("<table>" + "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
                     + "</table>")
        parts += [_img(path) for name in PLOTS[p] if os.path.exists(path := os.path.join(settings["out"], p, name))]
    parts += [f"<p>{e(line.lstrip('#0123456789. '))}</p>" for line in labeling.flaw_chain(settings["out"], settings.get("data"))
              if line]
    parts.append(f"<h2 id='health'>Health notes</h2><p class='note'>{e(health.HEALTH_NOTE)}</p><ul>" + "".join(
        f"<li>{e(n)}</li>" for n in health.all_notes(p for p, d in data["phases"].items() if d)) + "</ul>")
    parts.append("<h2 id='answers'>The same held-out prompts after each phase (greedy)</h2><table><tr><th>prompt</th>"
                 + "".join(f"<th>{e(m)}</th>" for m in data["models"]) + "</tr>")
    for row in data["answers"]:
        cells = [_cell(row["answers"].get(m)) for m in data["models"]]
        parts.append(f"<tr><td>{e(row['prompt'])}</td>" + "".join(
            f"<td>{e(t)}<br><span class='s'>{e(s)}</span></td>" for t, s in cells) + "</tr>")
    parts.append("</table>")
    if data.get("conversation"):
        parts.append(f"<h2 id='conversation'>A multi-turn conversation (held out, greedy)</h2><p class='note'>"
                     f"{e(CONVERSATION_NOTE)}</p><table><tr><th>user</th>"
                     + "".join(f"<th>{e(m)}</th>" for m in data["models"]) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in _conversation_rows(data)]
        parts.append("</table>")
    return "\n".join(parts + ["</body></html>\n"])


def write_report(out: str, prompts: list[str], settings: dict, conversation: list[str] | None = None) -> dict:
    """Answer `prompts` (and the user turns of `conversation`, one after another) with every
    finished phase's model; write report.md, report.html, answers.json.

    Returns:
        {"html": path, "md": path, "answers": path}.
    """
    settings = {**settings, "out": out}
    data = collect(out, prompts, conversation, settings.get("methods", DEFAULT_METHODS))
    paths = {"html": os.path.join(out, "report.html"), "md": os.path.join(out, "report.md"),
             "answers": os.path.join(out, "answers.json")}
    texts = {"html": render_html(data, settings), "md": render_md(data, settings),
             "answers": json.dumps(data["answers"], indent=2)}
    for key, path in paths.items():
        write_text_atomic(path, texts[key])
    return paths
