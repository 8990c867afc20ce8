"""LLM_φ(x) made visible: top next tokens, several models side by side, text bars, the lesson figures."""
import numpy
import pytest
from matplotlib.figure import Figure

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.app.explore import (
    NextToken,
    format_distribution,
    next_token_distributions,
    prefix_ids,
    top_next_tokens,
    turn_rows,
)
from minillm.model.gpt import GPT, GPTConfig
from minillm.io.plots import plot_loss_mask, plot_next_token_distributions
from minillm.tokenizers import CharTokenizer, WordTokenizer

TEXT = "where does anna live? anna lives in rivertown.\n"


def model_and_tokenizer(finetuned: bool, seed: int = 0):
    tok = CharTokenizer.train(TEXT)
    backend.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=16))
    if finetuned:
        chat.add_chat_tokens(tok, model)
    return model, tok


def test_top_next_tokens_are_the_largest_entries_of_next_token_probs():
    model, tok = model_and_tokenizer(True)
    ids = chat.encode_prompt(tok, "where does anna live?")
    probs = backend.to_numpy(model.next_token_probs(ids))
    top = top_next_tokens(model, tok, ids, k=5)
    assert [t.id for t in top] == list(numpy.argsort(-probs, kind="stable")[:5])
    assert [t.prob for t in top] == pytest.approx([float(probs[t.id]) for t in top])
    assert all(a.prob >= b.prob for a, b in zip(top, top[1:]))
    assert all(t.text == tok.decode([t.id]) for t in top)
    with pytest.raises(ValueError, match="prefix is empty"):
        top_next_tokens(model, tok, [])


def test_each_model_reads_the_prefix_as_it_is_used_unless_raw():
    pre, pre_tok = model_and_tokenizer(False)
    sft, sft_tok = model_and_tokenizer(True, seed=1)
    models = {"pretrained": (pre, pre_tok, False), "SFT": (sft, sft_tok, True)}
    dists = next_token_distributions(models, "anna lives in", k=3)
    assert list(dists) == ["pretrained", "SFT"]
    assert dists["SFT"] == top_next_tokens(sft, sft_tok, chat.encode_prompt(sft_tok, "anna lives in"), 3)
    assert dists["pretrained"] == top_next_tokens(pre, pre_tok, pre_tok.encode("anna lives in"), 3)
    raw = next_token_distributions(models, "anna lives in", k=3, raw=True)
    assert raw["SFT"] == top_next_tokens(sft, sft_tok, sft_tok.encode("anna lives in"), 3)
    assert prefix_ids(sft_tok, "anna", template=True)[-1] == chat.chat_token_ids(sft_tok)[1]


def test_text_bars_are_proportional_to_the_probability():
    text = format_distribution([NextToken(1, "a", 1.0), NextToken(2, " b", 0.5), NextToken(3, "c", 0.0)], width=20)
    lines = text.splitlines()
    assert lines[0].split() == ["1.000", "█" * 20, "'a'"]
    assert lines[1].split()[1] == "█" * 10 and lines[1].endswith("' b'")
    assert lines[2].split() == ["0.000", "'c'"]
    assert "▌" in format_distribution([NextToken(1, "a", 0.025)], width=20)  # half a cell: 0.5 of 1/20


def test_turn_rows_join_to_the_conversation_and_draw_one_row_per_turn():
    tok = WordTokenizer.train("where does anna live ? anna lives in rivertown . her pet ? a cat .")
    chat.add_chat_tokens(tok)
    messages = [{"role": "user", "content": "where does anna live ?"},
                {"role": "assistant", "content": "anna lives in rivertown ."},
                {"role": "user", "content": "her pet ?"}, {"role": "assistant", "content": "a cat ."}]
    rows, labels = turn_rows(tok, messages)
    ids, mask = chat.encode_conversation(tok, messages)
    assert [m for _, row_mask in rows for m in row_mask] == mask
    assert [p for pieces, _ in rows for p in pieces] == [tok.decode([i]) for i in ids]
    assert labels == ["1 user", "2 assistant", "3 user", "4 assistant"]
    ax = Figure().subplots()
    plot_loss_mask(ax, rows, labels, title="several turns")
    grid = ax.images[0].get_array()
    assert grid.shape == (4, max(len(p) for p, _ in rows)) and ax.get_title() == "several turns"
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert numpy.nansum(grid) == sum(mask) and len(ax.texts) == len(ids)
    one = Figure().subplots()
    plot_loss_mask(one, [rows[0]])
    assert [t.get_text() for t in one.get_xticklabels()] == [str(m) for m in rows[0][1]]


def test_next_token_bar_charts_one_panel_per_model():
    model, tok = model_and_tokenizer(True)
    dists = next_token_distributions({"SFT": (model, tok, True), "RLHF": (model, tok, True)}, "anna", k=4)
    axes = Figure().subplots(1, 2)
    plot_next_token_distributions(axes, dists)
    assert axes[0].get_title().startswith("SFT: top 4") and len(axes[1].patches) == 4
    assert axes[0].get_yticklabels()[-1].get_text() == repr(dists["SFT"][0].text)  # the most probable on top
