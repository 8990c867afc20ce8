"""Tokenizers in Hugging Face files: transformers' AutoTokenizer on an export gives minillm's ids
and text back, and GPT-2's files and `tokenizers`' own files read into minillm.

The tests that load files with transformers or tokenizers skip when those are not installed
(`pip install -e ".[hf]"`); the byte alphabet, the written-out split pattern and the round
trip through minillm's own reader run everywhere.
"""
import json
import pathlib

import pytest
import regex
from hypothesis import HealthCheck, given, settings, strategies as st

from minillm.tokenizers import chat_template as chat
from minillm.io import checkpoint
from minillm.io.hf_dir import export_run
from minillm.model.gpt import GPT, GPTConfig
from minillm.tokenizers import GPT2_PATTERN, BPETokenizer, CharTokenizer, WordTokenizer
from minillm.tokenizers.hf_format import (byte_text, bytes_to_unicode, explicit_pattern, read_gpt2_files,
                                          read_tokenizer_json, text_bytes, to_tokenizer_json)

REPO = pathlib.Path(__file__).resolve().parent.parent
CORPUS = (REPO / "data" / "pretrain" / "train.txt").read_text(encoding="utf-8")[:60_000]
SPECIALS = ["<|endoftext|>", *chat.CHAT_TOKENS, chat.SYSTEM]
# Lines in the manner of Tiny Shakespeare, written for these tests (the corpus itself is not
# shipped): speaker names, contractions GPT-2's pattern splits off, verse, blank lines.
SHAKESPEARE_LIKE = """FIRST WATCHMAN:
What news upon the wall? The night is cold,
And every torch doth gutter in the wind.

LADY CONSTANCE:
Speak softly, sirrah; thou'rt not yet forgiven.
'Tis late, 'tis late! and yet the lark's abed,
And I'll not sleep till thou hast told me all.

DROMIO:
Marry, sir, I've seen him -- ay, and heard him too --
Cry 'Havoc!' at the gate, and then run home.
""".splitlines()
SHARED_SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
UNICODE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # Cs: lone surrogates


def texts_with(specials):
    """Arbitrary Unicode with special tokens mixed in, e.g. 'é😀<|user|>\\n x<|end|>'."""
    return st.lists(st.one_of(UNICODE_TEXT, st.sampled_from(specials)), max_size=6).map("".join)


def chat_bpe() -> BPETokenizer:
    tokenizer = BPETokenizer.train(CORPUS, 600, special_tokens=["<|endoftext|>"])
    chat.add_chat_tokens(tokenizer)  # <|user|>, <|assistant|>, <|end|>, <|system|>
    return tokenizer


def export_tokenizer(tokenizer, directory: pathlib.Path, chat_model=True) -> pathlib.Path:
    """Export a tiny run holding `tokenizer` (the model only gives the files their shape)."""
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8))
    meta = {"chat_template": chat.TEMPLATE_NAME} if chat_model else {}
    checkpoint.save(model, directory / "run" / "checkpoint", tokenizer, meta=meta)
    return export_run(directory / "run", directory / "hf")


@pytest.fixture(scope="module")
def bpe():
    return chat_bpe()


@pytest.fixture(scope="module")
def hf_bpe(bpe, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(export_tokenizer(bpe, tmp_path_factory.mktemp("bpe")))


def assert_same_ids_and_text(tokenizer, hf_tokenizer, texts):
    for text in texts:
        ids = tokenizer.encode(text)
        assert hf_tokenizer.encode(text) == ids, text
        assert hf_tokenizer.decode(ids) == tokenizer.decode(ids) == text, text


# ----- no extra packages needed ------------------------------------------------------------------

def test_byte_alphabet_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256 and all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert (table[ord(" ")], table[ord("\n")], table[ord("!")], table[0]) == ("Ġ", "Ċ", "!", "Ā")
    assert byte_text(b" the") == "Ġthe" and text_bytes("Ġthe", "test") == b" the"
    assert text_bytes(byte_text(bytes(range(256))), "test") == bytes(range(256))
    with pytest.raises(ValueError, match="not a character of GPT-2's byte alphabet"):
        text_bytes(" the", "vocab.json")


@settings(max_examples=300, deadline=None)
@given(text=UNICODE_TEXT)
def test_the_written_out_pattern_cuts_text_as_gpt2s(text):
    assert regex.findall(explicit_pattern(GPT2_PATTERN), text) == regex.findall(GPT2_PATTERN, text)


def test_a_negated_class_inside_brackets_is_refused():
    digits, spaces = explicit_pattern(r"\d")[1:-1], explicit_pattern(r"\s")[1:-1]
    assert explicit_pattern(r"\d+|[a\s]") == f"[{digits}]+|[a{spaces}]"
    with pytest.raises(ValueError, match=r"holds \\S inside \[...\]"):
        explicit_pattern(r"[^\S\n]+")


@pytest.mark.parametrize("make", [chat_bpe, lambda: CharTokenizer.train(CORPUS, SPECIALS, unk_token="<unk>")])
def test_minillm_reads_back_what_it_writes(tmp_path, make):
    tokenizer = make()
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(to_tokenizer_json(tokenizer)), encoding="utf-8")
    again, file_ids = read_tokenizer_json(path)
    assert file_ids == list(range(tokenizer.vocab_size))
    tokenizer.save(tmp_path / "a.json")
    again.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_two_tokens_with_the_same_bytes_are_refused():
    tokenizer = BPETokenizer([(b"a", b"b"), (b"ab", b"c"), (b"b", b"c"), (b"a", b"bc")])  # 257 and 259: "abc"
    with pytest.raises(ValueError, match="tokens 257 and 259 are both b'abc'; tokenizer.json holds one id"):
        to_tokenizer_json(tokenizer)


