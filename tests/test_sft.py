"""Phase 2: the slide's samples, the loss mask, normalisation, padding, truncation, the command."""
import json
import math
import re

import numpy
import pytest

import minillm
from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.app.cli import main
from minillm.tokenizers.chat_template import ResponseTooLong, build_sequence
from minillm.data.sft_batches import (
    IGNORE_INDEX,
    SFTBatches,
    masked_samples,
    pad_batch,
    sft_samples,
    shift_targets,
)
from minillm.phases.losses import cross_entropy
from minillm.model.gpt import GPT, GPTConfig
from minillm.engine.tensor import Tensor
from minillm.tokenizers import CharTokenizer, WordTokenizer
from minillm.phases.losses import loss_weights, sft_loss, token_losses
from minillm.data.sft_batches import encode_demonstrations

PIZZA = ("How to make pizza", "First, gather the ingredients. Then, mix the dough and let it rise.")


def tiny_model(vocab_size: int, block_size: int = 48, seed: int = 0) -> GPT:
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16))


def chat_tokenizer() -> CharTokenizer:
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?.,", special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tok)
    return tok


# ----- the slide's samples -------------------------------------------------------------

def test_sft_samples_rebuild_the_slides_pizza_list():
    tok = WordTokenizer.train(" ".join(PIZZA))
    samples = sft_samples(tok.encode(PIZZA[0]), tok.encode(PIZZA[1]))
    words = [(tok.decode(c), tok.decode([t])) for c, t in samples]
    assert all(c.startswith("How to make pizza") for c, _ in words)  # the prompt is always context
    # The slide drops punctuation: keep the samples whose target is a word, and strip it from contexts.
    slide = [(" ".join(re.findall(r"\w+", c)), t) for c, t in words if t.isalpha()]
    assert slide[:5] == [("How to make pizza", "First"), ("How to make pizza First", "gather"),
                         ("How to make pizza First gather", "the"),
                         ("How to make pizza First gather the", "ingredients"),
                         ("How to make pizza First gather the ingredients", "Then")]
    assert len(samples) == len(tok.encode(PIZZA[1]))  # one sample per response token


def test_one_masked_sequence_holds_exactly_the_literal_samples():
    x, y = [7, 8, 9], [1, 2, 3, 4]
    ids, mask = build_sequence(x, y, block_size=16, head=[50], separator=[51])
    assert ids == [50, 7, 8, 9, 51, 1, 2, 3, 4] and mask == [0] * 5 + [1] * 4
    assert masked_samples(ids, mask) == sft_samples([50, 7, 8, 9, 51], y)
    assert shift_targets(ids, mask) == (ids[:-1], [IGNORE_INDEX] * 4 + y)


def test_masked_loss_equals_mean_of_per_sample_losses_and_prompt_logits_get_zero_gradient():
    tok = chat_tokenizer()
    ids, mask = chat.encode_example(tok, "how to make pizza?", "first, gather.", block_size=48)
    model = tiny_model(tok.vocab_size)
    samples = masked_samples(ids, mask)
    per_sample = [cross_entropy(model([c])[0, -1:], [t]).item() for c, t in samples]  # the slide's list
    x, y = pad_batch([(ids, mask)], pad_id=0)
    logits = Tensor(model(x).data, requires_grad=True)  # (1, T, V), a leaf so its gradient is kept
    loss = sft_loss(logits, y)
    assert loss.item() == pytest.approx(sum(per_sample) / len(per_sample), rel=1e-5)
    loss.backward()
    prompt_positions = backend.to_numpy(y[0]) == IGNORE_INDEX
    grad = logits.grad[0]
    assert prompt_positions.sum() == mask.count(0) - 1 and (grad[prompt_positions] == 0).all()
    assert (numpy.abs(grad[~prompt_positions]).sum(axis=-1) > 0).all()


def test_changing_prompt_position_logits_leaves_the_loss_unchanged():
    rng = numpy.random.default_rng(0)
    logits = rng.standard_normal((2, 6, 5)).astype("float32")
    targets = numpy.array([[-100, -100, 1, 2, -100, -100], [-100, 3, 4, 0, 1, 2]])
    changed = logits.copy()
    changed[targets == IGNORE_INDEX] += 10 * rng.standard_normal((int((targets == IGNORE_INDEX).sum()), 5))
    for normalize in ("token", "sequence"):
        assert sft_loss(Tensor(logits), targets, normalize).item() == sft_loss(Tensor(changed), targets, normalize).item()


# ----- normalisation -------------------------------------------------------------------

