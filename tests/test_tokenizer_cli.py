"""Tests for `minillm tokenizer train|encode`, called through minillm.app.cli.main."""
from __future__ import annotations

import pytest

import minillm.tokenizers as tokenizers
from minillm.app.cli import main

TEXT = "the nation took action on the station. the apple, the nation!\n" * 20


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_train_then_encode(corpus, tmp_path, capsys, kind):
    out = tmp_path / "tok.json"
    code = main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "275",
                 "--out", str(out), "--kind", kind, "--special", "<|endoftext|>", "<|user|>"])
    assert code == 0
    tok = tokenizers.load(out)
    assert tok.kind == kind and "<|user|>" in tok.special_tokens
    assert f"vocab_size {tok.vocab_size}" in capsys.readouterr().out

    assert main(["tokenizer", "encode", "--tok", str(out), "the apple<|user|>"]) == 0
    printed = capsys.readouterr().out
    assert f"ids:    {tok.encode('the apple<|user|>')}" in printed
    assert "'<|user|>'" in printed


def test_bpe_file_matches_training_in_python(corpus, tmp_path):
    out = tmp_path / "tok.json"
    main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "280", "--out", str(out)])
    assert tokenizers.load(out).merges == tokenizers.BPETokenizer.train(TEXT, 280).merges


def test_errors_are_one_clear_line(corpus, tmp_path, capsys):
    out = str(tmp_path / "tok.json")
    assert main(["tokenizer", "train", "--input", str(corpus), "--out", out]) == 2
    assert "--vocab-size is required" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--input", "missing.txt", "--vocab-size", "300",
                 "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "100",
                 "--out", out]) == 2
    assert "too small" in capsys.readouterr().err
    assert main(["tokenizer", "encode", "--tok", str(corpus), "hi"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
