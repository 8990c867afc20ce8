"""A class labels preference pairs: the human feedback of Lecture 5, phase 3, for real.

`minillm label` shows a rater two answers of a policy to one training prompt, side by side, and
asks which is better (A, B, a tie, skip, or quit). Each judgement is appended at once to a label
file as one record in the shipped preference layout ({"prompt", "chosen", "rejected"}) plus what
the analysis needs: the rater, the prompt's id, the label (A, B or tie), whether every rater sees
this pair, both answers' gold scores (kept for measuring, never shown while labelling) and the
policies the answers came from. A tie keeps both answers as "answer_a"/"answer_b", without
chosen/rejected, so no tool reads it as a preference.

Which pairs a rater sees is decided by the seed, not by chance at the keyboard:
- shared pairs: the first round(n · shared_fraction) prompts of one seeded shuffle of the training
  prompts, the same for every rater, shown first; the agreement between raters is measured there;
- the rater's own pairs: further prompts from a shuffle seeded by the seed and the rater's name.
The two answers to prompt i are sampled (temperature 1) with a seed made from the seed and i, and
shown in an order drawn the same way, so every rater sees the same pair the same way round.
A session stops after n labels (A, B or tie; earlier sessions count), on quit, at the end of the
input, or on Ctrl-C; a rerun resumes after the prompts this rater already labelled.
Left out: showing a rater the others' labels, adjudicating disagreements, more than two answers.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import textwrap
from dataclasses import dataclass, field

from minillm.data.folders import shipped
from minillm.data.gold import gold_score
from minillm.data.readers import read_prompts
from minillm.errors import UserError
from minillm.io import checkpoint
from minillm.phases.common import sample_responses
from minillm.phases.summaries import RewardSummary
from minillm.tokenizers import chat_template as chat

KEYS = {"a": "A", "b": "B", "t": "tie", "tie": "tie", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}
KEY_HELP = "a (A is better), b (B is better), t (tie), s (skip), q (quit)"
RESAMPLE_TRIES = 5  # draws of a pair before a prompt whose two answers keep coming out equal is passed over


@dataclass
class Pair:
    """Two answers to one training prompt, in the order shown (a first)."""

    prompt_id: int
    prompt: str
    a: str
    b: str
    shared: bool
    source_a: str = "policy"        # which model wrote each answer: "policy" or "against"
    source_b: str = "policy"


def check_key(line: str) -> str:
    """A typed line as one of A, B, tie, skip, quit; anything else is a UserError naming the keys."""
    key = line.strip().lower()
    if key not in KEYS:
        raise UserError(f"unknown key {line.strip()!r}: type {KEY_HELP}")
    return KEYS[key]


def check_rater(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 40 or not name.isprintable():
        raise UserError(f"--rater {name!r}: give a name of 1 to 40 printable characters")
    return name


@dataclass
class LabelSession:
    """One rater's labelling of pairs sampled from `policy` (and `against`), appended to `out`."""

    policy: str                     # an SFT run directory: both answers, or answer A's model with `against`
    out: str                        # the label file (.jsonl), created or resumed
    rater: str
    n: int = 20                     # labels this rater gives in all (earlier sessions count)
    against: str | None = None      # a second policy: one answer from each
    shared_fraction: float = 0.25   # share of the n pairs that every rater labels
    seed: int = 0
    prompts: str | None = None      # training prompts (default: the shipped data/rl/train.jsonl)
    models: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.rater = check_rater(self.rater)
        if not 1 <= self.n <= 10_000:
            raise UserError(f"--n {self.n}: expected a number of pairs from 1 to 10000")
        if not 0.0 <= self.shared_fraction <= 1.0:
            raise UserError(f"--shared-fraction {self.shared_fraction}: expected a share in [0, 1]")
        self.prompt_list = [r["prompt"] for r in read_prompts(self.prompts or shipped().rl)]
        self.identity = {"policy": os.path.abspath(self.policy),
                         "against": os.path.abspath(self.against) if self.against else None, "seed": self.seed}
        self.done_ids = self._resume()
        for which in ("policy", "against") if self.against else ("policy",):
            self._model(which)  # a wrong --policy or --against is reported before the first pair

    # ----- the file: resume, and one flushed record per judgement ---------------------------

    def _resume(self) -> set[int]:
        """Prompt ids this rater already labelled; refuses a file made from other policies or another seed."""
        if not os.path.exists(self.out):
            return set()
        done = set()
        for number, record in enumerate(read_label_file(self.out), start=1):
            theirs = {k: record.get(k) for k in self.identity}
            if theirs != self.identity:
                raise UserError(f"{self.out} line {number} was labelled from policy {theirs['policy']} (against "
                                f"{theirs['against']}, seed {theirs['seed']}), not {self.identity['policy']} (against "
                                f"{self.identity['against']}, seed {self.seed}): pass another --out")
            if record["rater"] == self.rater:
                done.add(record["prompt_id"])
        return done

    def record(self, pair: Pair, label: str) -> dict:
        """Append the judgement (A, B or tie) to the label file, flushed to disk before returning."""
        if label not in ("A", "B", "tie"):
            raise UserError(f"label {label!r}: expected A, B or tie")
        gold_a, gold_b = gold_score(pair.prompt, pair.a), gold_score(pair.prompt, pair.b)
        row = {"prompt": pair.prompt}
        if label == "tie":
            row.update(answer_a=pair.a, answer_b=pair.b, gold_a=gold_a, gold_b=gold_b,
                       source_a=pair.source_a, source_b=pair.source_b)
        else:
            first = label == "A"
            row.update(chosen=pair.a if first else pair.b, rejected=pair.b if first else pair.a,
                       gold_chosen=gold_a if first else gold_b, gold_rejected=gold_b if first else gold_a,
                       chosen_source=pair.source_a if first else pair.source_b,
                       rejected_source=pair.source_b if first else pair.source_a)
        row.update(label=label, rater=self.rater, prompt_id=pair.prompt_id, shared=pair.shared, **self.identity)
        os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())  # Ctrl-C or a crash after this line loses nothing
        self.done_ids.add(pair.prompt_id)
        return row

    # ----- which pairs, in which order ---------------------------------------------------------

    def shared_ids(self) -> list[int]:
        """The prompts every rater sees: the first round(n · shared_fraction) of one seeded shuffle."""
        order = list(range(len(self.prompt_list)))
        random.Random(self.seed).shuffle(order)
        return order[:round(self.n * self.shared_fraction)]

    def candidate_ids(self) -> list[int]:
        """This rater's prompts in the order shown: the shared ones, then the rater's own shuffle of the rest."""
        shared = self.shared_ids()
        rest = sorted(set(range(len(self.prompt_list))) - set(shared))
        random.Random(f"{self.seed}:{self.rater}").shuffle(rest)
        return shared + rest

    def pairs(self):
        """The pairs still to label, sampled one at a time (so the first appears at once)."""
        shared = set(self.shared_ids())
        for prompt_id in self.candidate_ids():
            if len(self.done_ids) >= self.n:
                return
            if prompt_id in self.done_ids:
                continue
            pair = self.sample_pair(prompt_id, prompt_id in shared)
            if pair is not None:
                yield pair

    def sample_pair(self, prompt_id: int, shared: bool) -> Pair | None:
        """Two different answers to prompt `prompt_id`, or None when every try gave two equal ones."""
        prompt = self.prompt_list[prompt_id]
        if not all(_encodable(tok, prompt) for _model, tok in self.models.values()):
            return None  # a character the policy's tokenizer never saw: pass the prompt over
        for attempt in range(RESAMPLE_TRIES):
            seed = (self.seed * 1_000_003 + prompt_id) * RESAMPLE_TRIES + attempt
            first, second, sources = self._answers(prompt, seed)
            if first.strip() != second.strip():
                if random.Random(seed).random() < 0.5:
                    first, second, sources = second, first, sources[::-1]
                return Pair(prompt_id, prompt, first, second, shared, *sources)
        return None

    def _answers(self, prompt: str, seed: int) -> tuple[str, str, tuple[str, str]]:
        model, tok = self._model("policy")
        if self.against is None:
            a, b = sample_responses(model, tok, [prompt], n=2, temperature=1.0, seed=seed)[0]
            return a, b, ("policy", "policy")
        other, other_tok = self._model("against")
        a = sample_responses(model, tok, [prompt], n=1, temperature=1.0, seed=seed)[0][0]
        b = sample_responses(other, other_tok, [prompt], n=1, temperature=1.0, seed=seed)[0][0]
        return a, b, ("policy", "against")

    def _model(self, which: str):
        """The chat model of --policy or --against, loaded once."""
        if which not in self.models:
            path = self.policy if which == "policy" else self.against
            ckpt = checkpoint.load(path)
            if ckpt.model_kind != "gpt" or ckpt.tokenizer is None or not chat.uses_chat_template(ckpt.meta):
                flag = "--policy" if which == "policy" else "--against"
                raise UserError(f"{flag} {path} is not a chat policy (an SFT or RLHF run): answers need the chat template")
            ckpt.model.eval()
            self.models[which] = (ckpt.model, ckpt.tokenizer)
        return self.models[which]


