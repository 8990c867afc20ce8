"""Tiny data files and tiny pretrained, SFT and reward-model runs, made through the command line:
the inputs of the trust catalogue and of the resume tests; and the Ctrl-C the resume tests send."""
import contextlib
import json
from pathlib import Path

import pytest


def cli_main(args) -> int:
    """`minillm ARGS...` in this process; paths may be Path objects."""
    from minillm.app.cli import main
    return main([str(a) for a in args])


# Three demonstrations of the tiny world, for data files and held-out prompts.
PAIRS = [{"prompt": "where does anna live?", "response": "anna lives in rivertown."},
         {"prompt": "what is two plus two?", "response": "four."},
         {"prompt": "add two and three.", "response": "five."}]


def write_tiny_data(root: Path, pairs: list[dict]) -> None:
    """corpus.txt, pairs.jsonl (prompt/response) and prefs.jsonl (each response preferred to "no.")."""
    (root / "corpus.txt").write_text("where does anna live? anna lives in rivertown. two plus two is four.\n" * 30)
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    prefs = [{"prompt": r["prompt"], "chosen": r["response"], "rejected": "no."} for r in pairs]
    (root / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prefs))


def train_tiny_runs(root: Path) -> None:
    """root/pt (pretrained), root/sft and root/rm (reward model), two steps each, from write_tiny_data's files."""
    assert cli_main(["pretrain", "--preset", "tiny", "--data", root / "corpus.txt", "--out", root / "pt",
                     "--max-steps", "2", "--quiet"]) == 0
    assert cli_main(["sft", "--init", root / "pt", "--data", root / "pairs.jsonl", "--val", root / "pairs.jsonl",
                     "--test", root / "pairs.jsonl", "--out", root / "sft", "--max-steps", "2", "--batch-size", "2",
                     "--quiet"]) == 0
    assert cli_main(["reward", "--init", root / "sft", "--data", root / "prefs.jsonl", "--val", root / "prefs.jsonl",
                     "--prompts", root / "pairs.jsonl", "--out", root / "rm", "--max-steps", "2", "--batch-size", "2",
                     "--agreement-prompts", "1", "--quiet"]) == 0


@contextlib.contextmanager
def interrupted_at_call(cls, name: str, n: int):
    """Ctrl-C inside a run: within the block, the method cls.name raises KeyboardInterrupt at its
    n-th call (the calls before it run as they would); after the block it is the method it was."""
    original, calls = getattr(cls, name), {"n": 0}

    def interrupting(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cls, name, interrupting)
        yield
