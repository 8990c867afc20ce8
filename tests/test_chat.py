"""The chat template: formatting, tokenizer and embedding growth, encoding, stopping at <|end|>."""
import argparse
import io
from types import SimpleNamespace

import numpy
import pytest

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.app.commands.generate_command import format_prompt_for_checkpoint, run
from minillm.tokenizers.chat_template import ResponseTooLong
from minillm.model.sampling import generate
from minillm.model.gpt import GPT, GPTConfig
from minillm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

TEXT = "how to make pizza? first, gather the ingredients. then bake it.\n"


def tiny_model(vocab_size: int, tie_weights: bool = True) -> GPT:
    backend.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=16,
                         tie_weights=tie_weights))


def test_the_template_is_one_readable_string():
    assert chat.format_prompt("How to make pizza") == "<|user|>How to make pizza<|assistant|>"
    assert chat.format_example("Add 2 and 3.", "5") == "<|user|>Add 2 and 3.<|assistant|>5<|end|>"
    assert chat.uses_chat_template({"chat_template": "minillm-chat-v1"}) and not chat.uses_chat_template({})


@pytest.mark.parametrize("tie_weights", [True, False])
def test_add_chat_tokens_appends_ids_and_rows_and_keeps_the_old_ones(tie_weights):
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    model = tiny_model(tok.vocab_size, tie_weights)
    old_vocab, old_ids = tok.vocab_size, tok.encode(TEXT)
    old_wte = model.wte.weight.numpy().copy()
    old_head = None if tie_weights else model.lm_head.weight.numpy().copy()
    ids = chat.add_chat_tokens(tok, model)
    assert ids == [old_vocab, old_vocab + 1, old_vocab + 2] and tok.encode(TEXT) == old_ids
    assert tok.special_tokens[chat.SYSTEM] == old_vocab + 3  # the fourth, after the first three
    grown = old_vocab + 4
    wte = model.wte.weight.numpy()
    assert wte.shape == (grown, 16) and model.config.vocab_size == grown
    numpy.testing.assert_array_equal(wte[:old_vocab], old_wte)
    # new rows: the mean of the old rows plus small noise, and not all equal
    numpy.testing.assert_allclose(wte[old_vocab:], numpy.repeat(old_wte.mean(0, keepdims=True), 4, 0), atol=0.05)
    assert not numpy.allclose(wte[old_vocab], wte[old_vocab + 1])
    if not tie_weights:
        head = model.lm_head.weight.numpy()
        assert head.shape == (16, grown)
        numpy.testing.assert_array_equal(head[:, :old_vocab], old_head)
    assert chat.add_chat_tokens(tok, model) == ids and model.config.vocab_size == grown  # no-op
    assert model([ids]).shape == (1, 3, grown)


def test_a_tokenizer_from_before_system_turns_keeps_its_ids_and_gains_system_last():
    tok = CharTokenizer.train(TEXT)
    old = tok.add_special_tokens(list(chat.CHAT_TOKENS))  # a checkpoint finetuned before <|system|>
    system = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="no <\\|system\\|> token"):
        chat.encode_conversation(tok, system)
    assert chat.encode_conversation(tok, system[1:])[0] == [old[0], *tok.encode("hi")]  # no system turn: fine
    assert chat.add_chat_tokens(tok) == old and tok.special_tokens[chat.SYSTEM] == old[2] + 1


@pytest.mark.parametrize("make", [
    lambda: CharTokenizer.train(TEXT),
    lambda: WordTokenizer.train(TEXT),
    lambda: BPETokenizer.train(TEXT * 3, vocab_size=280),
], ids=["char", "word", "bpe"])
def test_encode_example_matches_encoding_the_formatted_text(make):
    tok = make()
    user, assistant, end = chat.add_chat_tokens(tok)
    prompt, response = "how to make pizza?", "first, gather the ingredients."
    ids, mask = chat.encode_example(tok, prompt, response, block_size=256)
    assert ids == tok.encode(chat.format_example(prompt, response))  # special tokens matched whole
    n_response = len(tok.encode(response)) + 1
    assert mask == [0] * (len(ids) - n_response) + [1] * n_response and ids[-1] == end
    assert ids[0] == user and ids[len(ids) - n_response - 1] == assistant
    assert chat.encode_prompt(tok, prompt) == tok.encode(chat.format_prompt(prompt))
    named = chat.chat_token_ids(tok)
    assert (named.user, named.assistant, named.end, named.pad) == (user, assistant, end, end)


