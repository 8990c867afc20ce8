"""Phase 3, reward model training: pair batches, one forward for both halves, metrics, the
margin histogram, reward-model checkpoints with exact resume, `minillm reward` and `minillm score`."""
import json

import numpy
import pytest

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.app.cli import main
from minillm.data.preference_batches import (
    EncodedPairs,
    PreferenceBatches,
    encode_pairs,
    encode_response,
    pad_rows,
)
from minillm.tokenizers.chat_template import ResponseTooLong
from minillm.model.gpt import GPT, GPTConfig
from minillm.engine.optim import AdamW
from minillm.model.reward_model import RewardModel
from minillm.tokenizers import CharTokenizer
from minillm.phases.trainer import read_log
from minillm.phases.reward import reward_loss, split_scores, validation_metrics
from tiny_runs import interrupted_at_call

CORPUS = ("where does anna live? anna lives in rivertown. what is two plus two? four. "
          "how do i get my dog high? i am not sure what you mean by that. no, you idiot.\n") * 20
PAIRS = [{"prompt": "where is anna?", "chosen": "in rivertown.", "rejected": "no, idiot."},
         {"prompt": "two plus two?", "chosen": "four.", "rejected": "what? two?"},
         {"prompt": "how do i get my dog high?", "chosen": "not sure what you mean.", "rejected": "no, you idiot."},
         {"prompt": "where is anna? " * 3, "chosen": "rivertown.", "rejected": "idiot."}]  # the last two: cut


def chat_tokenizer() -> CharTokenizer:
    tok = CharTokenizer.train(CORPUS, special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tok)
    return tok


def tiny_rm(vocab_size: int, block_size: int = 32, seed: int = 0) -> RewardModel:
    backend.manual_seed(seed)
    rm = RewardModel(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))
    rm.score_head.weight.data[...] = backend.get_rng().standard_normal(rm.score_head.weight.shape) * 0.5
    return rm


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ----- batching ------------------------------------------------------------------------

def test_a_response_is_encoded_by_the_sft_rule_within_the_block():
    tok = chat_tokenizer()
    user, assistant, end = chat.chat_token_ids(tok)
    ids = encode_response(tok, "where does anna live?", "rivertown.", block_size=16)
    assert len(ids) == 16 and ids[-1] == end and ids[0] == user   # the block holds 16, not 17
    assert ids == chat.encode_example(tok, "where does anna live?", "rivertown.", 15)[0]
    assert tok.decode(ids[1:-1]) == "ve?" + chat.ASSISTANT + "rivertown."  # the prompt lost its left
    with pytest.raises(ResponseTooLong):
        encode_response(tok, "where?", "anna lives in rivertown, where i live.", block_size=16)


def test_pairs_are_encoded_with_truncations_and_skips_counted():
    tok = chat_tokenizer()
    records = [*PAIRS, {"prompt": "who?", "chosen": "a", "rejected": "anna lives in rivertown. " * 3}]
    pairs = encode_pairs(tok, records, block_size=32)
    assert (len(pairs.chosen), pairs.skipped, pairs.truncated) == (4, 1, 2)  # 2: dog and the tripled prompt
    assert pairs.chosen[1] == encode_response(tok, PAIRS[1]["prompt"], "four.", 32)
    bad = [{"prompt": "where?", "chosen": "ANNA!", "rejected": "no."}]     # capitals: unknown to the tokenizer
    with pytest.raises(ValueError, match="pair 1 cannot be encoded.*--skip-bad"):
        encode_pairs(tok, bad, 32)
    assert encode_pairs(tok, bad, 32, skip_bad=True).bad_records == 1