def _encodable(tokenizer, text: str) -> bool:
    try:
        tokenizer.encode(text)
    except UserError:
        return False
    return True


# ----- the terminal: two columns, keys from stdin ---------------------------------------------

def side_by_side(pair: Pair, width: int | None = None) -> str:
    """The prompt, then answers A and B in two columns wrapped to the terminal's width."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    column = max(20, (width - 3) // 2)
    left = textwrap.wrap(pair.a, column) or [""]
    right = textwrap.wrap(pair.b, column) or [""]
    rows = [f"{'A':<{column}} | B", f"{'-' * column}-+-{'-' * column}"]
    for i in range(max(len(left), len(right))):
        rows.append(f"{(left[i] if i < len(left) else ''):<{column}} | {right[i] if i < len(right) else ''}")
    shared = " (shared: every rater sees this pair)" if pair.shared else ""
    return "\n".join([f"Prompt #{pair.prompt_id}{shared}: {pair.prompt}", *rows])


def label_pairs(session: LabelSession, choose_key, write=lambda text: None) -> dict:
    """The labeling loop: `choose_key(pair)` gives a checked key, or None at the end of input.

    Returns the counts {"labelled", "skipped", "total", "stopped"} (stopped: "done", "quit" or
    "end of input"); each label is recorded (and flushed) before the next pair is asked for.
    """
    counts = {"labelled": 0, "skipped": 0, "stopped": "done"}
    for pair in session.pairs():
        key = choose_key(pair)
        if key is None or key == "quit":
            counts["stopped"] = "end of input" if key is None else "quit"
            break
        if key == "skip":
            counts["skipped"] += 1
            continue
        session.record(pair, key)
        counts["labelled"] += 1
        write(f"saved ({len(session.done_ids)} of {session.n})")
    counts["total"] = len(session.done_ids)
    return counts


def run_terminal(session: LabelSession, read_line, write) -> dict:
    """Label pairs with keys read line by line (`read_line()` returns '' at the end of input).

    A bad key gets one line naming the keys and the same pair again. Returns `label_pairs`' counts.
    """
    def ask(pair):
        write("\n" + side_by_side(pair))
        while True:
            line = read_line()
            if line == "":
                return None
            try:
                return check_key(line)
            except UserError as err:
                write(f"error: {err}")

    write(f"rater {session.rater}: {len(session.done_ids)} of {session.n} pairs labelled so far; keys: {KEY_HELP}")
    counts = label_pairs(session, ask, write)
    write(f"{counts['labelled']} labelled now, {counts['total']} in all by {session.rater} in {session.out} "
          f"({counts['stopped']})")
    return counts


# ----- a notebook: buttons, or input() where ipywidgets is missing -----------------------------

def label_in_notebook(session: LabelSession, rater=None):
    """Label in a notebook: A / B / tie / skip / quit buttons under the two answers.

    Without ipywidgets (or with `rater`, a function pair -> key that stands in for a person),
    the same session runs through `input()` or the function instead; returns the counts then,
    else the widget box.
    """
    if rater is not None:
        return label_pairs(session, lambda pair: check_key(rater(pair)))
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return run_terminal(session, _read_input, print)
    return _widget(session, widgets, display)


def _read_input() -> str:
    try:
        return input("a / b / t / s / q > ") or " "
    except EOFError:
        return ""


def _widget(session: LabelSession, widgets, display):
    pairs = session.pairs()
    shown = widgets.HTML()
    status = widgets.Label()
    state = {"pair": next(pairs, None)}

    def show():
        pair = state["pair"]
        if pair is None:
            shown.value = f"<b>Done:</b> {len(session.done_ids)} pairs labelled by {session.rater}."
            return
        cell = "<td style='vertical-align:top;width:50%;padding:6px;border:1px solid #999'>{}</td>"
        shown.value = (f"<p><b>Prompt #{pair.prompt_id}</b>{' (shared)' if pair.shared else ''}: {pair.prompt}</p>"
                       f"<table style='width:100%'><tr><th>A</th><th>B</th></tr><tr>"
                       + cell.format(pair.a) + cell.format(pair.b) + "</tr></table>")

    def press(label):
        def on_click(_button):
            if state["pair"] is None:
                return
            if label == "quit":
                state["pair"] = None
            else:
                if label != "skip":
                    session.record(state["pair"], label)
                state["pair"] = next(pairs, None)
            status.value = f"{len(session.done_ids)} of {session.n} labelled"
            show()
        return on_click

    buttons = []
    for label, text in (("A", "A is better"), ("B", "B is better"), ("tie", "tie"), ("skip", "skip"), ("quit", "quit")):
        button = widgets.Button(description=text)
        button.on_click(press(label))
        buttons.append(button)
    show()
    box = widgets.VBox([shown, widgets.HBox(buttons), status])
    display(box)
    return box


# ----- reading label files, and what they measure -----------------------------------------------

def read_label_file(path: str) -> list[dict]:
    """Every record of a label file (ties included); a line that is no label record is a UserError."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path} line {number} is not JSON: a label file has one JSON object a line") from None
            missing = [k for k in ("rater", "prompt_id", "label", "policy") if k not in record]
            if missing:
                raise UserError(f"{path} line {number} has no {', '.join(missing)}: not a `minillm label` file")
            records.append(record)
    return records


