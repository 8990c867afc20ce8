"""`minillm chat` driven through a pipe: replies, /probs, /next, /reset, /save, trimming, leaving."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.app.chat_session import ChatSession, Sampling
from minillm.app.cli import main
from minillm.data.readers import read_demonstrations
from minillm.model.sampling import generate
from minillm.model.gpt import GPT, GPTConfig
from minillm.tokenizers import CharTokenizer

TEXT = "where does anna live? anna lives in rivertown. what pet does she have? she has a cat.\n"


def make_run(directory: Path, finetuned: bool, block_size: int = 64) -> Path:
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))
    meta = {"phase": "pretrain"}
    if finetuned:
        chat.add_chat_tokens(tok, model)
        meta = {"phase": "sft", "chat_template": chat.TEMPLATE_NAME}
    checkpoint.save(model, directory / "checkpoint", tokenizer=tok, meta=meta)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat-runs")
    return {"sft": make_run(root / "sft", True, block_size=128), "pretrain": make_run(root / "pretrain", False, block_size=128),
            "short": make_run(root / "short", True, block_size=40)}


def drive(monkeypatch, capsys, ckpt, lines, *flags):
    """Run `minillm chat` with `lines` on a (non-terminal) stdin; return (exit code, stdout)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = main(["chat", "--ckpt", str(ckpt), *flags])
    return code, capsys.readouterr().out


def greedy_reply(ckpt_dir, turns, max_new: int = 10) -> str:
    ckpt = checkpoint.load(ckpt_dir)
    tok, model = ckpt.tokenizer, ckpt.model
    ids = chat.encode_conversation(tok, turns, add_generation_prompt=True)[0]
    end = tok.special_tokens[chat.END]
    out = generate(model, ids, max_new, temperature=0.0,
                   stop_ids=[end, tok.special_tokens["<|endoftext|>"]])
    return chat.response_text(tok, [t for t in out[len(ids):] if t != tok.special_tokens["<|endoftext|>"]])


def test_a_reply_probs_reset_and_quit_through_a_pipe(monkeypatch, capsys, runs):
    code, out = drive(monkeypatch, capsys, runs["sft"],
                      ["where does anna live?", "/probs", "what pet does she have?", "/reset", "hi", "/quit",
                       "never read"], "--temperature", "0", "--max-new-tokens", "10")
    assert code == 0
    lines = out.splitlines()
    assert "in its chat template" in lines[0] and lines[-1] == "bye" and "never read" not in out
    first = greedy_reply(runs["sft"], [{"role": "user", "content": "where does anna live?"}])
    assert out.startswith(lines[0] + f"\nyou> where does anna live?\nmodel> {first}\n")
    second = greedy_reply(runs["sft"], [{"role": "user", "content": "where does anna live?"},
                                        {"role": "assistant", "content": first},
                                        {"role": "user", "content": "what pet does she have?"}])
    assert f"model> {second}\n" in out  # the second answer read the first exchange
    probs = lines.index("LLM_φ(x) for the reply's first token (x = the conversation so far):")
    bars = lines[probs + 1:probs + 11]
    values = [float(b.split()[0]) for b in bars]
    assert len(bars) == 10 and values == sorted(values, reverse=True) and 0 < sum(values) <= 1.0001
    assert "█" in bars[0] or "▏" in bars[0] or values[0] < 1 / 240
    assert "the conversation is forgotten; start again" in lines
    assert "you> hi\nmodel> " + greedy_reply(runs["sft"], [{"role": "user", "content": "hi"}]) + "\n" in out
    assert sum(line.startswith("LLM_φ(x) for the reply") for line in lines) == 2  # /probs stays on after /reset


def test_next_shows_the_distribution_of_any_prefix_and_sampling_commands_check_their_values(monkeypatch, capsys, runs):
    code, out = drive(monkeypatch, capsys, runs["sft"],
                      ["/next <|user|>where does anna live?<|assistant|>", "/temp 0.5", "/topk 3", "/topp 0.9",
                       "/topk off", "/temp -1", "/topp 2", "/bogus", "/next", "/help"])
    assert code == 0
    ckpt = checkpoint.load(runs["sft"])
    probs = backend.to_numpy(ckpt.model.next_token_probs(
        ckpt.tokenizer.encode("<|user|>where does anna live?<|assistant|>")))
    top = int(probs.argmax())
    lines = out.splitlines()
    first_bar = lines[lines.index("LLM_φ(x) for x = '<|user|>where does anna live?<|assistant|>':") + 1]
    assert first_bar.split()[0] == f"{probs[top]:.3f}" and first_bar.endswith(repr(ckpt.tokenizer.decode([top])))
    for expected in ("temperature 0.5", "top-k 3", "top-p 0.9", "top-k off",
                     "error: /temp takes a finite number >= 0, got '-1'", "error: /topp takes a number in (0, 1] or off, got '2'",
                     "error: unknown command /bogus; /help lists the commands", "error: /next needs a prefix"):
        assert any(line.startswith(expected) for line in lines), expected
    assert "/save FILE" in out  # the help text


