"""Tests for minillm.tokenizers: round trips, hand-computed merges, files, and bad input."""
from __future__ import annotations

import functools
import json
import random


import pytest
from hypothesis import given, settings, strategies as st

import minillm.tokenizers as tokenizers
from minillm.tokenizers import (BPETokenizer, CharTokenizer, WordTokenizer, get_pair_counts,
                                merge_pair)
from minillm.tokenizers.base import read_file_chunks
from minillm.tokenizers.bpe_train import (GPT2_PATTERN, count_words, train_merges,
                                          train_merges_naive)

ENGLISH = (
    "The nation took action on education. Attention to the station grew, and the relation "
    "between motion and emotion became a question for the population. An apple a day keeps "
    "the doctor away, said the tradition; the information was a revelation to the nation. "
    "Don't panic: the creation of a solution needs patience, caution and imagination!\n"
) * 3
SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]


@pytest.fixture(scope="module")
def trained():
    """One tokenizer of each kind, trained on ENGLISH."""
    return {
        "char": CharTokenizer.train(ENGLISH),
        "word": WordTokenizer.train(ENGLISH),
        "bpe": BPETokenizer.train(ENGLISH, vocab_size=350, special_tokens=["<|endoftext|>"]),
    }


# ----- round trips -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
@pytest.mark.parametrize("text", [ENGLISH, "", "the apple", "Don't panic: the nation!\n"])
def test_round_trip_on_the_domain(trained, kind, text):
    tok = trained[kind]
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def _with_specials(parts):
    return "".join(parts)


unicode_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
text_with_specials = st.lists(
    st.one_of(unicode_text, st.sampled_from(SPECIALS + ["<|end", "|>", "<|endof", "<|<|end|>"])),
    max_size=6).map(_with_specials)


@settings(max_examples=150, deadline=None)
@given(text_with_specials)
def test_bpe_round_trip_on_any_unicode(text):
    tok = _bpe_with_specials()
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.filterwarnings("ignore:the training text allows only")
@settings(max_examples=50, deadline=None)
@given(unicode_text)
def test_every_kind_round_trips_text_it_was_trained_on(text):
    for cls in (CharTokenizer, WordTokenizer):
        tok = cls.train(text)
        assert tok.decode(tok.encode(text)) == text
    tok = BPETokenizer.train(text, vocab_size=270)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", ["", "😀👍🏽", "e\u0301 n\u0303", "漢字かな交じり文", "\x00\x1b[0m\t\r\n",
                                  "<|endoftext|>", "a<|end|><|endoftext|>b", "\U0010FFFF\ufeff"])
def test_bpe_round_trip_examples(text):
    tok = _bpe_with_specials()
    assert tok.decode(tok.encode(text)) == text


_BPE_CACHE = {}


def _bpe_with_specials() -> BPETokenizer:
    if "tok" not in _BPE_CACHE:
        _BPE_CACHE["tok"] = BPETokenizer.train(ENGLISH + "😀 漢字", vocab_size=300,
                                               special_tokens=SPECIALS)
    return _BPE_CACHE["tok"]


# ----- helpers with worked examples --------------------------------------------------
def test_get_pair_counts_and_merge_pair():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge_pair([5, 5, 5], (5, 5), 6) == [6, 5]


# ----- hand-computed merges ----------------------------------------------------------
def test_hand_computed_merges_with_ties():
    # One pre-token "aaabdaaabac". Counts: aa 4, ab 2, others 1 -> merge (a, a).
    # Now [aa a b d aa a b a c]: (aa, a) 2 and (a, b) 2 tie; b"aa" > b"a" -> (aa, a).
    # Now [aaa b d aaa b a c]: (aaa, b) 2 -> merge it.
    # Now [aaab d aaab a c]: four pairs tie at 1; the greatest left bytes is b"d" -> (d, aaab).
    # Now [aaab daaab a c]: three tie at 1; greatest left is b"daaab" -> (daaab, a).
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=261)
    assert tok.merges == [(b"a", b"a"), (b"aa", b"a"), (b"aaa", b"b"), (b"d", b"aaab"),
                          (b"daaab", b"a")]
    assert tok.encode("aaabdaaabac") == [258, 260, 99]


