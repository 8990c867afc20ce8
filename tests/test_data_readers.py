"""Readers: every supported layout on small fixtures, and every kind of bad input."""
from pathlib import Path

import pytest

from minillm.tokenizers.chat_template import messages_problem

from minillm.data import (DataError, read_demonstrations, read_preferences, read_prompts,
                          read_text)
from minillm.data.readers import detect_kind

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_read_text_file_and_folder():
    assert read_text(FIXTURES / "text" / "b.txt") == "Tom lives in Hillbrook.\n"
    # a folder: its .txt files sorted by name, one document each; notes.md is ignored
    assert read_text(FIXTURES / "text") == ("Anna lives in Rivertown.\nShe is a baker."
                                            "\n<|endoftext|>\nTom lives in Hillbrook.")


@pytest.mark.parametrize("name, expected", [
    ("demos_prompt_response.jsonl", {"prompt": "Where does Anna live?", "response": "Anna lives in Rivertown."}),
    ("demos_prompt_completion.jsonl", {"prompt": "How old is Tom?", "response": "Tom is 41 years old."}),
    ("demos_alpaca.jsonl", {"prompt": "Add the two numbers.\n\n4 and 5", "response": "9"}),
    ("demos_dolly.jsonl", {"prompt": "Where does Lucy fish?\n\nLucy is a fisher who lives in Lakeside.",
                           "response": "Lucy fishes in Lakeside."}),
    ("demos_messages.jsonl", {"prompt": "What does a cat say?", "response": "A cat says meow."}),
])
def test_demonstration_layouts(name, expected):
    records = read_demonstrations(FIXTURES / name)
    assert records[0] == expected
    assert records.skipped == []


def test_empty_input_or_context_adds_nothing():
    assert read_demonstrations(FIXTURES / "demos_alpaca.jsonl")[1]["prompt"] == "Name a town of the tiny world."
    assert read_demonstrations(FIXTURES / "demos_dolly.jsonl")[1]["prompt"] == "Say hello."


def test_multi_turn_messages_are_flattened_with_role_labels_and_kept_whole():
    record = read_demonstrations(FIXTURES / "demos_messages.jsonl")[1]
    assert record["prompt"] == "System: Be brief.\n\nUser: Hi!\n\nAssistant: Hello.\n\nUser: What does a cow say?"
    assert record["response"] == "Moo."
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "messages" not in read_demonstrations(FIXTURES / "demos_messages.jsonl")[0]  # one exchange: a pair


@pytest.mark.parametrize("messages, problem", [
    ([{"role": "assistant", "content": "x"}], "message 0 has role 'assistant' where 'user' belongs"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": "y"}], "message 1 has role 'user'"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}], "system turn may only come first"),
    ([{"role": "system", "content": "y"}], "no user turn"),
    ([{"role": "user", "content": 3}], "message 0 should be"),
])
def test_conversations_out_of_turn_are_refused_with_the_message_number(messages, problem):
    assert problem in messages_problem(messages)


def test_plain_preferences_allow_an_empty_response():
    records = read_preferences(FIXTURES / "prefs_plain.jsonl")
    assert records[0]["chosen"] == "I'm not sure what you mean by that."
    assert records[1]["rejected"] == ""


def test_hh_transcripts_split_at_the_last_shared_assistant_turn():
    records = read_preferences(FIXTURES / "prefs_hh.jsonl")
    assert records[0] == {"prompt": "Human: Where does Anna live?\n\nAssistant:",
                          "chosen": "Anna lives in Rivertown.", "rejected": "Why do you want to know?"}
    assert records[1]["chosen"] == ""  # an empty final turn is a valid response
    assert records[1]["prompt"].endswith("What does a cat say?\n\nAssistant:")


def test_hh_pair_differing_before_last_turn():
    records = read_preferences(FIXTURES / "prefs_hh.jsonl")
    early = records[2]
    assert early["prompt"] == "Human: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a fact.\n\nAssistant:"
    assert early["chosen"] == "A bee has 6 legs.\n\nHuman: Another?\n\nAssistant: A cow says moo."
    assert early["rejected"] == "No."
    assert records.layouts == {"hh": 2, "hh (differs before last turn)": 1}


@pytest.mark.parametrize("name, first", [
    ("prompts.jsonl", "How to make pasta"),
    ("demos_alpaca.jsonl", "Add the two numbers.\n\n4 and 5"),
    ("demos_messages.jsonl", "What does a cat say?"),
    ("prefs_plain.jsonl", "How can I get my dog high?"),
    ("prefs_hh.jsonl", "Human: Where does Anna live?\n\nAssistant:"),
])
def test_read_prompts_from_any_layout(name, first):
    assert read_prompts(FIXTURES / name)[0] == {"prompt": first}


@pytest.mark.parametrize("name, kind", [
    ("text", "text"), ("text/a.txt", "text"), ("demos_dolly.jsonl", "demonstrations"),
    ("demos_messages.jsonl", "demonstrations"), ("prefs_hh.jsonl", "preferences"),
    ("prompts.jsonl", "prompts"),
])
def test_detect_kind(name, kind):
    assert detect_kind(FIXTURES / name) == kind


# ---- bad input: an error naming file, line and problem; or skipped and counted ----

GOOD = '{"prompt": "Where does Anna live?", "response": "Anna lives in Rivertown."}\n'
GOOD_PAIR = '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'


@pytest.mark.parametrize("reader, bad_line, problem", [
    (read_demonstrations, '{"prompt": "x", "response": "y"\n', "malformed JSON"),
    (read_demonstrations, '{"prompt": "x"}\n', "missing field 'response'"),
    (read_demonstrations, '{"prompt": "x", "response": "  "}\n', "empty response"),
    (read_demonstrations, '{"messages": [{"role": "user", "content": "x"}]}\n', "last message"),
    (read_demonstrations, '["not", "an", "object"]\n', "expected a JSON object"),
    (read_preferences, '{"prompt": "p", "chosen": "same", "rejected": "same"}\n', "the same text"),
    (read_preferences, '{"prompt": "p", "chosen": "a"}\n', "'chosen' field but no 'rejected'"),
    (read_prompts, '{"text": "no prompt here"}\n', "no 'prompt'"),
])
def test_bad_record_names_file_and_line(tmp_path, reader, bad_line, problem):
    good = GOOD_PAIR if reader is read_preferences else GOOD
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + bad_line + good)  # the blank line 2 is not a record
    with pytest.raises(DataError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and problem in message
    assert info.value.line == 3 and isinstance(info.value, ValueError)


def test_not_utf8_jsonl_and_text(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + '{"prompt": "caf\xe9", "response": "ok"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl, line 2: not UTF-8"):
        read_demonstrations(path)
    text = tmp_path / "latin1.txt"
    text.write_bytes(b"line one\nline two\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1.txt, line 3: not UTF-8"):
        read_text(text)


def test_skip_bad_counts_what_it_skips(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(GOOD + "{oops\n" + '{"prompt": "x", "response": ""}\n' + GOOD)
    records = read_demonstrations(path, skip_bad=True)
    assert len(records) == 2
    assert len(records.skipped) == 2
    assert "line 2: malformed JSON" in records.skipped[0]
    assert "line 3: empty response" in records.skipped[1]


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_demonstrations(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no .txt file"):
        read_text(tmp_path)
