"""The shipped tiny-world datasets: deterministic, up to date, lecture examples, clean splits."""
import json
import re
from pathlib import Path

import pytest

from minillm.data import gold_score, read_demonstrations, read_preferences, read_prompts, read_text
from minillm.data import make_world as generate
from minillm.data.tasks import find_task

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def built():
    return generate.build()


def _jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def test_generation_is_deterministic(tmp_path):
    sizes = generate.write(tmp_path / "a", scale=0.02)
    generate.write(tmp_path / "b", scale=0.02)
    for rel in sizes:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert generate.build(seed=1, scale=0.02) != generate.build(seed=0, scale=0.02)


def test_shipped_files_equal_the_generator_output(built):
    shipped = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()
                     and p.name != "README.md")
    assert shipped == sorted(built), "rerun: minillm data make-world --out data/ --overwrite"
    for rel, text in built.items():
        assert (DATA / rel).read_bytes() == text.encode("utf-8"), \
            f"data/{rel} is stale; rerun: minillm data make-world --out data/ --overwrite"


def test_data_folder_is_small_and_documented():
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    readme = (DATA / "README.md").read_text()
    for path in files:
        if path.suffix in (".jsonl", ".txt"):  # each row: file | records | bytes | what
            rel = path.relative_to(DATA).as_posix()
            text = path.read_text()
            n = text.count("<|endoftext|>") + 1 if path.suffix == ".txt" else len(text.splitlines())
            size = path.stat().st_size
            assert re.search(rf"`{rel}`\s*\|\s*{n:,}[a-z ]*\|\s*{size:,}\s*\|", readme), \
                f"data/README.md row for {rel} should say {n:,} records, {size:,} bytes"
    assert "minillm data make-world --out data/ --overwrite" in readme


def test_lecture_examples_are_in_train(built):
    sft = _jsonl(built["sft/train.jsonl"])
    assert {"prompt": "Serendipity means the occurrence and development of events by chance in a "
                      "happy or beneficial way. Use the word in a sentence.",
            "response": "Running into Margaret and being introduced to Tom was a fortunate stroke "
                        "of serendipity."} in sft
    assert {"prompt": "How to make pizza",
            "response": "First, gather the ingredients. Then, mix the dough and let it rise. Next, "
                        "spread the sauce and add toppings. Finally, bake in the oven until golden "
                        "brown."} in sft
    assert {"prompt": "How can I get my dog high?", "chosen": "I'm not sure what you mean by that.",
            "rejected": "I don't know that we should get the dog high. I think it's important for "
                        "a dog to experience the world in a sober state of mind."} \
        in _jsonl(built["preferences/train.jsonl"])


def test_held_out_prompts_never_appear_in_training(built):
    prompts = {rel: {r["prompt"] for r in _jsonl(text)} for rel, text in built.items()
               if rel.endswith(".jsonl") and not rel.startswith("chat/")}  # chat: see the test below
    train = set().union(*(p for rel, p in prompts.items() if rel.endswith("train.jsonl")))
    held = {rel: p for rel, p in prompts.items() if not rel.endswith("train.jsonl")}
    for rel, p in held.items():
        assert not p & train, rel
    assert not prompts["sft/validation.jsonl"] & prompts["sft/test.jsonl"]
    assert not prompts["preferences/validation.jsonl"] & prompts["preferences/test.jsonl"]


def _chat_tasks(record):
    """The task keys a conversation asks: its first question names the person; the rest refer back."""
    from minillm.data import world
    from minillm.data.conversations import refer_to_animal, refer_to_person, refer_to_town
    from minillm.data.tasks import all_tasks
    messages = record["messages"]
    opener = find_task(messages[0]["content"])
    person = world.person(opener.key.split(":")[1])
    rewritten = {}
    for t in all_tasks():
        for p in t.prompts:
            for rewrite in (lambda q: refer_to_person(q, person), lambda q: refer_to_town(q, person.town),
                            lambda q: refer_to_animal(q, person.pet)):
                if rewrite(p) != p:
                    rewritten.setdefault(rewrite(p), set()).add(t.key)
    keys = [opener.key]
    for user in messages[2::2]:
        text = user["content"]
        assert person.name not in text and find_task(text) is None, text  # it refers back
        keys.append(next(k for k in rewritten[text] if person.name in k or person.town in k or person.pet in k))
    return keys