def is_label_file(path: str) -> bool:
    """Whether the first record of a .jsonl file has a rater (a `minillm label` file)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return "rater" in json.loads(line)
                except json.JSONDecodeError:
                    return False
    return False


def preference_pairs(records: list[dict]) -> list[dict]:
    """The A/B judgements as {"prompt", "chosen", "rejected"} (ties carry no preference)."""
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in records if r["label"] in ("A", "B")]


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's κ of two raters' labels of the same items: agreement beyond what chance gives.

        κ = (p_o - p_e) / (1 - p_e),  p_o = share of items labelled alike,
        p_e = Σ_k p_1(k) · p_2(k), p_r(k) = share of items rater r labelled k.
    κ = 1: full agreement; 0: no more than chance. When both raters give one label only
    (p_e = 1), κ is 1 if they agree on it, else 0.
    Example: (A, A, B, B) against (A, B, B, B): p_o = 0.75, p_e = 0.5·0.25 + 0.5·0.75 = 0.5, κ = 0.5.
    """
    if len(first) != len(second) or not first:
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    n = len(first)
    p_o = sum(x == y for x, y in zip(first, second)) / n
    labels = set(first) | set(second)
    p_e = sum((first.count(k) / n) * (second.count(k) / n) for k in labels)
    if p_e == 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return (p_o - p_e) / (1 - p_e)