def test_merges_weight_pre_tokens_and_never_cross_them():
    # Pre-tokens: "hug" x1, " hug" x2, " pug" x1. Pair counts: (u,g) 4, (h,u) 3, (" ",h) 2, ...
    # Merges: ug; then (h,ug) 3; then (" ",hug) 2; then (" ",p) and (p,ug) tie at 1 and
    # b"p" > b" " -> (p, ug); then (" ", pug). No merge ever joins "g" to the next space.
    tok = BPETokenizer.train("hug hug hug pug", vocab_size=256 + 5)
    assert tok.merges == [(b"u", b"g"), (b"h", b"ug"), (b" ", b"hug"), (b"p", b"ug"), (b" ", b"pug")]
    assert tok.tokens("hug pug") == ["hug", " pug"]


def test_encode_applies_merges_in_rank_order():
    b, c, a = ord("b"), ord("c"), ord("a")
    bc_first = BPETokenizer([(b, c), (a, b)])  # "bc" is id 256, "ab" is 257
    assert bc_first.encode("abc") == [a, 256]
    ab_first = BPETokenizer([(a, b), (b, c)])
    assert ab_first.encode("abc") == [256, c]
    assert BPETokenizer([(b"a", b"b")]).merge_ids == [(a, b)]


@functools.lru_cache(maxsize=1)
def _repeats_tokenizer():
    """Trained once: merges of repeated bytes ("aa"), accents and emoji, for the twin test."""
    return BPETokenizer.train(ENGLISH + "aaaa aaa theéé 😀😀 " * 3, vocab_size=300)


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet="aab c\ntheé😀", max_size=40))
def test_fast_pretoken_encoder_equals_its_explicit_twin(text):
    tok = _repeats_tokenizer()
    for piece in [text, "aaaaaaa", "thethe", *text.split()]:  # repeats exercise the many-occurrence merge
        assert tok._encode_pretoken_fast(piece) == tok.encode_pretoken(piece)


def test_encoding_is_the_same_with_a_full_cache(trained, monkeypatch):
    tok = trained["bpe"]
    expected = BPETokenizer(tok.merge_ids).encode(ENGLISH + " unseen words here")
    monkeypatch.setattr(tokenizers.bpe, "CACHE_LIMIT", 5)
    full = BPETokenizer(tok.merge_ids)
    assert full.encode(ENGLISH + " unseen words here") == expected
    assert len(full._cache) == 5 and full.encode(ENGLISH + " unseen words here") == expected


