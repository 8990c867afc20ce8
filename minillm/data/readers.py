"""Readers for the data files users bring: plain text, demonstrations, preferences, prompts.

Each phase of Lecture 5 reads its own kind of data: raw text for pretraining, (prompt,
response) demonstrations for SFT, (prompt, chosen, rejected) comparisons for the reward
model, and prompts for RL. These readers accept the common JSON Lines layouts (see
`layouts`) and return minillm's records. Bad input raises a DataError naming the file,
the line and the problem; with skip_bad=True bad records are skipped and counted instead,
never dropped silently. Left out: Parquet, CSV, compressed files, streaming huge files.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Callable

from minillm.data.layouts import LayoutError, to_demonstration, to_preference, to_prompt
from minillm.errors import UserError

DOC_SEPARATOR = "\n<|endoftext|>\n"  # between documents, and between the files of a folder


class DataError(UserError):
    """A data file that cannot be read as asked: says which file, which line, and why."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


class Records(list):
    """A list of records, plus what the reader saw on the way.

    Attributes:
        skipped: one DataError message per bad record skipped (only with skip_bad=True).
        layouts: how many records came in each layout, e.g. {"hh": 2307, "hh (differs ...)": 5}.
    """

    def __init__(self, items=(), skipped: list[str] | None = None, layouts: Counter | None = None):
        super().__init__(items)
        self.skipped = skipped or []
        self.layouts = layouts or Counter()


def read_text(path: str | Path) -> str:
    """A text file, or every `.txt` file of a folder sorted by name, joined by DOC_SEPARATOR.

    Raises:
        DataError: the path is missing, the folder has no .txt file, or a file is not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DataError(path, None, "folder holds no .txt file")
        return DOC_SEPARATOR.join(_decode_file(p).strip("\n") for p in files)
    return _decode_file(path)


def _decode_file(path: Path) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(path, line, f"not UTF-8 text (byte {data[err.start]:#04x}); "
                                    "convert the file to UTF-8 first") from None


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(path, None, "no such file or folder")
    if path.is_dir():
        raise DataError(path, None, "is a folder; expected a .jsonl file")
    return path.read_bytes()


def iter_jsonl(path: str | Path):
    """Yield (line number, parsed object or DataError) for each non-blank line of a file."""
    path = Path(path)
    for number, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue  # blank lines hold no record
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield number, DataError(path, number, "not UTF-8 text; convert the file to UTF-8 first")
            continue
        except json.JSONDecodeError as err:
            yield number, DataError(path, number, f"malformed JSON ({err.msg}, column {err.colno})")
            continue
        if not isinstance(obj, dict):
            obj = DataError(path, number, f"expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def read_jsonl(path: str | Path, convert: Callable[[dict], tuple[dict, str]],
               skip_bad: bool = False) -> Records:
    """Read a JSON Lines file, turning each object into a record with `convert`.

    Args:
        path: the .jsonl file.
        convert: object -> (record, layout name); raises LayoutError on a bad record.
        skip_bad: skip bad lines and list them in `Records.skipped` instead of raising.
    """
    records = Records()
    for number, obj in iter_jsonl(path):
        try:
            if isinstance(obj, DataError):
                raise obj
            try:
                record, layout = convert(obj)
            except LayoutError as err:
                raise DataError(path, number, str(err)) from None
        except DataError as err:
            if not skip_bad:
                raise
            records.skipped.append(str(err))
            continue
        records.append(record)
        records.layouts[layout] += 1
    return records


def read_demonstrations(path: str | Path, skip_bad: bool = False) -> Records:
    """SFT demonstrations as [{"prompt", "response"}], from any layout in `layouts`.

    Example line: {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
        -> {"prompt": "Add 2 and 3.", "response": "5"}
    """
    return read_jsonl(path, to_demonstration, skip_bad)


def read_preferences(path: str | Path, skip_bad: bool = False) -> Records:
    """Preference pairs as [{"prompt", "chosen", "rejected"}], plain or Anthropic HH layout."""
    return read_jsonl(path, to_preference, skip_bad)


def read_prompts(path: str | Path, skip_bad: bool = False) -> Records:
    """Prompts as [{"prompt"}]: a `prompt` field, or the prompts of demonstrations or pairs."""
    return read_jsonl(path, to_prompt, skip_bad)


def detect_kind(path: str | Path) -> str:
    """'text', 'demonstrations', 'preferences' or 'prompts', from the path and first record."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".jsonl" and path.suffix != ".json":
        return "text"
    for number, obj in iter_jsonl(path):
        if isinstance(obj, DataError):
            continue  # the reader will report it, or skip it
        if "chosen" in obj and "rejected" in obj:
            return "preferences"
        if {"response", "completion", "output", "messages"} & obj.keys():
            return "demonstrations"
        if "prompt" in obj or "instruction" in obj:
            return "prompts"
        raise DataError(path, number, "cannot tell the kind of data: expected a 'prompt', "
                                      "'response', 'messages' or 'chosen'/'rejected' field")
    raise DataError(path, None, "holds no record")
