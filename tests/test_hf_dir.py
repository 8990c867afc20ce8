"""`minillm export` and `minillm import-hf`: transformers loads an exported run and agrees with
minillm on ids, logits (within 1e-4) and greedy text; an export imports back unchanged; GPT-2's
own layout imports with its embedding rows in minillm's order.

Tests that need transformers (and torch) skip without them (`pip install -e ".[hf]"`).
"""
import dataclasses
import importlib.util
import json
import pathlib
import sys

import numpy
import pytest
from safetensors.numpy import load_file, save_file

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.app import cli
from minillm.phases import presets
from minillm.io.safe_files import CheckpointError
from minillm.io.hf_dir import export_run, import_hf
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.reward_model import RewardModel
from minillm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from minillm.tokenizers.hf_format import byte_text, bytes_to_unicode

REPO = pathlib.Path(__file__).resolve().parent.parent
CORPUS = (REPO / "data" / "pretrain" / "train.txt").read_text(encoding="utf-8")[:60_000]
SFT_TEXT = "".join((REPO / "data" / "sft" / f"{name}.jsonl").read_text(encoding="utf-8") for name in ("train", "validation", "test"))
PROMPTS = ["Where does Anna live?", "What is 3 times 4?", "How to make pasta", "Tell me about Sunvale.",
           "What is Rosa's favourite food? 😀"]


def agreement_script():
    """benchmarks/hf_agreement.py, the check docs/huggingface.md gives for a classroom run."""
    spec = importlib.util.spec_from_file_location("hf_agreement", REPO / "benchmarks" / "hf_agreement.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def chat_run(directory: pathlib.Path, tie_weights=True) -> pathlib.Path:
    """A tiny byte-level BPE chat model with every parameter random (biases and LayerNorms too)."""
    tokenizer = BPETokenizer.train(CORPUS, 500, special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tokenizer)
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32,
                          tie_weights=tie_weights))
    rng = numpy.random.default_rng(1)
    for _, p in model.named_parameters():
        p.data[...] = backend.asarray(rng.standard_normal(p.shape) * 0.3, p.dtype)
    checkpoint.save(model, directory / "checkpoint", tokenizer, meta={"phase": "sft", "chat_template": chat.TEMPLATE_NAME})
    return directory


def weights(run) -> dict:
    return {name: backend.to_numpy(a) for name, a in checkpoint.load(run).model.state_dict().items()}


# ----- without transformers ---------------------------------------------------------------------

def test_export_writes_every_file_transformers_reads(tmp_path):
    out = export_run(chat_run(tmp_path / "run"), tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    tokenizer = checkpoint.load(tmp_path / "run").tokenizer
    end_of_text, end = tokenizer.special_tokens["<|endoftext|>"], tokenizer.special_tokens[chat.END]
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation == {"eos_token_id": [end_of_text, end], "pad_token_id": end_of_text}
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["chat_template"] == chat.HF_CHAT_TEMPLATE and config["eos_token"] == chat.END


@pytest.mark.parametrize("tie_weights", [True, False])
def test_export_then_import_gives_the_same_run(tmp_path, tie_weights, capsys):
    run = chat_run(tmp_path / "run", tie_weights)
    export_run(run, tmp_path / "hf")
    back = import_hf(tmp_path / "hf", tmp_path / "back")
    before, after = weights(run), weights(back)
    assert before.keys() == after.keys() and all(numpy.array_equal(before[k], after[k]) for k in before)
    checkpoint.load(run).tokenizer.save(tmp_path / "a.json")
    checkpoint.load(back).tokenizer.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert checkpoint.load(back).meta["chat_template"] == chat.TEMPLATE_NAME
    for prompt in PROMPTS:
        texts = []
        for ckpt in (run, back):
            cli.main(["generate", "--ckpt", str(ckpt), "--prompt", prompt, "--temperature", "0",
                      "--max-new-tokens", "20"])
            texts.append(capsys.readouterr().out)
        assert texts[0] == texts[1] and len(texts[0]) > len(chat.format_prompt(prompt)) + 1


def test_the_commands_export_and_import(tmp_path, capsys):
    run = chat_run(tmp_path / "run")
    assert cli.main(["export", str(run), str(tmp_path / "hf")]) == 0
    assert cli.main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "back")]) == 0
    printed = capsys.readouterr().out
    assert "AutoModelForCausalLM.from_pretrained" in printed and "minillm generate --ckpt" in printed
    assert cli.main(["generate", "--ckpt", str(tmp_path / "back"), "--prompt", "Hi", "--temperature", "0",
                     "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("<|user|>Hi<|assistant|>")


def test_an_imported_character_model_trains_on_with_minillm_sft(tmp_path):
    tokenizer = CharTokenizer.train(CORPUS + SFT_TEXT, ["<|endoftext|>"])
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16))
    checkpoint.save(model, tmp_path / "pretrain" / "checkpoint", tokenizer, meta={"phase": "pretrain"})
    export_run(tmp_path / "pretrain", tmp_path / "hf")
    back = import_hf(tmp_path / "hf", tmp_path / "back")
    assert checkpoint.load(back).tokenizer.chars == tokenizer.chars
    assert cli.main(["sft", "--init", str(back), "--out", str(tmp_path / "sft"), "--max-steps", "2",
                     "--eval-prompts", "2", "--quiet"]) == 0
    assert chat.uses_chat_template(checkpoint.load(tmp_path / "sft").meta)