def test_save_writes_a_messages_line_that_sft_reads(monkeypatch, capsys, runs, tmp_path):
    saved = tmp_path / "talks.jsonl"
    code, _ = drive(monkeypatch, capsys, runs["sft"], ["where does anna live?", "and her pet?", f"/save {saved}"],
                    "--seed", "3")
    assert code == 0
    record = json.loads(saved.read_text())
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]
    assert record["messages"][2]["content"] == "and her pet?"
    if record["messages"][-1]["content"].strip():  # a demonstration needs a non-empty last answer
        assert read_demonstrations(saved)[0]["messages"] == record["messages"]
    code, again = drive(monkeypatch, capsys, runs["sft"], ["where does anna live?", "and her pet?"], "--seed", "3")
    a1, a2 = (m["content"] for m in record["messages"][1::2])
    assert f"you> where does anna live?\nmodel> {a1}\nyou> and her pet?\nmodel> {a2}\n" in again  # same seed, same replies


def test_a_long_conversation_drops_its_oldest_exchanges_whole_with_a_notice(monkeypatch, capsys, runs):
    question = "where does anna live?"
    code, out = drive(monkeypatch, capsys, runs["short"], [question] * 3, "--max-new-tokens", "4", "--seed", "0")
    assert code == 0
    assert "(the conversation outgrew the model's context of 40 tokens: the oldest 1 exchange dropped)" in out
    ckpt = checkpoint.load(runs["short"])
    session = ChatSession(ckpt.model, ckpt.tokenizer, True, Sampling(max_new_tokens=4, seed=0))
    for _ in range(3):
        dropped, pieces = session.reply(question)
        "".join(pieces)
        assert len(session.last_prompt) <= 40 - 4
        assert session.last_prompt == chat.encode_conversation(ckpt.tokenizer, session.context[:-1],
                                                               add_generation_prompt=True)[0]
    assert session.context == session.history[-len(session.context):] and session.context[0]["role"] == "user"
    assert len(session.history) == 6 and len(session.context) < 6


def test_a_pretrained_run_is_raw_completion_and_says_so(monkeypatch, capsys, runs):
    code, out = drive(monkeypatch, capsys, runs["pretrain"], ["where does anna live?", "/probs", "and her pet?"],
                      "--seed", "1")
    assert code == 0 and "raw completion, no chat template" in out.splitlines()[0]
    ckpt = checkpoint.load(runs["pretrain"])
    session = ChatSession(ckpt.model, ckpt.tokenizer, False, Sampling(seed=1))
    first = session.answer("where does anna live?")
    assert "\n" not in first and session.last_prompt == ckpt.tokenizer.encode("where does anna live?\n")
    session.answer("and her pet?")
    assert session.last_prompt == ckpt.tokenizer.encode(f"where does anna live?\n{first.strip()}\nand her pet?\n")
    assert f"model> {first}" in out


def test_ctrl_c_and_ctrl_d_leave_cleanly(monkeypatch, capsys, runs):
    class Interrupted(io.StringIO):
        def readline(self, *args):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupted())
    assert main(["chat", "--ckpt", str(runs["sft"])]) == 0 and capsys.readouterr().out.endswith("bye\n")
    code, out = drive(monkeypatch, capsys, runs["sft"], [])  # end of input straight away: Ctrl-D
    assert code == 0 and out.endswith("bye\n")


def test_a_reward_model_or_a_bad_setting_is_one_clear_error(monkeypatch, capsys, runs, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "--ckpt", str(runs["sft"]), "--max-new-tokens", "128"]) == 2
    assert "max_new_tokens must lie between 1 and 127" in capsys.readouterr().err
    from minillm.model.reward_model import RewardModel
    ckpt = checkpoint.load(runs["sft"])
    backend.manual_seed(0)
    rm = RewardModel(ckpt.model.config)
    checkpoint.save(rm, tmp_path / "rm", tokenizer=ckpt.tokenizer)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "--ckpt", str(tmp_path / "rm")]) == 2
    assert "it scores answers, it does not write them" in capsys.readouterr().err


def test_the_real_command_through_a_shell_pipe(runs):
    done = subprocess.run([sys.executable, "-m", "minillm", "chat", "--ckpt", str(runs["sft"]), "--temperature", "0",
                           "--max-new-tokens", "10"],
                          input="where does anna live?\n/probs\n/quit\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("model> ") and lines[-1] == "bye" and "\033[" not in done.stdout  # plain text