def test_too_long_pairs_cut_the_prompt_from_the_left_or_raise():
    tok = CharTokenizer.train(TEXT)
    chat.add_chat_tokens(tok)
    ids, mask = chat.encode_example(tok, "how to make pizza?", "bake it.", block_size=16)
    assert len(ids) == 17 and tok.decode(ids) == "<|user|>pizza?<|assistant|>bake it.<|end|>"
    assert tok.decode(chat.encode_prompt(tok, "how to make pizza?", max_tokens=8)) == "<|user|>pizza?<|assistant|>"
    with pytest.raises(ResponseTooLong):
        chat.encode_example(tok, "pizza?", "first, gather the ingredients.", block_size=16)
    with pytest.raises(ValueError, match="add_chat_tokens"):
        chat.encode_example(CharTokenizer.train(TEXT), "a", "b", 16)


def test_generation_stops_at_end():
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    model = tiny_model(tok.vocab_size)
    _, _, end = chat.add_chat_tokens(tok, model)
    model.wte.weight.data[end] *= 300  # make <|end|> the likeliest next token everywhere
    prompt = chat.encode_prompt(tok, "how to make pizza?")
    out = generate(model, prompt, max_new_tokens=20, temperature=0.0, stop_ids=[end])
    assert out[-1] == end and len(out) < len(prompt) + 20
    assert chat.response_text(tok, [tok.token_to_id("b"), end, tok.token_to_id("z")]) == "b"


def test_minillm_generate_applies_the_template_of_an_sft_checkpoint():
    tok = CharTokenizer.train(TEXT, special_tokens=["<|endoftext|>"])
    model = tiny_model(tok.vocab_size)
    _, _, end = chat.add_chat_tokens(tok, model)
    model.wte.weight.data[end] *= 300
    ckpt = SimpleNamespace(model=model, tokenizer=tok, meta={"chat_template": chat.TEMPLATE_NAME})
    assert format_prompt_for_checkpoint(ckpt, "bake it") == "<|user|>bake it<|assistant|>"
    args = argparse.Namespace(ckpt="fake", prompt="bake it", max_new_tokens=None, temperature=0.0,
                              top_k=None, top_p=None, seed=None, stop=[chat.END])
    out = io.StringIO()
    new = run(ckpt, args, out)
    assert new == [end] and out.getvalue() == "<|user|>bake it<|assistant|>\n"


CONVERSATIONS = [
    [{"role": "user", "content": "how to make pizza?"}],
    [{"role": "user", "content": "how to make pizza?"}, {"role": "assistant", "content": "first, gather."}],
    [{"role": "system", "content": "be brief."}, {"role": "user", "content": "pizza?"},
     {"role": "assistant", "content": "bake it."}, {"role": "user", "content": "then?"}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_the_hugging_face_template_renders_the_reference_encoding(messages):
    """chat.HF_CHAT_TEMPLATE (rendered by Jinja as transformers does) gives encode_conversation's ids."""
    jinja2 = pytest.importorskip("jinja2.sandbox")

    def raise_exception(message):
        raise ValueError(message)
    env = jinja2.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(chat.HF_CHAT_TEMPLATE)
    tok = CharTokenizer.train(TEXT)
    chat.add_chat_tokens(tok)
    for generation_prompt in ([False, True] if messages[-1]["role"] == "user" else [False]):
        text = template.render(messages=messages, add_generation_prompt=generation_prompt)
        assert text == chat.format_conversation(messages, add_generation_prompt=generation_prompt)
        ids, _ = chat.encode_conversation(tok, messages, add_generation_prompt=generation_prompt)
        assert tok.encode(text) == ids