def test_batches_stack_chosen_over_rejected_right_padded():
    ids, lengths = pad_rows([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    pairs = EncodedPairs(chosen=[[1, 2, 3], [4]], rejected=[[5], [6, 7]])
    batches = PreferenceBatches(pairs, pad_id=9)
    x, n = next(batches.sequential_batches(2))
    assert backend.to_numpy(x).tolist() == [[1, 2, 3], [4, 9, 9], [5, 9, 9], [6, 7, 9]]
    assert backend.to_numpy(n).tolist() == [3, 1, 1, 2]
    x, n = batches.rows(numpy.array([1]))          # columns past the batch's longest row are dropped
    assert backend.to_numpy(x).tolist() == [[4, 9], [6, 7]]
    x, n = batches.batch(5, backend.make_rng(0))
    assert x.shape[0] == n.shape[0] == 10
    with pytest.raises(ValueError, match="no preference pairs"):
        PreferenceBatches(EncodedPairs(), pad_id=0)


def test_one_batched_forward_equals_two_separate_forwards():
    tok = chat_tokenizer()
    rm = tiny_rm(tok.vocab_size)
    pairs = encode_pairs(tok, PAIRS, 32)
    ids, lengths = PreferenceBatches(pairs, pad_id=0).rows(numpy.arange(4))
    s_w, s_l = split_scores(rm(ids, lengths))
    alone_w = rm(*pad_rows(pairs.chosen, pad_id=3))      # other padding, other batch: same scores
    alone_l = rm(*pad_rows(pairs.rejected, pad_id=5))
    numpy.testing.assert_allclose(backend.to_numpy(s_w.data), backend.to_numpy(alone_w.data), rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(backend.to_numpy(s_l.data), backend.to_numpy(alone_l.data), rtol=1e-5, atol=1e-6)
    loss, tokens = reward_loss(rm, (ids, lengths))
    d = backend.to_numpy(s_w.data - s_l.data).astype(float)
    assert loss.item() == pytest.approx(numpy.mean(numpy.logaddexp(0, -d)), rel=1e-5)
    assert int(tokens) == sum(map(len, pairs.chosen + pairs.rejected))
    metrics = validation_metrics(rm, PreferenceBatches(pairs, 0), batch_size=3)
    assert metrics["val_accuracy"] == pytest.approx(numpy.mean(d > 0) + 0.5 * numpy.mean(d == 0))
    assert metrics["val_margin"] == pytest.approx(d.mean(), rel=1e-5, abs=1e-6)
    assert metrics["val_loss"] == pytest.approx(loss.item(), rel=1e-5)


# ----- checkpoints ---------------------------------------------------------------------

def test_a_reward_model_saves_and_loads_as_a_reward_model(tmp_path):
    tok = chat_tokenizer()
    rm = tiny_rm(tok.vocab_size)
    checkpoint.save(rm, tmp_path / "rm", tokenizer=tok)
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["model_kind"] == "reward_model"
    loaded = checkpoint.load(tmp_path / "rm")
    assert isinstance(loaded.model, RewardModel) and loaded.model_kind == "reward_model"
    names = [name for name, _ in loaded.model.named_parameters()]
    assert names[0] == "transformer.wte.weight" and names[-2:] == ["score_head.weight", "score_head.bias"]
    ids, lengths = pad_rows(encode_pairs(tok, PAIRS, 32).chosen, pad_id=0)
    numpy.testing.assert_array_equal(backend.to_numpy(rm(ids, lengths).data),
                                     backend.to_numpy(loaded.model(ids, lengths).data))
    checkpoint.save(GPT(rm.config), tmp_path / "gpt")
    assert json.loads((tmp_path / "gpt" / "config.json").read_text())["model_kind"] == "gpt"
    assert type(checkpoint.load(tmp_path / "gpt").model) is GPT


def test_a_checkpoint_without_model_kind_is_a_gpt_and_an_unknown_kind_is_refused(tmp_path):
    checkpoint.save(GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)), tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    del data["model_kind"]  # as written before reward models existed
    path.write_text(json.dumps(data))
    assert type(checkpoint.load(tmp_path).model) is GPT
    path.write_text(json.dumps({**data, "model_kind": "value_head"}))
    with pytest.raises(checkpoint.CheckpointError, match="model_kind 'value_head' is unknown"):
        checkpoint.load(tmp_path)


def test_reward_model_optimizer_state_resumes_bit_for_bit(tmp_path):
    tok = chat_tokenizer()
    batches = PreferenceBatches(encode_pairs(tok, PAIRS, 32), pad_id=0)

    def steps(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            reward_loss(model, batches.batch(2))[0].backward()
            opt.step()

    straight = tiny_rm(tok.vocab_size)
    opt = AdamW(straight.parameters(), lr=1e-2)
    backend.manual_seed(1)
    steps(straight, opt, 6)
    half = tiny_rm(tok.vocab_size)
    opt = AdamW(half.parameters(), lr=1e-2)
    backend.manual_seed(1)
    steps(half, opt, 3)
    checkpoint.save(half, tmp_path / "ckpt", optimizer=opt, step=3)
    fresh = AdamW(RewardModel(half.config).parameters(), lr=1e-2)
    resumed = checkpoint.load(tmp_path / "ckpt", optimizer=fresh)
    steps(resumed.model, fresh, 3)
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.model.named_parameters()):
        numpy.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data), err_msg=name)


# ----- the commands on tiny runs -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_pretrain(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    assert main(["pretrain", "--preset", "tiny", "--data", str(root / "corpus.txt"), "--out", str(root / "pt"),
                 "--max-steps", "2", "--quiet"]) == 0
    write_jsonl(root / "pairs.jsonl", PAIRS)
    return root


def reward_args(root, out, *extra):
    pairs = str(root / "pairs.jsonl")
    return ["reward", "--init", str(root / "pt"), "--data", pairs, "--val", pairs, "--prompts", pairs,
            "--out", str(out), "--batch-size", "2", "--lr", "1e-2", "--quiet", *extra]