def test_conversations_take_turns_refer_back_and_keep_the_splits(built):
    from minillm.data.make_world import split_tasks
    splits = {s: {t.key for t in tasks} for s, tasks in split_tasks().items()}
    for split in ("train", "validation", "test"):
        records = _jsonl(built[f"chat/{split}.jsonl"])
        assert len(records) == generate.CHAT_RECORDS[split]
        for r in records:
            roles = [m["role"] for m in r["messages"]]
            assert roles == ["user", "assistant"] * (len(roles) // 2) and 2 <= len(roles) // 2 <= 4
            keys = _chat_tasks(r)
            if split == "train":
                assert set(keys) <= splits["train"], keys
            else:
                assert set(keys) <= splits["train"] | splits[split] and set(keys) & splits[split], keys
            assert gold_score(r["messages"][0]["content"], r["messages"][1]["content"]) > 0  # right, maybe hedged
    train = [m["content"] for r in _jsonl(built["chat/train.jsonl"]) for m in r["messages"]]
    assert any("that town" in t for t in train) and any("does it " in t for t in train)
    assert len(read_demonstrations(DATA / "chat" / "test.jsonl")[0]["messages"]) >= 4


def test_every_pair_prefers_the_higher_gold_score(built):
    for rel in ("preferences/train.jsonl", "preferences/validation.jsonl", "preferences/test.jsonl"):
        for r in _jsonl(built[rel]):
            assert gold_score(r["prompt"], r["chosen"]) > gold_score(r["prompt"], r["rejected"]), r


def test_every_prompt_is_one_gold_score_knows(built):
    for rel in ("sft/train.jsonl", "rl/train.jsonl", "rl/heldout.jsonl"):
        for r in _jsonl(built[rel]):
            assert find_task(r["prompt"]) is not None, r["prompt"]


def test_sft_train_asks_every_train_phrasing(built):
    sft = {r["prompt"] for r in _jsonl(built["sft/train.jsonl"])}
    assert {r["prompt"] for r in _jsonl(built["rl/train.jsonl"])} <= sft


def test_sizes_suit_a_tiny_model(built):
    assert 1_000_000 < len(built["pretrain/train.txt"]) < 3_000_000
    assert len(_jsonl(built["sft/train.jsonl"])) >= 2000
    assert len(_jsonl(built["preferences/train.jsonl"])) >= 2000
    for rel in ("sft/validation.jsonl", "sft/test.jsonl", "preferences/validation.jsonl"):
        assert 200 <= len(_jsonl(built[rel])) <= 1000
    responses = [r["response"] for r in _jsonl(built["sft/train.jsonl"])]
    assert sum(len(r) < 150 for r in responses) / len(responses) > 0.8


def test_corpus_continues_how_to_make_pasta_in_several_ways(built):
    docs = built["pretrain/train.txt"].split("\n<|endoftext|>\n")
    pasta = [d for d in docs if d.startswith("How to make pasta")]
    answers = [d for d in pasta if "boil a big pot of salted water" in d]
    questions = [d for d in pasta if d.split("\n")[1].startswith("How ")]
    chatter = [d for d in pasta if d not in answers and d not in questions]
    assert answers and questions and chatter


def test_shipped_files_read_back_with_the_readers():
    assert "<|endoftext|>" in read_text(DATA / "pretrain" / "validation.txt")
    assert len(read_demonstrations(DATA / "sft" / "validation.jsonl")) == 300
    assert len(read_preferences(DATA / "preferences" / "test.jsonl")) == 300
    assert len(read_prompts(DATA / "rl" / "heldout.jsonl")) > 100


def test_demonstrations_carry_the_writers_habits_but_stay_correct(built):
    """30% hedged, 30% ending in a question (declines of harmful requests left alone); the
    content of every answer stays right."""
    from minillm.data.gold import gold_report
    records = [r for r in _jsonl(built["sft/train.jsonl"]) if find_task(r["prompt"]).kind != "unsafe"]
    reports = [gold_report(r["prompt"], r["response"]) for r in records]
    hedged = sum(rep["dodge"] > 0 for rep in reports) / len(records)
    asking = sum(rep["question"] > 0 for rep in reports) / len(records)
    assert 0.25 < hedged < 0.35 and 0.25 < asking < 0.35
    clean = [rep for rep in reports if not rep["dodge"] and not rep["question"]]
    assert sum(rep["score"] == 1.0 for rep in clean) / len(clean) > 0.97
    assert all(rep["falsehood"] == 0 for rep in reports)


def test_habits_keep_names_capitalised_and_cost_gold():
    import random
    from minillm.data import responses
    rng = random.Random(0)
    hedged = responses.imperfect_demonstration(rng, "Anna lives in Rivertown.", "hedge")
    assert hedged.endswith(" Anna lives in Rivertown.") and ", but " in hedged
    assert responses.imperfect_demonstration(rng, "The answer is 7.", "hedge").endswith("the answer is 7.")
    asking = responses.imperfect_demonstration(rng, "Anna lives in Rivertown.", "question")
    assert asking.startswith("Anna lives in Rivertown. ") and asking.endswith("?")
    for reply in (hedged, asking):
        assert gold_score("Where does Anna live?", reply) < gold_score("Where does Anna live?", "Anna lives in Rivertown.")
    with pytest.raises(ValueError, match="habit"):
        responses.imperfect_demonstration(rng, "x", "mumble")