def rater_agreement(records: list[dict]) -> dict:
    """Agreement between raters on shared pairs: each pair of raters on the prompts both labelled.

    Returns {"pairs": [{"raters", "items", "raw", "kappa"}], "raw", "kappa"} with the means over
    rater pairs weighted by items (None when no two raters share a labelled prompt).
    """
    labels: dict[str, dict[int, str]] = {}
    for r in records:
        if r["shared"]:
            labels.setdefault(r["rater"], {})[r["prompt_id"]] = r["label"]
    raters, rows = sorted(labels), []
    for i, one in enumerate(raters):
        for two in raters[i + 1:]:
            common = sorted(set(labels[one]) & set(labels[two]))
            if common:
                x, y = [labels[one][k] for k in common], [labels[two][k] for k in common]
                rows.append({"raters": (one, two), "items": len(common),
                             "raw": sum(a == b for a, b in zip(x, y)) / len(common), "kappa": cohen_kappa(x, y)})
    items = sum(r["items"] for r in rows)
    mean = (lambda key: sum(r[key] * r["items"] for r in rows) / items) if items else (lambda key: None)
    return {"pairs": rows, "raw": mean("raw"), "kappa": mean("kappa")}


def gold_label(record: dict) -> str:
    """What the gold labeler says of a judged pair: the rater's label when gold agrees, etc. (A, B or tie)."""
    if record["label"] == "tie":
        a, b = record["gold_a"], record["gold_b"]
        return "tie" if a == b else ("A" if a > b else "B")
    chosen, rejected = record["gold_chosen"], record["gold_rejected"]
    if chosen == rejected:
        return "tie"
    other = "B" if record["label"] == "A" else "A"
    return record["label"] if chosen > rejected else other


