"""`minillm generate`: streams a continuation from a tiny checkpoint made here, prints
multi-byte characters whole, honours the seed, and reports bad input in one line."""
from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import pytest

import minillm
from minillm.app.cli import main
from minillm.app.commands.generate_command import format_prompt_for_checkpoint, print_incrementally, run
from minillm.model.sampling import generate
from minillm.model.gpt import GPT, GPTConfig
from minillm.tokenizers import BPETokenizer, CharTokenizer

TEXT = "to be or not to be, that is the question.\nq: a:\n"


def tiny_model(vocab_size, block_size=32):
    minillm.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=8))


@pytest.fixture
def ckpt_dir(tmp_path):
    checkpoint = pytest.importorskip("minillm.io.checkpoint")
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    checkpoint.save(tiny_model(tok.vocab_size), tmp_path / "ckpt", tokenizer=tok, meta={"note": "test"})
    return tmp_path / "ckpt"


def test_cli_streams_the_same_text_as_generate(ckpt_dir, capsys):
    from minillm.io import checkpoint

    code = main(["generate", "--ckpt", str(ckpt_dir), "--prompt", "to be", "--seed", "7",
                 "--max-new-tokens", "12", "--temperature", "0.9", "--top-k", "5"])
    assert code == 0
    ckpt = checkpoint.load(ckpt_dir)
    tok, prompt = ckpt.tokenizer, ckpt.tokenizer.encode("to be")
    ids = generate(ckpt.model, prompt, 12, temperature=0.9, top_k=5, seed=7,
                   stop_ids=[tok.special_tokens["<|endoftext|>"]])
    expected = tok.decode([i for i in ids if i not in tok.special_tokens.values()])
    assert capsys.readouterr().out == expected + "\n"


def test_cli_errors_are_one_line(ckpt_dir, tmp_path, capsys):
    assert main(["generate", "--ckpt", str(ckpt_dir), "--prompt", "to be", "--top-p", "1.5"]) == 2
    assert "argument --top-p: must be a number in (0, 1], got 1.5" in capsys.readouterr().err
    assert main(["generate", "--ckpt", str(ckpt_dir), "--prompt", "to be" * 10]) == 2
    assert "block_size" in capsys.readouterr().err
    assert main(["generate", "--ckpt", str(ckpt_dir), "--prompt", "to", "--max-new-tokens", "40"]) == 2
    assert "block_size is 32" in capsys.readouterr().err
    assert main(["generate", "--ckpt", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert "missing" in capsys.readouterr().err


class Recorder(io.StringIO):
    """Keeps every write separately, to see what the terminal showed at each step."""

    def __init__(self):
        super().__init__()
        self.pieces = []

    def write(self, s):
        self.pieces.append(s)
        return super().write(s)


def test_multibyte_characters_print_whole():
    tok = BPETokenizer.train("plain ascii", 256)  # no merges: every byte is its own token
    text = "héllo 日本 🙂"
    ids = tok.encode(text)
    assert len(ids) > len(text)  # characters really are split over several tokens
    out = Recorder()
    assert print_incrementally(tok, ids[:1], iter(ids[1:]), [], out) == ids[1:]
    assert out.getvalue() == text[1:] + "\n"
    assert not any("\ufffd" in piece for piece in out.pieces)
    assert len(out.pieces) > 5  # streamed piece by piece, not printed once at the end


def test_run_uses_the_prompt_hook_and_stops_at_the_stop_token():
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    ckpt = SimpleNamespace(model=tiny_model(tok.vocab_size), tokenizer=tok, meta={})
    assert format_prompt_for_checkpoint(ckpt, "to be") == "to be"
    ckpt.meta["chat_template"] = "q: {prompt}\na:"
    assert format_prompt_for_checkpoint(ckpt, "to be") == "q: to be\na:"
    eot = tok.special_tokens["<|endoftext|>"]
    # Make <|endoftext|> the likeliest next token whatever the random init (and backend):
    # every final hidden state becomes its (scaled) embedding row, and the tied head then
    # scores it |w_eot|², far above any other row's dot product with it.
    model = ckpt.model
    model.wte.weight.data[eot] *= 300
    model.ln_f.weight.data[...] = 0
    model.ln_f.bias.data[...] = model.wte.weight.data[eot]
    args = argparse.Namespace(ckpt="fake", prompt="to be", max_new_tokens=None, temperature=0.0,
                              top_k=None, top_p=None, seed=None, stop=None)
    out = io.StringIO()
    new = run(ckpt, args, out)
    assert new[-1] == eot and len(new) < 32 - len("q: to be\na:")
    assert out.getvalue().startswith("q: to be\na:") and "<|endoftext|>" not in out.getvalue()


def test_chat_checkpoint_gets_the_template_and_stops_at_end(tmp_path, monkeypatch):
    from minillm.tokenizers import chat_template as chat
    from minillm.io import checkpoint
    from minillm.app.commands import generate_command as command
    tok = CharTokenizer.train("abc de", special_tokens=["<|endoftext|>"])
    model = tiny_model(tok.vocab_size)
    chat.add_chat_tokens(tok, model)
    checkpoint.save(model, tmp_path / "sft", tokenizer=tok, meta={"chat_template": chat.TEMPLATE_NAME})
    seen = {}

    def fake_stream(model, prompt_ids, max_new, **kwargs):
        seen["prompt"], seen["stop"] = prompt_ids, kwargs["stop_ids"]
        return iter([])

    monkeypatch.setattr(command, "stream", fake_stream)
    assert main(["generate", "--ckpt", str(tmp_path / "sft"), "--prompt", "ab", "--max-new-tokens", "3"]) == 0
    user, assistant, end = chat.chat_token_ids(tok)
    assert seen["prompt"] == [user, *tok.encode("ab"), assistant]
    assert end in seen["stop"]