def test_a_word_tokenizer_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="no `tokenizers` decoder puts a space between two words only"):
        to_tokenizer_json(WordTokenizer.train(CORPUS))


def gpt2_files(tokenizer: BPETokenizer, directory: pathlib.Path) -> pathlib.Path:
    """vocab.json and merges.txt as GPT-2 writes them: bytes numbered in its alphabet's order."""
    table = bytes_to_unicode()
    vocab = {ch: i for i, ch in enumerate(table.values())}
    vocab.update((byte_text(a + b), 256 + i) for i, (a, b) in enumerate(tokenizer.merges))
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = "".join(f"{byte_text(a)} {byte_text(b)}\n" for a, b in tokenizer.merges)
    (directory / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    return directory


def test_gpt2_files_give_the_same_pieces_with_gpt2s_byte_ids(tmp_path):
    original = BPETokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])
    gpt2_files(original, tmp_path)
    tokenizer = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    _, file_ids = read_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tokenizer.merges == original.merges and tokenizer.special_tokens == original.special_tokens
    assert file_ids[:3] == [188, 189, 190] and file_ids[33] == 0  # GPT-2: "!" (byte 33) is id 0, byte 0 id 188
    assert file_ids[256:] == list(range(256, original.vocab_size))  # merged tokens keep their ids


# ----- transformers' AutoTokenizer on an export ------------------------------------------------

def test_shipped_sft_prompts_and_responses_encode_alike(bpe, hf_bpe):
    pairs = [json.loads(line) for name in ("train", "validation", "test")
             for line in (REPO / "data" / "sft" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert_same_ids_and_text(bpe, hf_bpe, [p["prompt"] for p in pairs] + [p["response"] for p in pairs[:500]])


def test_shakespeare_lines_encode_alike(bpe, hf_bpe):
    assert_same_ids_and_text(bpe, hf_bpe, SHAKESPEARE_LIKE + ["\n".join(SHAKESPEARE_LIKE)])


@pytest.mark.skipif(not SHARED_SHAKESPEARE.exists(), reason="Tiny Shakespeare lies in ../shared only on the project's machines")
def test_tiny_shakespeare_encodes_alike(bpe, hf_bpe):
    lines = SHARED_SHAKESPEARE.read_text(encoding="utf-8").splitlines()[:3000]
    assert_same_ids_and_text(bpe, hf_bpe, lines + ["\n".join(lines[:200])])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts_with(SPECIALS))
def test_arbitrary_unicode_and_special_tokens_encode_alike(bpe, hf_bpe, text):
    assert_same_ids_and_text(bpe, hf_bpe, [text])


@pytest.fixture(scope="module")
def chars(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    tokenizer = CharTokenizer.train(CORPUS, ["<|endoftext|>"], unk_token="<unk>")
    chat.add_chat_tokens(tokenizer)
    hf = transformers.AutoTokenizer.from_pretrained(export_tokenizer(tokenizer, tmp_path_factory.mktemp("char")))
    return tokenizer, hf


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_character_tokenizer_exports_exactly(chars, data):
    tokenizer, hf = chars
    specials = [t for t in tokenizer.special_tokens if t != "<unk>"]
    text = data.draw(st.lists(st.one_of(st.text(st.sampled_from(tokenizer.chars), max_size=30),
                                        st.sampled_from(specials)), max_size=6).map("".join))
    assert_same_ids_and_text(tokenizer, hf, [text])
    unknown = "Zebra ☃ 🦊"  # characters the corpus lacks become <unk>, one per character, in both
    assert hf.encode(unknown) == tokenizer.encode(unknown) and "<unk>" in tokenizer.tokens(unknown)


def test_special_tokens_have_their_roles(hf_bpe):
    assert (hf_bpe.eos_token, hf_bpe.pad_token, hf_bpe.bos_token) == ("<|end|>", "<|endoftext|>", None)
    assert hf_bpe.encode("hi") == hf_bpe("hi")["input_ids"]  # nothing is added around the text
    assert hf_bpe.decode(hf_bpe.encode("<|user|>hi<|end|>"), skip_special_tokens=True) == "hi"


# ----- the chat template ----------------------------------------------------------------------------

def hf_chat_ids(hf_tokenizer, messages, add_generation_prompt=False) -> list[int]:
    return list(hf_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False,
                                                 add_generation_prompt=add_generation_prompt))


def test_one_turn_is_minillms_template(bpe, hf_bpe):
    prompt, response = "Where does Anna live?", "Anna lives in Sunvale."
    user = [{"role": "user", "content": prompt}]
    assert hf_bpe.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == chat.format_prompt(prompt)
    assert hf_chat_ids(hf_bpe, user, add_generation_prompt=True) == chat.encode_prompt(bpe, prompt)
    ids, _ = chat.encode_example(bpe, prompt, response, block_size=64)
    assert hf_chat_ids(hf_bpe, user + [{"role": "assistant", "content": response}]) == ids


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_multi_turn_conversations_encode_turn_by_turn(bpe, hf_bpe, generation_prompt):
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is 3 times 4?"},
                {"role": "assistant", "content": "12."},
                {"role": "user", "content": "And 9 minus 6?"}]
    for conversation in (messages, messages[1:], messages[:2]):
        expected, _ = chat.encode_conversation(bpe, conversation, add_generation_prompt=generation_prompt)
        assert hf_chat_ids(hf_bpe, conversation, generation_prompt) == expected
    text = hf_bpe.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    assert text == ("<|system|>Answer briefly.<|end|><|user|>What is 3 times 4?<|assistant|>12.<|end|>"
                    "<|user|>And 9 minus 6?" + ("<|assistant|>" if generation_prompt else ""))