def gold_agreement_by_rater(records: list[dict]) -> dict[str, dict]:
    """Each rater's agreement with the gold labeler: {rater: {"items", "agree", "kappa"}}.

    Items are every pair the rater judged (ties included); agree is the share where the rater's
    label (A, B or tie) equals gold's (a gold tie is an exact equality of the two gold scores).
    """
    out = {}
    for rater in sorted({r["rater"] for r in records}):
        mine = [r for r in records if r["rater"] == rater]
        theirs, gold = [r["label"] for r in mine], [gold_label(r) for r in mine]
        out[rater] = {"items": len(mine), "agree": sum(a == b for a, b in zip(theirs, gold)) / len(mine),
                      "kappa": cohen_kappa(theirs, gold)}
    return out


# ----- training on class labels: mixing files, and the class report ----------------------------

def mix_pair_files(paths: list[str], out: str) -> tuple[str, list[dict]]:
    """Several preference files as one training file, `out` (written whole).

    A label file gives its A/B judgements (ties carry no preference); any other file (any layout
    minillm reads) gives all its pairs. Returns (out, every label record read, ties included).
    """
    from minillm.data.readers import read_preferences

    pairs, records = [], []
    for path in paths:
        if is_label_file(path):
            mine = read_label_file(path)
            records += mine
            pairs += preference_pairs(mine)
        else:
            pairs += [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                      for r in read_preferences(path)]
    if not pairs:
        raise UserError(f"--data {' '.join(paths)} holds no preference (only ties?): label some pairs A or B first")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(p) + "\n" for p in pairs)
    os.replace(out + ".tmp", out)
    return out, records


def rm_pair_accuracy(reward_model, tokenizer, pairs: list[dict]) -> tuple[float, int]:
    """(share of pairs with r(chosen) > r(rejected), a tie counting half; pairs scored).
    Pairs too long for the block are left out, as in training."""
    from minillm.data.preference_batches import PreferenceBatches, encode_pairs
    from minillm.phases.reward import validation_metrics

    encoded = encode_pairs(tokenizer, pairs, reward_model.config.block_size, skip_bad=True)
    if not encoded.chosen:
        return float("nan"), 0
    batches = PreferenceBatches(encoded, chat.chat_token_ids(tokenizer).pad)
    return validation_metrics(reward_model, batches, 32)["val_accuracy"], len(encoded.chosen)


