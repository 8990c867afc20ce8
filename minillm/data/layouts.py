"""The common record layouts of instruction and preference data, turned into one shape each.

Public SFT and RLHF datasets (Lecture 5, phases 2 and 3) store the same thing in different
fields: prompt/response, prompt/completion, Alpaca's instruction/input/output, Dolly's
instruction/context/response, chat `messages`, and Anthropic HH's pair of whole transcripts.
Each function here takes one parsed JSON object and returns minillm's record, or raises
LayoutError saying what is wrong; `readers` adds the file name and line number.
Left out: tool calls, images, and any layout not listed above.
"""
from __future__ import annotations

import difflib

from minillm.tokenizers.chat_template import messages_problem
from minillm.errors import UserError

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
KNOWN_FIELDS = ("prompt", "response", "completion", "instruction", "input", "output", "context",
                "messages", "chosen", "rejected")


class LayoutError(UserError):
    """A record that does not fit any known layout (readers turn this into a DataError)."""


def check_fields(obj: dict) -> None:
    """Refuse a record whose fields look like a mistake, instead of reading it as another layout.

    Half a preference pair ('chosen' without 'rejected', or the reverse) and a misspelled
    known field ('respone', 'choosen') are errors; fields unlike any known one (an id, a
    source) are left alone. Example: {"prompt": "a", "chosen": "b"} -> LayoutError.
    """
    if not isinstance(obj, dict):
        raise LayoutError(f"a record should be a JSON object, got {type(obj).__name__}")
    pair = [f for f in ("chosen", "rejected") if f in obj]
    if len(pair) == 1:
        other = "rejected" if pair == ["chosen"] else "chosen"
        raise LayoutError(f"has a {pair[0]!r} field but no {other!r} (a preference pair needs both)")
    for name in obj:
        if name in KNOWN_FIELDS:
            continue
        close = [f for f in difflib.get_close_matches(name, KNOWN_FIELDS, n=1, cutoff=0.85) if f not in obj]
        if close:
            raise LayoutError(f"unknown field {name!r}: did you mean {close[0]!r}?")


def _text(obj: dict, field: str) -> str:
    if field not in obj:
        raise LayoutError(f"missing field {field!r}")
    value = obj[field]
    if not isinstance(value, str):
        raise LayoutError(f"field {field!r} should be a string, got {type(value).__name__}")
    return value


def _join(instruction: str, extra: str) -> str:
    """Instruction, then a blank line and the extra input when there is one (Alpaca/Dolly)."""
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def demonstration_layout(obj: dict) -> str:
    """Which demonstration layout a record uses: 'messages', 'prompt/response', ..."""
    if "messages" in obj:
        return "messages"
    if "prompt" in obj:
        return "prompt/completion" if "completion" in obj and "response" not in obj else "prompt/response"
    if "instruction" in obj:
        return "instruction/input/output" if "output" in obj else "instruction/context/response"
    raise LayoutError("no 'prompt', 'instruction' or 'messages' field; expected prompt/response, "
                      "prompt/completion, instruction/input/output, instruction/context/response "
                      "or messages")


def to_demonstration(obj: dict) -> tuple[dict, str]:
    """One record as ({"prompt", "response"}, layout name).

    A `messages` record of more than one exchange (or with a system turn) also keeps the
    whole conversation under "messages", so SFT can train on every assistant turn; its
    "prompt" and "response" are the flattened form (`from_messages`) that other phases read.
    """
    check_fields(obj)
    layout = demonstration_layout(obj)
    extra = {}
    if layout == "messages":
        prompt, response = from_messages(obj["messages"])
        if len(obj["messages"]) > 2:
            extra = {"messages": [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]}
    elif layout == "prompt/response":
        prompt, response = _text(obj, "prompt"), _text(obj, "response")
    elif layout == "prompt/completion":
        prompt, response = _text(obj, "prompt"), _text(obj, "completion")
    elif layout == "instruction/input/output":
        prompt, response = _join(_text(obj, "instruction"), obj.get("input") or ""), _text(obj, "output")
    else:
        prompt, response = _join(_text(obj, "instruction"), obj.get("context") or ""), _text(obj, "response")
    if not response.strip():
        raise LayoutError("empty response (a demonstration must show an answer)")
    return {"prompt": prompt, "response": response, **extra}, layout