def ce(row, target):
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_token_and_sequence_normalisation_by_hand():
    # Row 0 is a short answer (1 counted token), row 1 a long one (3 counted tokens).
    logits = numpy.array([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                          [[0.0, 1.0], [3.0, 0.0], [0.5, 0.5]]])
    targets = numpy.array([[-100, 1, -100], [1, 1, 0]])
    a = ce([0.0, 0.0], 1)
    b, c, d = ce([0.0, 1.0], 1), ce([3.0, 0.0], 1), ce([0.5, 0.5], 0)
    with minillm.default_dtype(numpy.float64):
        t = Tensor(logits)
        assert sft_loss(t, targets, "token").item() == pytest.approx((a + b + c + d) / 4)
        assert sft_loss(t, targets, "sequence").item() == pytest.approx((a + (b + c + d) / 3) / 2)
        numpy.testing.assert_allclose(token_losses(t, targets).numpy(), [[0, a, 0], [b, c, d]])
        numpy.testing.assert_allclose(loss_weights(targets, "sequence"), [[0, 0.5, 0], [1 / 6] * 3])
    with pytest.raises(ValueError, match="normalisation"):
        loss_weights(targets, "batch")


def test_fused_token_mean_equals_its_weighted_twin_in_value_and_gradient():
    rng = numpy.random.default_rng(1)
    logits = rng.standard_normal((3, 5, 7))
    targets = numpy.where(rng.random((3, 5)) < 0.4, -100, rng.integers(0, 7, (3, 5)))
    with minillm.default_dtype(numpy.float64):
        fused, twin = Tensor(logits, requires_grad=True), Tensor(logits, requires_grad=True)
        a = sft_loss(fused, targets, "token")
        b = (token_losses(twin, targets) * Tensor(loss_weights(targets, "token"))).sum()
        a.backward()
        b.backward()
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    numpy.testing.assert_allclose(fused.grad, twin.grad, atol=1e-12)


# ----- batches: padding and truncation --------------------------------------------------

def test_padded_batch_loss_equals_the_unpadded_per_example_combination():
    tok = chat_tokenizer()
    pairs = [("add two and three.", "five."), ("hi?", "hello, how are you today?"), ("why?", "so.")]
    examples = [chat.encode_example(tok, p, r, block_size=48) for p, r in pairs]
    model = tiny_model(tok.vocab_size)
    alone, counts = [], []
    for e in examples:
        x, y = pad_batch([e], pad_id=0)  # one example: no padding at all
        alone.append(sft_loss(model(x), y).item())
        counts.append(sum(e[1]))
    x, y = pad_batch(examples, pad_id=0)  # right-padded to the longest
    assert (backend.to_numpy(y) == IGNORE_INDEX).sum() > sum(e[1].count(0) for e in examples)  # padding ignored
    token = sum(n * l for n, l in zip(counts, alone)) / sum(counts)
    assert sft_loss(model(x), y, "token").item() == pytest.approx(token, rel=1e-5)
    assert sft_loss(model(x), y, "sequence").item() == pytest.approx(sum(alone) / 3, rel=1e-5)


def test_long_pairs_lose_prompt_tokens_on_the_left_and_unfittable_pairs_are_skipped_and_counted():
    ids, mask = build_sequence(list(range(10)), [90, 91, 92], block_size=8, head=[50], separator=[51])
    assert len(ids) == 9 and ids == [50, 6, 7, 8, 9, 51, 90, 91, 92]  # prompt 0..5 dropped, response whole
    assert mask == [0] * 6 + [1] * 3
    with pytest.raises(ResponseTooLong):
        build_sequence([1, 2], list(range(8)), block_size=8, head=[50], separator=[51])
    tok = chat_tokenizer()
    records = [{"prompt": "short?", "response": "yes."},
               {"prompt": "a very long question indeed?", "response": "no."},
               {"prompt": "q?", "response": "an answer far too long for the block."}]
    enc = encode_demonstrations(tok, records, block_size=16)
    assert (len(enc.examples), enc.truncated, enc.skipped) == (2, 1, 1)
    ids, mask = enc.examples[1]
    assert tok.decode(ids).endswith("indeed?<|assistant|>no.<|end|>") and len(ids) == 17
    assert tok.decode(ids).startswith("<|user|>")


def test_batches_are_drawn_from_padded_device_arrays():
    tok = chat_tokenizer()
    examples = [chat.encode_example(tok, "q" * n, "a.", block_size=32) for n in (1, 5, 9)]
    batches = SFTBatches(examples, pad_id=0)
    x, y = batches.batch(4, backend.make_rng(0))
    assert x.shape == y.shape == (4, 13)
    assert [b[0].shape[0] for b in batches.sequential_batches(2)] == [2, 1]
    with pytest.raises(ValueError, match="no demonstrations"):
        SFTBatches([], pad_id=0)


# ----- the command on a tiny run --------------------------------------------------------