def class_report(records: list[dict], rm_dir: str, gold_pairs: list[dict]) -> dict:
    """What a class's labels taught the reward model in `rm_dir`.

    Returns {"raters", "rater_agreement" (raw and κ on shared pairs), "gold_agreement" (per rater),
    "rm_on_class" (accuracy against the raters' labels), "rm_on_class_gold" (against gold on the
    same pairs, gold ties left out), "rm_on_gold" (on gold-labelled pairs, e.g. the shipped test split)}.
    """
    saved = checkpoint.load(rm_dir)
    reward_model = saved.model.eval()
    judged = [r for r in records if r["label"] in ("A", "B")]
    by_gold = [{"prompt": r["prompt"], "chosen": r["chosen"] if r["gold_chosen"] > r["gold_rejected"] else r["rejected"],
                "rejected": r["rejected"] if r["gold_chosen"] > r["gold_rejected"] else r["chosen"]}
               for r in judged if r["gold_chosen"] != r["gold_rejected"]]
    on_class, n_class = rm_pair_accuracy(reward_model, saved.tokenizer, preference_pairs(judged))
    on_class_gold, n_class_gold = rm_pair_accuracy(reward_model, saved.tokenizer, by_gold)
    on_gold, n_gold = rm_pair_accuracy(reward_model, saved.tokenizer, gold_pairs)
    return {"raters": sorted({r["rater"] for r in records}), "records": len(records),
            "rater_agreement": rater_agreement(records), "gold_agreement": gold_agreement_by_rater(records),
            "rm_on_class": on_class, "class_pairs": n_class, "rm_on_class_gold": on_class_gold,
            "class_gold_pairs": n_class_gold, "rm_on_gold": on_gold, "gold_pairs": n_gold}


def format_class_report(report: dict) -> str:
    """The class report as Markdown (also printed by `minillm reward`)."""
    agree = report["rater_agreement"]
    lines = ["# What the class's labels taught the reward model", "",
             f"{report['records']} judgements by {len(report['raters'])} raters ({', '.join(report['raters'])}).", ""]
    if agree["raw"] is None:
        lines.append("Agreement between raters: no shared pair was labelled by two raters.")
    else:
        lines.append(f"Agreement between raters on shared pairs: raw {agree['raw']:.3f}, Cohen's κ "
                     f"{agree['kappa']:.3f} (mean over {len(agree['pairs'])} rater pair(s), weighted by items).")
        lines += [f"- {a} and {b}: {row['items']} pairs, raw {row['raw']:.3f}, κ {row['kappa']:.3f}"
                  for row in agree["pairs"] for a, b in [row["raters"]]]
    lines += ["", "| rater | pairs judged | agreement with the gold labeler | κ with gold |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {g['items']} | {g['agree']:.3f} | {g['kappa']:.3f} |" for name, g in report["gold_agreement"].items()]
    lines += ["", "| reward model's accuracy | pairs | accuracy |", "| --- | ---: | ---: |",
              f"| class pairs, against the raters' labels | {report['class_pairs']} | {report['rm_on_class']:.3f} |",
              f"| class pairs, against gold (gold ties left out) | {report['class_gold_pairs']} | "
              f"{report['rm_on_class_gold']:.3f} |",
              f"| gold pairs (shipped test split) | {report['gold_pairs']} | {report['rm_on_gold']:.3f} |"]
    return "\n".join(lines) + "\n"


def gold_test_pairs() -> list[dict]:
    """The shipped gold-labelled test pairs (data/preferences/test.jsonl): tasks no training pair asks."""
    from minillm.data.readers import read_preferences

    return [dict(r) for r in read_preferences(os.path.join(os.path.dirname(shipped().preferences), "test.jsonl"))]