def test_ids_equal_tiktoken_with_the_same_merges(trained):
    tiktoken = pytest.importorskip("tiktoken")
    tok = BPETokenizer.train(ENGLISH, vocab_size=300)
    ranks = {token: i for i, token in tok.vocab.items()}
    enc = tiktoken.Encoding(name="minillm-test", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    text = ENGLISH + "Unseen: 3.14159 pizzas, cafés — and 😀 emoji!\n\n  spaced   out"
    assert tok.encode(text) == enc.encode_ordinary(text)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n", max_size=60), st.integers(1, 30))
def test_fast_training_matches_the_naive_loop(text, n_merges):
    words, freqs = count_words(__import__("regex").findall(GPT2_PATTERN, text))
    assert train_merges(words, freqs, n_merges) == train_merges_naive(words, freqs, n_merges)


def test_naive_and_fast_agree_on_english():
    words, freqs = count_words(__import__("regex").findall(GPT2_PATTERN, ENGLISH))
    assert train_merges(words, freqs, 120) == train_merges_naive(words, freqs, 120)


def test_training_is_deterministic_and_order_independent():
    lines = ENGLISH.splitlines(keepends=True)
    first = BPETokenizer.train(lines, vocab_size=350).merges
    assert BPETokenizer.train(lines, vocab_size=350).merges == first
    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    assert BPETokenizer.train(shuffled, vocab_size=350).merges == first


@pytest.mark.filterwarnings("ignore:the training text allows only")
def test_training_from_a_file_equals_training_on_its_text(tmp_path):
    text = "Hello  world.\n\n\nSecond line\n  indented\n" * 40
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    assert "".join(read_file_chunks(path, chunk_chars=7)) == text
    pieces = __import__("regex").findall
    chunked = [p for chunk in read_file_chunks(path, chunk_chars=7) for p in pieces(GPT2_PATTERN, chunk)]
    assert chunked == pieces(GPT2_PATTERN, text)
    assert BPETokenizer.train(path, vocab_size=300).merges == BPETokenizer.train(text, 300).merges


def test_vocab_size_counts_bytes_merges_and_specials(trained):
    tok = trained["bpe"]
    assert tok.vocab_size == 350 == 256 + len(tok.merges) + 1
    assert len(tok.vocab) == 350 and tok.vocab[65] == b"A"
    assert tok.vocab[349] == b"<|endoftext|>"
    with pytest.warns(UserWarning, match="allows only"):
        small = BPETokenizer.train("abab", vocab_size=300)
    assert small.vocab_size == 258


# ----- the lecture's examples --------------------------------------------------------
def test_lecture_examples(trained):
    assert "apple" in trained["word"].tokens("An apple a day")
    assert trained["char"].tokens("a day")[0] == "a"
    assert trained["char"].token_to_id("a") == trained["char"].encode("a")[0]
    bpe = BPETokenizer.train(ENGLISH, vocab_size=300)
    assert b"tion" in bpe.vocab.values()
    assert "tion" in "".join(bpe.tokens(" motion"))  # a subword, not a whole word


def test_sequence_length_falls_as_vocabulary_grows(trained):
    lengths = {kind: len(tok.encode(ENGLISH)) for kind, tok in trained.items()}
    assert lengths["char"] > lengths["bpe"] > lengths["word"]
    assert trained["char"].vocab_size < trained["bpe"].vocab_size


@pytest.mark.filterwarnings("ignore:the training text allows only")
# ----- special tokens ----------------------------------------------------------------
def test_special_tokens_are_whole_single_ids_and_never_merged():
    text = ("hello<|endoftext|>" * 30) + "<|end|>"
    tok = BPETokenizer.train(text, vocab_size=300, special_tokens=["<|endoftext|>", "<|end|>"])
    assert not any(b"<" in token or b"|" in token or b">" in token for pair in tok.merges
                   for token in pair)
    eot, end = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|end|>")
    assert tok.encode("hi<|endoftext|><|end|>") == tok.encode("hi") + [eot, end]
    assert tok.tokens("<|end|>x") == ["<|end|>", "x"]


def test_overlapping_special_tokens_match_longest_first():
    tok = BPETokenizer(special_tokens={"<|end": 256, "<|end|>": 257})
    assert tok.encode("<|end|>") == [257]
    assert tok.encode("<|end>") == [256, ord(">")]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_add_special_tokens_grows_the_vocabulary(kind):
    tok = {"char": CharTokenizer, "word": WordTokenizer}.get(kind, BPETokenizer)
    tok = tok.train(ENGLISH) if kind != "bpe" else BPETokenizer.train(ENGLISH, 300)
    size = tok.vocab_size
    assert tok.add_special_tokens(["<|user|>", "<|assistant|>"]) == [size, size + 1]
    assert tok.add_special_tokens(["<|user|>", "<|end|>"]) == [size, size + 2]
    assert tok.vocab_size == size + 3
    ids = tok.encode("<|user|>the nation<|end|>")
    assert ids[0] == size and ids[-1] == size + 2
    assert tok.decode(ids) == "<|user|>the nation<|end|>"
    assert tok.id_to_token(size + 1) == "<|assistant|>"


# ----- bytes that are not whole characters -------------------------------------------
def test_bpe_decode_replaces_a_broken_utf8_ending(trained):
    tok = trained["bpe"]
    ids = tok.encode("é😀")  # none of these bytes were merged in training
    assert len(ids) == 6
    assert tok.decode(ids[:-1]) == "é\ufffd"
    assert tok.id_to_token(ids[2]) == "<0xF0>"
    assert tok.token_to_id("<0xF0>") == ids[2]


def test_unseen_word_and_emoji(trained):
    word, bpe = trained["word"], trained["bpe"]
    assert word.tokens("the zyzzyva") == ["the", "<unk>"]
    assert word.decode(word.encode("the zyzzyva")) == "the <unk>"
    assert bpe.decode(bpe.encode("the zyzzyva 🦖")) == "the zyzzyva 🦖"


# ----- save / load -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_save_load_gives_an_identical_tokenizer(trained, kind, tmp_path):
    tok = trained[kind]
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = tokenizers.load(path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.special_tokens == tok.special_tokens
    assert loaded.encode(ENGLISH) == tok.encode(ENGLISH)
    assert [loaded.id_to_token(i) for i in range(tok.vocab_size)] == \
        [tok.id_to_token(i) for i in range(tok.vocab_size)]
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == kind
    assert type(tok).load(path).encode("the apple") == tok.encode("the apple")


def test_loading_the_wrong_kind_is_explained(trained, tmp_path):
    trained["char"].save(tmp_path / "c.json")
    with pytest.raises(ValueError, match="'char' tokenizer, not a 'bpe'"):
        BPETokenizer.load(tmp_path / "c.json")


# ----- bad input ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
@pytest.mark.parametrize("bad", [123, b"bytes", ["a", "list"], None])
def test_encode_rejects_non_strings(trained, kind, bad):
    with pytest.raises(TypeError, match="encode expects a str"):
        trained[kind].encode(bad)


@pytest.mark.parametrize("bad", [123, b"bytes", [1, 2]])
def test_train_rejects_non_text(bad):
    with pytest.raises(TypeError, match="train"):
        BPETokenizer.train(bad, vocab_size=300)


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="256 byte tokens \\+ 2 special token"):
        BPETokenizer.train("hello", vocab_size=257, special_tokens=["<|a|>", "<|b|>"])
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("hello", vocab_size="300")
    with pytest.raises(ValueError, match="max_vocab"):
        WordTokenizer.train("hello", max_vocab=1)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_decode_rejects_ids_outside_the_vocabulary(trained, kind):
    tok = trained[kind]
    with pytest.raises(ValueError, match=f"valid ids are 0..{tok.vocab_size - 1}"):
        tok.decode([0, tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="token ids are ints"):
        tok.decode(["a"])
    with pytest.raises(TypeError, match="decode expects a list"):
        tok.decode("abc")


@pytest.mark.parametrize("content, message", [
    ("", "not valid JSON"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "bpe", "merges": [[1', "not valid JSON"),
    ('[1, 2]', "not a minillm tokenizer file"),
    ('{"format": "minillm-tokenizer", "version": 9, "kind": "bpe"}', "version 9"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "sentencepiece"}', "unknown tokenizer kind"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "bpe"}', "not a valid 'bpe' tokenizer"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "bpe", "pattern": "x", '
     '"merges": [[1, 999, "?"]]}', "merge 0"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "char", "chars": ["a"], '
     '"special_tokens": {"<|x|>": 7}}', "special token ids"),
    ('{"format": "minillm-tokenizer", "version": 1, "kind": "char", "vocab_size": 5, '
     '"chars": ["a"]}', "vocab_size=5"),
])
def test_malformed_or_truncated_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        tokenizers.load(path)


def test_truncated_real_file(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained["bpe"].save(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(ValueError, match="truncated"):
        tokenizers.load(path)


def test_char_tokenizer_names_the_unknown_character_and_its_position():
    tok = CharTokenizer.train("hello world")
    with pytest.raises(ValueError, match=r"unknown character 'z' \(U\+007A\) at position 6"):
        tok.encode("hello zorld")
    with pytest.raises(ValueError, match="at position 9"):
        CharTokenizer.train("ab", special_tokens=["<|e|>"]).encode("ab<|e|>ab!")
    with_unk = CharTokenizer.train("hello world", unk_token="<unk>")
    assert with_unk.tokens("hez") == ["h", "e", "<unk>"]


def test_lone_surrogates_are_explained():
    tok = BPETokenizer()
    with pytest.raises(ValueError, match="lone surrogate .* at position 2"):
        tok.encode("ab\ud800c")


# ----- the word tokenizer's rules ------------------------------------------------------
def test_word_tokenizer_splitting_rules():
    tok = WordTokenizer.train("Don't panic,  apple!\n")
    assert tok.tokens("Don't panic,  apple!\n") == ["Don't", "panic", ",", "  ", "apple", "!", "\n"]
    assert tok.decode(tok.encode("apple panic")) == "apple panic"


def test_word_tokenizer_vocabulary_limits():
    tok = WordTokenizer.train("a a a b b c", max_vocab=3)  # <unk> + the two most frequent
    assert tok.vocab_size == 3
    assert tok.tokens("a b c") == ["a", "b", "<unk>"]
    assert WordTokenizer.train("a a a b b c", min_count=2).tokens("c") == ["<unk>"]


def test_special_tokens_must_be_a_list():
    with pytest.raises(TypeError, match=r"write \['<\|endoftext\|>'\]"):
        BPETokenizer.train("hello", 300, special_tokens="<|endoftext|>")
    with pytest.raises(TypeError, match="single string"):
        CharTokenizer.train("hello").add_special_tokens("<|end|>")
    with pytest.raises(TypeError, match="non-empty string"):
        CharTokenizer.train("hello").add_special_tokens([""])
    tok = WordTokenizer.train("hello", special_tokens=["<unk>", "<|x|>", "<|x|>"])
    assert list(tok.special_tokens) == ["<unk>", "<|x|>"]


def test_repeated_merge_is_rejected():
    with pytest.raises(ValueError, match="merge 1 repeats merge 0"):
        BPETokenizer([(97, 98), (97, 98)])