def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_sft_command_on_a_tiny_run(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("where does anna live? anna lives in rivertown. what is two plus two? four.\n" * 20)
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(tmp_path / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"prompt": "where does anna live?", "response": "anna lives in rivertown."},
                        {"prompt": "what is two plus two?", "response": "four."},
                        {"prompt": "where does anna live? " * 3, "response": "anna lives in rivertown."}])
    out = tmp_path / "sft"
    args = ["sft", "--init", str(tmp_path / "pt"), "--data", str(pairs), "--val", str(pairs),
            "--test", str(pairs), "--out", str(out), "--max-steps", "3", "--batch-size", "2"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 with the prompt cut on the left" in err and "direct-answer rate" in err  # block 32
    report = json.loads((out / "report.json").read_text())
    assert (report["summary"]["truncated"], report["summary"]["skipped"]) == (2, 0)
    assert set(report) >= {"before", "after", "summary"} and report["after"]["n"] == 3
    assert "| direct-answer rate" in (out / "report.md").read_text()
    ckpt = checkpoint.load(out)
    assert ckpt.meta["chat_template"] == chat.TEMPLATE_NAME and ckpt.step == 3
    assert ckpt.model.config.vocab_size == ckpt.tokenizer.vocab_size
    assert [r["kind"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())].count("eval") >= 1
    assert main(args[:-4] + ["--max-steps", "4", "--batch-size", "2", "--resume", "--quiet"]) == 2
    assert "differences: overrides.max_steps: 3 when started, 4 now" in capsys.readouterr().err  # another schedule
    assert main(args + ["--resume", "--quiet"]) == 0          # the same settings: finished, nothing to do
    assert checkpoint.load(out).step == 3


def test_held_out_answers_are_scored_for_gold_form_and_exact_match():
    from minillm.phases.common import first_line, score_answers
    assert first_line("\n  Anna lives in Rivertown.\nbob: thanks") == "Anna lives in Rivertown."
    prompts = ["Where does Anna live?"] * 3 + ["How to make pizza"]
    answers = ["anna lives in  Rivertown.", "Where does Anna live?", "Anna lives in Sunvale.", ""]
    s = score_answers(prompts, answers, {})
    assert s["gold"][0] == 1.0 and s["gold"][3] == -1.0
    assert (s["direct_rate"], s["answer_form"]) == (0.25, 0.5)  # right, question, wrong fact, empty
    assert (s["n_factual"], s["exact_match"]) == (3, pytest.approx(1 / 3))


def test_ignore_index_is_one_value_everywhere():
    from minillm.phases import losses
    from minillm.data import sft_batches as sft
    assert sft.IGNORE_INDEX == losses.IGNORE_INDEX == -100


# ----- multi-turn conversations -----------------------------------------------------------

ANNA = [{"role": "user", "content": "where does anna live?"},
        {"role": "assistant", "content": "anna lives in rivertown."},
        {"role": "user", "content": "what pet does she keep?"},
        {"role": "assistant", "content": "she has a cat."}]


def word_chat_tokenizer() -> WordTokenizer:
    tok = WordTokenizer.train("where does anna live? anna lives in rivertown. what pet does she keep? she has a cat.")
    chat.add_chat_tokens(tok)
    return tok


def test_conversation_mask_against_a_hand_built_example():
    tok = word_chat_tokenizer()
    user, assistant, end = chat.chat_token_ids(tok)
    w = lambda text: tok.encode(text)  # noqa: E731
    ids, mask = chat.encode_conversation(tok, ANNA)
    expected = ([user] + w("where does anna live?") + [assistant] + w("anna lives in rivertown.") + [end]
                + [user] + w("what pet does she keep?") + [assistant] + w("she has a cat.") + [end])
    assert ids == expected and ids == tok.encode(chat.format_conversation(ANNA))
    n1, n2, a1, a2 = (len(w(m["content"])) for m in (ANNA[0], ANNA[2], ANNA[1], ANNA[3]))
    assert mask == ([0] * (1 + n1) + [0] + [1] * (a1 + 1)        # <|user|> q1 <|assistant|> | a1 <|end|>
                    + [0] * (1 + n2) + [0] + [1] * (a2 + 1))     # <|user|> q2 <|assistant|> | a2 <|end|>
    assert [tok.decode([i]) for i, m in zip(ids, mask) if m] == (
        [tok.decode([i]) for i in w(ANNA[1]["content"])] + [chat.END] + [tok.decode([i]) for i in w(ANNA[3]["content"])]
        + [chat.END])
    prompt_ids, prompt_mask = chat.encode_conversation(tok, ANNA[:3], add_generation_prompt=True)
    assert prompt_ids == ids[:len(prompt_ids)] and prompt_ids[-1] == assistant and prompt_mask == mask[:len(prompt_ids)]
    assert chat.format_conversation(ANNA[:3], add_generation_prompt=True).endswith("<|user|>what pet does she keep?<|assistant|>")
    with pytest.raises(ValueError, match="ends with a user turn"):
        chat.encode_conversation(tok, ANNA, add_generation_prompt=True)


def test_a_system_turn_is_context_and_a_one_turn_conversation_is_the_single_turn_example():
    tok = word_chat_tokenizer()
    ids, mask = chat.encode_conversation(tok, [{"role": "system", "content": "anna"}, *ANNA[:2]])
    assert ids[:3] == [tok.special_tokens[chat.SYSTEM], *tok.encode("anna"), chat.chat_token_ids(tok)[2]]
    assert mask[:3] == [0, 0, 0] and ids[3:] == chat.encode_conversation(tok, ANNA[:2])[0]
    for block in (64, 12, 9):
        assert chat.encode_conversation(tok, ANNA[:2], max_tokens=block + 1) == \
            chat.encode_example(tok, ANNA[0]["content"], ANNA[1]["content"], block)


def test_loss_gradient_is_exactly_zero_at_user_turn_positions():
    tok = word_chat_tokenizer()
    ids, mask = chat.encode_conversation(tok, ANNA)
    model = tiny_model(tok.vocab_size)
    x, y = pad_batch([(ids, mask)], pad_id=0)
    logits = Tensor(model(x).data, requires_grad=True)  # (1, T, V), a leaf so its gradient is kept
    loss = sft_loss(logits, y)
    loss.backward()
    grad = numpy.abs(backend.to_numpy(logits.grad[0])).sum(axis=-1)  # (T,)
    # position t predicts ids[t + 1]: it counts exactly when ids[t + 1] is an assistant token or <|end|>
    counted = numpy.array(mask[1:], dtype=bool)
    assert (grad[~counted] == 0).all() and (grad[counted] > 0).all()
    user = chat.chat_token_ids(tok)[0]
    second_user = ids.index(user, 1)
    assert not counted[second_user - 1:second_user + len(tok.encode(ANNA[2]["content"])) + 1].any()
    per_sample = [cross_entropy(model([c])[0, -1:], [t]).item() for c, t in masked_samples(ids, mask)]
    assert loss.item() == pytest.approx(sum(per_sample) / len(per_sample), rel=1e-5)  # the slide's samples


def test_a_conversation_longer_than_the_block_keeps_whole_turns():
    tok = word_chat_tokenizer()
    three = ANNA + [{"role": "user", "content": "where does she live?"},
                    {"role": "assistant", "content": "she lives in rivertown."}]
    full, full_mask = chat.encode_conversation(tok, three)
    turns = [chat.encode_turn(tok, m)[0] for m in three]
    for max_tokens in range(len(turns[-2]) + len(turns[-1]), len(full) + 1):
        ids, mask = chat.encode_conversation(tok, three, max_tokens=max_tokens)
        assert len(ids) <= max_tokens and ids == full[len(full) - len(ids):] and mask == full_mask[len(full) - len(ids):]
        kept = len(ids)
        boundaries = [sum(len(t) for t in turns[i:]) for i in (0, 2, 4)]  # lengths of whole exchanges kept
        assert kept in boundaries and (kept == len(full) or boundaries[boundaries.index(kept) - 1] > max_tokens)
    with pytest.raises(ResponseTooLong):
        chat.encode_conversation(tok, three, max_tokens=len(turns[-1]))


def test_sft_trains_on_multi_turn_messages_files(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("where does anna live? anna lives in rivertown. what pet does she keep? she has a cat.\n" * 20)
    assert main(["pretrain", "--preset", "tiny", "--data", str(corpus), "--out", str(tmp_path / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    pairs, talks = tmp_path / "pairs.jsonl", tmp_path / "talks.jsonl"
    write_jsonl(pairs, [{"prompt": "where does anna live?", "response": "anna lives in rivertown."}])
    write_jsonl(talks, [{"messages": ANNA}, {"messages": ANNA[:2]}])
    out = tmp_path / "sft"
    assert main(["sft", "--init", str(tmp_path / "pt"), "--data", str(pairs), str(talks), "--val", str(talks),
                 "--test", str(pairs), "--out", str(out), "--max-steps", "2", "--batch-size", "2"]) == 0
    assert "data: 3 training examples" in capsys.readouterr().err
    tok = checkpoint.load(out).tokenizer
    from minillm.data.readers import read_demonstrations
    encoded = encode_demonstrations(tok, read_demonstrations(talks), block_size=200)
    assert encoded.examples[0] == chat.encode_conversation(tok, ANNA)  # every assistant turn counted
    assert sum(encoded.examples[0][1]) == sum(len(tok.encode(m["content"])) + 1 for m in ANNA[1::2])