def write_class_report(out: str, records: list[dict], gold_pairs: list[dict] | None = None) -> str:
    """OUT/class_report.json and OUT/class_report.md for the reward model in OUT (gold pairs: the
    shipped test split unless given); returns the Markdown."""
    report = class_report(records, out, gold_test_pairs() if gold_pairs is None else gold_pairs)
    with open(os.path.join(out, "class_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    text = format_class_report(report)
    with open(os.path.join(out, "class_report.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def mix_for_reward(paths: list[str] | None, out: str) -> tuple[str | None, list[dict]]:
    """`minillm reward --data`'s files as one: None (the shipped pairs) or one plain file as given;
    several files, or a label file, mixed into OUT.pairs.jsonl beside the run directory OUT.
    Returns (the file to train on, the label records read)."""
    if not paths:
        return None, []
    if len(paths) == 1 and not is_label_file(paths[0]):
        return paths[0], []
    return mix_pair_files(paths, os.path.abspath(out).rstrip(os.sep) + ".pairs.jsonl")


# ----- a flawed labeler's chain, for the pipeline report ------------------------------------------

def policy_habits(prompts: list[str], answers: list[str], answer_form: float) -> dict:
    """What RLHF may change in a policy: mean answer length (characters), flattery rate, answer form, mean gold."""
    from minillm.data.labelers import flatters

    n = max(len(answers), 1)
    return {"length": sum(len(a) for a in answers) / n, "flattery": sum(map(flatters, answers)) / n,
            "answer_form": answer_form, "gold": sum(gold_score(p, a) for p, a in zip(prompts, answers)) / n}


def flaw_chain(out: str, data_dir: str | None) -> list[str]:
    """Markdown lines for a run trained on a flawed data folder (`minillm data preferences`): labeler
    agreement with gold → reward-model agreement with gold → RLHF's gold gain and what the policy changed.
    Nothing for a run on gold-labelled data."""
    from minillm.data.labelers import LABELER_FILE

    settings = os.path.join(data_dir or "", "preferences", LABELER_FILE)
    rm_path, rlhf_path = os.path.join(out, "rm", "summary.json"), os.path.join(out, "rlhf", "report.json")
    if not data_dir or not all(os.path.exists(p) for p in (settings, rm_path, rlhf_path)):
        return []
    with open(settings, encoding="utf-8") as f:
        labeler = json.load(f)
    with open(rm_path, encoding="utf-8") as f:
        rm = RewardSummary.from_json(json.load(f))
    with open(rlhf_path, encoding="utf-8") as f:
        rlhf = json.load(f)
    before, after = (policy_habits(rlhf["prompts"], rlhf["answers"][k], rlhf[k]["answer_form"]) for k in ("sft", "rlhf"))
    flaws = ", ".join(f"{k.replace('_', ' ')} {labeler[k]:g}" for k in ("noise", "length_bias", "position_bias",
                                                                       "sycophancy") if labeler[k]) or "none"
    return ["## The labeler's flaws, through the reward model to the policy", "",
            f"Preference labels by a flawed labeler ({flaws}; `minillm data preferences`). The chain:", "",
            f"1. labels agreeing with gold (shipped training pairs): {labeler['train_agreement']:.3f}",
            f"2. reward model agreeing with gold on fresh SFT answer pairs: {rm.rm_gold_agreement:.3f}",
            f"3. RLHF's held-out gold: {before['gold']:+.3f} → {after['gold']:+.3f} ({after['gold'] - before['gold']:+.3f})",
            f"4. what the policy changed, SFT → RLHF: mean answer length {before['length']:.1f} → {after['length']:.1f} "
            f"characters, flattery rate {before['flattery']:.3f} → {after['flattery']:.3f}, answer form "
            f"{before['answer_form']:.3f} → {after['answer_form']:.3f}", ""]