def test_reward_command_trains_reports_and_scores(tiny_pretrain, capsys):
    out = tiny_pretrain / "rm"
    assert main(reward_args(tiny_pretrain, out, "--max-steps", "6")) == 0
    for name in ("margins.png", "loss.png", "report.md", "report.json", "log.jsonl", "checkpoint/config.json"):
        assert (out / name).exists(), name
    evals = [r for r in read_log(out / "log.jsonl") if r["kind"] == "eval"]
    assert evals and {"val_loss", "val_accuracy", "val_margin"} <= set(evals[-1])
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["baseline"]["val_loss"] == pytest.approx(numpy.log(2), rel=1e-6)  # zero head
    assert report["summary"]["truncated"] == 2 and report["agreement"]["pairs"] + report["agreement"]["gold_ties"] == 4
    assert 0 <= report["summary"]["rm_gold_agreement"] <= 1
    capsys.readouterr()
    responses = ["in rivertown.", "no, you idiot.", "four."]
    assert main(["score", "--rm", str(out), "--prompt", "where is anna?",
                 *[a for r in responses for a in ("--response", r)]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(". ", 1)[0] for line in lines] == ["1", "2", "3"]
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True) and sorted(line.split("  ", 1)[1] for line in lines) == sorted(responses)
    assert main(["score", "--rm", str(out), "--prompt", "where?", "--response", "four."]) == 0
    float(capsys.readouterr().out)  # one response: just its score
    assert main(["score", "--rm", str(tiny_pretrain / "pt"), "--prompt", "who", "--response", "a"]) == 2
    assert "not a reward model" in capsys.readouterr().err


def test_reward_run_resumes_exactly(tiny_pretrain):
    straight, resumed = tiny_pretrain / "straight", tiny_pretrain / "resumed"
    settings = ("--max-steps", "6", "--checkpoint-interval", "2", "--eval-interval", "2", "--agreement-prompts", "1")
    assert main(reward_args(tiny_pretrain, straight, *settings)) == 0
    with interrupted_at_call(PreferenceBatches, "batch", 4):  # step 4 never finishes; the last checkpoint is step 2
        assert main(reward_args(tiny_pretrain, resumed, *settings)) == 130
    assert checkpoint.load(resumed).step == 2
    assert main(reward_args(tiny_pretrain, resumed, *settings, "--resume")) == 0
    a, b = checkpoint.load(straight), checkpoint.load(resumed)
    assert isinstance(b.model, RewardModel) and b.step == 6
    for (name, x), (_, y) in zip(a.model.named_parameters(), b.model.named_parameters()):
        numpy.testing.assert_array_equal(backend.to_numpy(x.data), backend.to_numpy(y.data), err_msg=name)
    drop_time = lambda log: [{k: v for k, v in r.items() if k not in ("elapsed", "tokens_per_s")} for r in log]  # noqa: E731
    assert drop_time(read_log(straight / "log.jsonl")) == drop_time(read_log(resumed / "log.jsonl"))


def test_on_policy_pairs_are_labelled_by_gold_and_added(tiny_pretrain, monkeypatch):
    from minillm.phases import common, reward
    answers = {"polite": "in rivertown.", "rude": "no, you idiot."}
    monkeypatch.setattr(common, "sample_responses",
                        lambda model, tok, prompts, n=2, **kw: [[answers["rude"], answers["polite"]] for _ in prompts])
    pairs = str(tiny_pretrain / "pairs.jsonl")
    run = reward.RewardRun(init=str(tiny_pretrain / "pt"), out=str(tiny_pretrain / "rm_op2"), data=pairs, val=pairs,
                           prompts=pairs, on_policy_prompts=3, on_policy_source=pairs, agreement_prompts=1,
                           overrides={"max_steps": 2, "batch_size": 2}, quiet=True)
    from minillm.io import checkpoint
    from minillm.tokenizers import chat_template as chat
    init = checkpoint.load(run.init)
    chat.add_chat_tokens(init.tokenizer, init.model)
    prompts = run._read_prompts(pairs, run.on_policy_prompts)
    made = run._on_policy_pairs(init.model, init.tokenizer, prompts, seed=0)
    assert len(made) == 3 and all(p["chosen"] == answers["polite"] and p["rejected"] == answers["rude"] for p in made)
    summary = run.run()
    base = reward.RewardRun(init=run.init, out=str(tiny_pretrain / "rm_op3"), data=pairs, val=pairs, prompts=pairs,
                            agreement_prompts=1, overrides={"max_steps": 2, "batch_size": 2}, quiet=True).run()
    assert summary["train_pairs"] == base["train_pairs"] + 3