def reward_run(directory: pathlib.Path, bias: float = 0.7) -> pathlib.Path:
    """A tiny reward model on a chat BPE with every parameter random, its head's bias `bias`."""
    tokenizer = BPETokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tokenizer)
    backend.manual_seed(0)
    rm = RewardModel(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=32))
    rng = numpy.random.default_rng(2)
    for _, p in rm.named_parameters():
        p.data[...] = backend.asarray(rng.standard_normal(p.shape) * 0.3, p.dtype)
    rm.score_head.bias.data[...] = bias
    checkpoint.save(rm, directory / "checkpoint", tokenizer, meta={"phase": "reward", "chat_template": chat.TEMPLATE_NAME})
    return directory


def test_a_reward_model_exports_as_a_sequence_classifier_with_the_same_scores(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    run = reward_run(tmp_path / "rm")
    hf_dir = export_run(run, tmp_path / "hf")
    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()
    ckpt = checkpoint.load(run)
    pairs = [("Where does Anna live?", "Anna lives in Sunvale."), ("Add 2 and 3.", "I'm not sure, but 5.")]
    rows = [chat.encode_example(ckpt.tokenizer, p, r, 48)[0] for p, r in pairs]
    pad = ckpt.tokenizer.special_tokens["<|endoftext|>"]
    width = max(len(r) for r in rows)
    batch = [r + [pad] * (width - len(r)) for r in rows]  # (B, T), right-padded
    ours = backend.to_numpy(ckpt.model(backend.asarray(batch), [len(r) for r in rows]).data)  # (B,)
    with torch.no_grad():
        theirs = classifier(torch.tensor(batch)).logits[:, 0].numpy()  # (B, 1) -> (B,)
    assert numpy.abs(ours - theirs).max() <= 1e-4 and abs(ours[0] - ours[1]) > 1e-3
    with pytest.raises(CheckpointError, match="GPT2ForSequenceClassification .a reward model.; minillm imports"):
        import_hf(hf_dir, tmp_path / "back")


def test_a_constant_reward_model_and_a_word_tokenizer_are_refused_in_one_sentence(tmp_path, capsys):
    run = reward_run(tmp_path / "rm")
    ckpt = checkpoint.load(run)
    ckpt.model.score_head.weight.data[...] = 0
    checkpoint.save(ckpt.model, run / "checkpoint", ckpt.tokenizer, meta=ckpt.meta)
    assert cli.main(["export", str(run), str(tmp_path / "out")]) == 2
    assert "score head has weight 0 and bias 0.7" in capsys.readouterr().err
    words = WordTokenizer.train(CORPUS[:3000])
    checkpoint.save(GPT(GPTConfig(vocab_size=words.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)),
                    tmp_path / "word", words)
    assert cli.main(["export", str(tmp_path / "word"), str(tmp_path / "out")]) == 2
    assert "a WordTokenizer cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def gpt2_layout(hf_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Rewrite an export the way OpenAI's GPT-2 files number tokens: vocab.json and merges.txt
    with the 256 bytes in GPT-2's alphabet order, and the embedding rows moved to match."""
    tokenizer = BPETokenizer.from_hf_tokenizer_json(hf_dir / "tokenizer.json")
    out.mkdir()
    gpt2_order = list(bytes_to_unicode())  # file id j holds byte gpt2_order[j]
    vocab = {bytes_to_unicode()[b]: j for j, b in enumerate(gpt2_order)}
    vocab.update((byte_text(a + b), 256 + i) for i, (a, b) in enumerate(tokenizer.merges))
    vocab.update(tokenizer.special_tokens)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = "".join(f"{byte_text(a)} {byte_text(b)}\n" for a, b in tokenizer.merges)
    (out / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    tensors = load_file(str(hf_dir / "model.safetensors"))
    rows = gpt2_order + list(range(256, tokenizer.vocab_size))  # file row j = minillm row rows[j]
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"][rows]
    if "lm_head.weight" in tensors:
        tensors["lm_head.weight"] = tensors["lm_head.weight"][rows]
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text((hf_dir / "config.json").read_text())
    return out


@pytest.mark.parametrize("tie_weights", [True, False])
def test_gpt2s_own_layout_imports_with_its_rows_reordered(tmp_path, tie_weights):
    run = chat_run(tmp_path / "run", tie_weights)
    gpt2 = gpt2_layout(export_run(run, tmp_path / "hf"), tmp_path / "gpt2")
    back = import_hf(gpt2, tmp_path / "back")
    before, after = weights(run), weights(back)
    assert all(numpy.array_equal(before[k], after[k]) for k in before)  # the same rows for the same tokens
    assert "chat_template" not in checkpoint.load(back).meta  # GPT-2's files carry no template


# ----- against transformers ---------------------------------------------------------------------

@pytest.mark.parametrize("tie_weights", [True, False])
def test_transformers_gives_minillms_ids_logits_and_greedy_text(tmp_path, tie_weights):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    results = agreement_script().check(chat_run(tmp_path / "run", tie_weights), PROMPTS, max_new_tokens=30)
    for r in results:
        assert r.same_ids and r.max_logit_diff <= 1e-4 and r.minillm_text == r.transformers_text, r
    assert any(len(r.minillm_text) > len(chat.format_prompt(r.prompt)) + 1 for r in results)  # text was generated


def test_gpt2s_layout_gives_transformers_logits_after_import(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gpt2 = gpt2_layout(export_run(chat_run(tmp_path / "run"), tmp_path / "hf"), tmp_path / "gpt2")
    hf_tokenizer = transformers.GPT2Tokenizer.from_pretrained(gpt2)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(gpt2).eval()
    ckpt = checkpoint.load(import_hf(gpt2, tmp_path / "back"))
    for text in PROMPTS:
        ids = ckpt.tokenizer.encode(text)
        hf_ids = hf_tokenizer.encode(text)
        assert hf_tokenizer.convert_ids_to_tokens(hf_ids) == [byte_text(ckpt.tokenizer.vocab[i]) for i in ids]
        with torch.no_grad():
            theirs = hf_model(torch.tensor([hf_ids])).logits.numpy()  # (1, T, V) in GPT-2's numbering
        ours = backend.to_numpy(ckpt.model(backend.asarray([ids])).data)  # (1, T, V) in minillm's
        rows = list(bytes_to_unicode()) + list(range(256, ckpt.tokenizer.vocab_size))  # GPT-2 id j = minillm rows[j]
        assert [rows[j] for j in hf_ids] == ids
        assert numpy.abs(ours[..., rows] - theirs).max() <= 1e-4


def test_a_directory_saved_again_by_transformers_imports_as_the_same_chat_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    run = chat_run(tmp_path / "run")
    exported = export_run(run, tmp_path / "hf")
    transformers.AutoTokenizer.from_pretrained(exported).save_pretrained(tmp_path / "saved")
    transformers.AutoModelForCausalLM.from_pretrained(exported).save_pretrained(tmp_path / "saved")
    back = checkpoint.load(import_hf(tmp_path / "saved", tmp_path / "back"))
    assert back.meta["chat_template"] == chat.TEMPLATE_NAME
    original = checkpoint.load(run)
    assert back.tokenizer.special_tokens == original.tokenizer.special_tokens
    assert back.tokenizer.merges == original.tokenizer.merges
    before, after = weights(run), weights(tmp_path / "back")
    assert all(numpy.array_equal(before[k], after[k]) for k in before)


@pytest.fixture(scope="module")
def bpe_pipeline(tmp_path_factory):
    """A quick pipeline run with the classroom preset's kind of tokenizer (byte-level BPE)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("pipeline") / "run"
    patch = pytest.MonkeyPatch()
    patch.setitem(presets.PRESETS, "quick", dataclasses.replace(presets.PRESETS["quick"], tokenizer="bpe:400"))
    try:
        assert cli.main(["pipeline", "--preset", "quick", "--out", str(out), "--quiet"]) == 0
    finally:
        patch.undo()
    return out


@pytest.mark.slow
def test_a_pipelines_rlhf_model_generates_the_same_text_under_transformers(bpe_pipeline):
    prompts = agreement_script().read_prompts(str(REPO / "data" / "sft" / "test.jsonl"), 12)
    results = agreement_script().check(bpe_pipeline / "rlhf", prompts, max_new_tokens=40)
    assert checkpoint.load(bpe_pipeline / "rlhf").tokenizer.kind == "bpe"
    assert [r for r in results if not r.agrees] == []