def test_a_role_outside_the_layout_is_refused(hf_bpe):
    with pytest.raises(Exception, match="minillm chat turns are system .first only., user and assistant, not tool"):
        hf_bpe.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}],
                                   tokenize=False)


# ----- files written by others ----------------------------------------------------------------------

def test_gpt2_files_cut_text_as_transformers_gpt2_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    gpt2_files(BPETokenizer.train(CORPUS, 400), tmp_path)
    hf = transformers.GPT2Tokenizer.from_pretrained(tmp_path)
    tokenizer, file_ids = read_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    for text in SHAKESPEARE_LIKE + ["Where does Anna live?<|endoftext|> café 3.14"]:
        assert [file_ids[i] for i in tokenizer.encode(text)] == hf.encode(text), text


def test_a_tokenizers_library_bpe_reads_with_its_pieces(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator([CORPUS], trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf.save(str(tmp_path / "tokenizer.json"))
    tokenizer = BPETokenizer.from_hf_tokenizer_json(tmp_path / "tokenizer.json")
    _, file_ids = read_tokenizer_json(tmp_path / "tokenizer.json")
    assert tokenizer.pattern == GPT2_PATTERN and tokenizer.special_tokens == {"<|endoftext|>": tokenizer.vocab_size - 1}
    for text in SHAKESPEARE_LIKE + [CORPUS[:2000], "<|endoftext|>naïve café"]:
        assert [file_ids[i] for i in tokenizer.encode(text)] == hf.encode(text).ids, text


@pytest.mark.parametrize("change, message", [
    ({"model": {"type": "WordPiece", "vocab": {}}}, "the model is 'WordPiece'; minillm reads byte-level BPE"),
    ({"normalizer": {"type": "NFC"}}, r"a normalizer \(NFC\) changes text before tokenizing"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, r"pre-tokenizer \['Whitespace'\] with decoder 'ByteLevel' is not"),
])
def test_other_tokenizers_are_refused_clearly(tmp_path, change, message):
    data = {**to_tokenizer_json(BPETokenizer.train(CORPUS[:2000], 270)), **change}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_tokenizer_json(tmp_path / "tokenizer.json")


def test_a_vocabulary_without_every_byte_is_refused(tmp_path):
    data = to_tokenizer_json(BPETokenizer.train(CORPUS[:2000], 270))
    del data["model"]["vocab"][byte_text(b"\x00")]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lacks 1 of the 256 byte tokens"):
        read_tokenizer_json(tmp_path / "tokenizer.json")


def test_letters_newer_than_the_regex_engines_tables_encode_alike(bpe, hf_bpe):
    # U+0558 and U+10940..U+10945 became letters in recent Unicode versions: the `regex`
    # module knows them, Oniguruma's older tables may not, so only the written-out pattern agrees.
    assert_same_ids_and_text(bpe, hf_bpe, ["a\u0558b \u0558\u0558 x", "1\U00010940\U00010945 2", "\U00010940 x"])