def from_messages(messages) -> tuple[str, str]:
    """A chat as (prompt, response): the response is the last assistant turn.

    A single user turn becomes the prompt as it is. Longer conversations are flattened as
    "Role: content" turns joined by blank lines ("System: ...\n\nUser: ...\n\nAssistant:
    ...\n\nUser: ..."), so earlier assistant turns stay visible to the model.
    """
    problem = messages_problem(messages)
    if problem:
        raise LayoutError(problem)
    if messages[-1]["role"] != "assistant":
        raise LayoutError("the last message should be the assistant's (the response to learn)")
    history = messages[:-1]
    if len(history) == 1 and history[0]["role"] == "user":
        return history[0]["content"], messages[-1]["content"]
    prompt = "\n\n".join(f"{ROLE_LABELS[m['role']]}: {m['content']}" for m in history)
    return prompt, messages[-1]["content"]


def to_preference(obj: dict) -> tuple[dict, str]:
    """One record as ({"prompt", "chosen", "rejected"}, layout name); empty responses are fine."""
    check_fields(obj)
    chosen, rejected = _text(obj, "chosen"), _text(obj, "rejected")
    if "prompt" in obj:
        record, layout = {"prompt": _text(obj, "prompt"), "chosen": chosen, "rejected": rejected}, "prompt/chosen/rejected"
    else:
        record, layout = split_transcripts(chosen, rejected)
    if record["chosen"] == record["rejected"]:
        raise LayoutError("chosen and rejected are the same text (nothing to prefer)")
    return record, layout


def split_transcripts(chosen: str, rejected: str) -> tuple[dict, str]:
    """Two HH transcripts as one pair: the shared prefix is the prompt.

    The prompt is the longest shared prefix that ends with an "\\n\\nAssistant:" marker
    (leading blank lines removed); the responses are what follows, stripped. Usually that is
    the last assistant turn. If the transcripts part earlier, the responses hold the rest of
    each conversation (one transcript may have more turns than the other) and the layout is
    reported as 'hh (differs before last turn)'.

    Example: ("\\n\\nHuman: Hi\\n\\nAssistant: Hello!", "\\n\\nHuman: Hi\\n\\nAssistant: Go away.")
        -> {"prompt": "Human: Hi\\n\\nAssistant:", "chosen": "Hello!", "rejected": "Go away."}
    """
    if ASSISTANT not in chosen or ASSISTANT not in rejected:
        raise LayoutError("no 'prompt' field, and the transcripts have no '\\n\\nAssistant:' turn "
                          "(expected prompt/chosen/rejected or the Anthropic HH layout)")
    shared = _common_prefix(chosen, rejected)
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        raise LayoutError("the two transcripts differ before their first assistant turn")
    end = cut + len(ASSISTANT)
    record = {"prompt": chosen[:end].lstrip("\n"), "chosen": chosen[end:].strip(),
              "rejected": rejected[end:].strip()}
    # Each transcript's own last assistant turn should start right where the prompt ends.
    earlier = any(t.rfind(ASSISTANT) + len(ASSISTANT) != end for t in (chosen, rejected))
    return record, "hh (differs before last turn)" if earlier else "hh"


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def to_prompt(obj: dict) -> tuple[dict, str]:
    """The prompt of any record: a `prompt` field, or that of a demonstration or HH pair."""
    check_fields(obj)
    if "prompt" in obj:
        return {"prompt": _text(obj, "prompt")}, "prompt"
    if "chosen" in obj and "rejected" in obj:
        record, layout = to_preference(obj)
        return {"prompt": record["prompt"]}, layout
    layout = demonstration_layout(obj)
    if layout == "messages":
        messages = obj["messages"]
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") != "assistant":
            messages = messages + [{"role": "assistant", "content": ""}]  # a prompt awaits its answer
        return {"prompt": from_messages(messages)[0]}, layout
    instruction = _text(obj, "instruction")
    return {"prompt": _join(instruction, obj.get("input") or obj.get("context") or "")}, layout

