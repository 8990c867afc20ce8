"""`minillm data stats` and `minillm data make-world` through minillm.app.cli.main."""
import json
from pathlib import Path

from minillm.app.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_stats_of_demonstrations_with_char_tokens(capsys):
    assert main(["data", "stats", str(FIXTURES / "demos_dolly.jsonl"), "--tokenizer", "char"]) == 0
    out = capsys.readouterr().out
    assert "demonstrations, 2 records" in out
    assert "instruction/context/response 2" in out
    assert "total tokens" in out
    assert "response" in out and "p99" in out


def test_stats_of_hh_counts_empty_and_early_differences(capsys):
    assert main(["data", "stats", str(FIXTURES / "prefs_hh.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "preferences, 3 records" in out
    assert "empty chosen: 1" in out
    assert "hh differ before last turn: 1" in out


def test_stats_of_text_folder_and_prompts(capsys):
    assert main(["data", "stats", str(FIXTURES / "text")]) == 0
    assert "text, 2 records" in capsys.readouterr().out
    assert main(["data", "stats", str(FIXTURES / "prompts.jsonl")]) == 0
    assert "prompts, 2 records" in capsys.readouterr().out


def test_stats_with_a_saved_tokenizer(tmp_path, capsys):
    from minillm.tokenizers import CharTokenizer
    tok = CharTokenizer.train("".join(chr(c) for c in range(32, 127)) + "\n")
    tok.save(tmp_path / "tok.json")
    assert main(["data", "stats", str(FIXTURES / "prompts.jsonl"), "--tokenizer", str(tmp_path / "tok.json")]) == 0
    assert "total tokens" in capsys.readouterr().out


def test_bad_file_is_an_error_or_skipped_with_skip_bad(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n{broken\n")
    assert main(["data", "stats", str(path)]) == 2
    assert "bad.jsonl, line 2: malformed JSON" in capsys.readouterr().err
    assert main(["data", "stats", str(path), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped bad records: 1" in out and "line 2" in out


def test_make_world_command(tmp_path, capsys):
    assert main(["data", "make-world", "--out", str(tmp_path), "--scale", "0.01"]) == 0
    assert "bytes in 13 files" in capsys.readouterr().out  # pretrain 2, sft 3, chat 3, preferences 3, rl 2
    assert (tmp_path / "sft" / "train.jsonl").stat().st_size > 0
    assert (tmp_path / "pretrain" / "train.txt").read_text().count("<|endoftext|>") > 0
