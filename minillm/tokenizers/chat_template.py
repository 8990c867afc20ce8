"""The chat template: how a conversation is laid out as one token sequence.

Lecture 5 §Phase 2: after SFT the model answers a prompt instead of continuing it. It learns
that on sequences in one fixed layout, and must be shown the same layout when asked later:
    <|user|>{prompt}<|assistant|>{response}<|end|>
A conversation of several turns is the concatenation of its turns, each in its own form:
    system turn (optional, first only):  <|system|>{text}<|end|>
    user turn:                           <|user|>{text}
    assistant turn:                      <|assistant|>{text}<|end|>
so a one-turn conversation is exactly `format_example`, and the prompt for the next answer
ends with <|assistant|>. This module is the single place the layout lives; SFT, the reward
model, RLHF, `minillm generate` and `minillm chat` all format and encode through it (the
Hugging Face template below is tested against `encode_conversation`), and it imports nothing
else from minillm (data/ builds batches on it). The special tokens are added to whichever
tokenizer the pretrained model used, and the model's embedding grows to match.
Left out: escaping special-token text typed by users, tool calls.
"""
from __future__ import annotations

from typing import NamedTuple

from minillm.errors import UserError

TEMPLATE_NAME = "minillm-chat-v1"  # stored as checkpoint meta["chat_template"]
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (USER, ASSISTANT, END)
# After the first three: appended, so the three keep the ids they have in a tokenizer without it.
SYSTEM = "<|system|>"
ROLES = ("system", "user", "assistant")


class ResponseTooLong(UserError):
    """A demonstration whose response (with the template) alone does not fit in the block."""


def format_prompt(prompt: str) -> str:
    """What the model sees before it answers.

    Example: "How to make pizza" -> "<|user|>How to make pizza<|assistant|>"
    """
    return f"{USER}{prompt}{ASSISTANT}"


def format_example(prompt: str, response: str) -> str:
    """A whole demonstration: the formatted prompt, the response, and the end token.

    Example: ("Add 2 and 3.", "5") -> "<|user|>Add 2 and 3.<|assistant|>5<|end|>"
    """
    return format_prompt(prompt) + response + END


def uses_chat_template(meta: dict | None) -> bool:
    """True when a checkpoint's meta says the model was finetuned with this template."""
    return (meta or {}).get("chat_template") == TEMPLATE_NAME


def add_chat_tokens(tokenizer, model=None) -> list[int]:
    """Add <|user|>, <|assistant|>, <|end|> and then <|system|> to the tokenizer; grow the model.

    New ids come after the existing vocabulary, so every old token keeps its id and the
    model keeps its old embedding rows (`GPT.resize_token_embeddings`). Calling it again is a
    no-op; on a tokenizer that has the first three only (a checkpoint made before system turns
    existed), it adds <|system|> alone. Returns the (user, assistant, end) ids, e.g.
    [77, 78, 79] on a 77-token character tokenizer (<|system|> is then 80).
    """
    ids = tokenizer.add_special_tokens([*CHAT_TOKENS, SYSTEM])[:3]
    if model is not None and model.config.vocab_size < tokenizer.vocab_size:
        model.resize_token_embeddings(tokenizer.vocab_size)
    return ids


def has_chat_tokens(tokenizer) -> bool:
    """True when the tokenizer knows <|user|>, <|assistant|> and <|end|> (a finetuned model's)."""
    return all(t in tokenizer.special_tokens for t in CHAT_TOKENS)


class ChatTokenIds(NamedTuple):
    """The ids of the three chat tokens in one tokenizer, by name."""
    user: int
    assistant: int
    end: int

    @property
    def pad(self) -> int:
        """The id that pads batches: <|end|>, because nothing after a response's end is read."""
        return self.end


def chat_token_ids(tokenizer) -> ChatTokenIds:
    """The (user, assistant, end) ids; a clear error if the tokenizer has no chat tokens yet."""
    missing = [t for t in CHAT_TOKENS if t not in tokenizer.special_tokens]
    if missing:
        raise UserError(f"the tokenizer has no chat tokens {missing}: call "
                         "minillm.tokenizers.chat_template.add_chat_tokens(tokenizer, model) first")
    return ChatTokenIds(*(tokenizer.special_tokens[t] for t in CHAT_TOKENS))


def encode_prompt(tokenizer, prompt: str, max_tokens: int | None = None) -> list[int]:
    """The ids of `format_prompt(prompt)`, at most `max_tokens` long.

    A prompt that is too long loses its FIRST tokens (the same rule as `encode_example`);
    the template tokens are always kept, so the model still sees where its answer begins.
    """
    user, assistant, _ = chat_token_ids(tokenizer)
    prompt_ids = tokenizer.encode(prompt)
    if max_tokens is not None:
        room = max_tokens - 2
        if room < 1:
            raise UserError(f"max_tokens={max_tokens} leaves no room for the prompt inside the template")
        prompt_ids = prompt_ids[-room:]
    return [user, *prompt_ids, assistant]


def build_sequence(prompt_ids, response_ids, block_size: int, head=(), separator=()) -> tuple[list[int], list[int]]:
    """head + prompt + separator + response as one sequence, with its loss mask.

    The sequence may hold block_size + 1 ids (block_size inputs, each predicting the next).
    Truncation rule: when it is longer, the prompt loses tokens from its LEFT (the start of
    the question) until it fits; head, separator and response are never cut. If not even
    one prompt token fits, the pair cannot be trained on: ResponseTooLong.

    Returns:
        (ids, loss_mask): lists of equal length L <= block_size + 1; mask 1 on the response.
    """
    head, separator = list(head), list(separator)
    response = [int(i) for i in response_ids]
    room = block_size + 1 - len(head) - len(separator) - len(response)  # prompt tokens that fit
    if room < 1:
        raise ResponseTooLong(f"the response ({len(response)} tokens) and the template "
                              f"({len(head) + len(separator)} tokens) leave no room for the prompt "
                              f"in a block of {block_size}")
    prompt = [int(i) for i in prompt_ids][-room:]
    context = head + prompt + separator
    return context + response, [0] * len(context) + [1] * len(response)


def encode_example(tokenizer, prompt: str, response: str, block_size: int) -> tuple[list[int], list[int]]:
    """One demonstration as the trainer sees it: token ids and a loss mask of the same length.

    ids = <|user|> prompt <|assistant|> response <|end|>; loss_mask is 1 on the response
    tokens and on <|end|> (the model must learn to stop), 0 on template and prompt tokens.
    The sequence holds at most block_size + 1 ids (block_size inputs, each predicting the
    next id). A longer pair loses tokens from the prompt's left; the response is never cut.

    Args:
        tokenizer: a tokenizer with the chat tokens (see `add_chat_tokens`).
        prompt, response: the demonstration's texts.
        block_size: the model's context length T.
    Returns:
        (ids, loss_mask), two lists of length L <= block_size + 1.
    Raises:
        ResponseTooLong: the template and response alone exceed the block.
    """
    user, assistant, end = chat_token_ids(tokenizer)
    return build_sequence(tokenizer.encode(prompt), tokenizer.encode(response) + [end],
                          block_size, head=[user], separator=[assistant])


# ----- conversations: any number of turns ------------------------------------------------

def format_conversation(messages, add_generation_prompt: bool = False) -> str:
    """A conversation as one string in the template (the text twin of `encode_conversation`).

    Example: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
              {"role": "user", "content": "Bye"}], add_generation_prompt=True
        -> "<|user|>Hi<|assistant|>Hello.<|end|><|user|>Bye<|assistant|>"
    """
    check_messages(messages)
    heads = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
    text = "".join(heads[m["role"]] + m["content"] + ("" if m["role"] == "user" else END) for m in messages)
    if add_generation_prompt:
        _check_generation_prompt(messages)
        text += ASSISTANT
    return text


def _check_generation_prompt(messages) -> None:
    if messages[-1]["role"] != "user":
        raise UserError("add_generation_prompt needs a conversation that ends with a user turn "
                         f"(the model answers it), but the last turn is the {messages[-1]['role']}'s")


def encode_turn(tokenizer, message: dict) -> tuple[list[int], list[int]]:
    """One turn's ids and loss mask: the template tokens around `tokenizer.encode(text)`.

    The mask is 1 on an assistant turn's text tokens and its <|end|> (what SFT teaches the
    model to write, and to stop), 0 on everything else, <|assistant|> included.
    Example (word tokens): assistant "Moo." -> ([<|assistant|>, Moo, ., <|end|>], [0, 1, 1, 1])
    """
    user, assistant, end = chat_token_ids(tokenizer)
    body = tokenizer.encode(message["content"])  # text only: user text never becomes a special token id
    if message["role"] == "user":
        return [user, *body], [0] * (1 + len(body))
    if message["role"] == "assistant":
        return [assistant, *body, end], [0] + [1] * (len(body) + 1)
    if SYSTEM not in tokenizer.special_tokens:
        raise UserError(f"the tokenizer has no {SYSTEM} token (it was finetuned before system turns "
                         "existed): drop the system turn, or call minillm.tokenizers.chat_template.add_chat_tokens(tokenizer, "
                         "model) and finetune")
    return [tokenizer.special_tokens[SYSTEM], *body, end], [0] * (len(body) + 2)


def encode_conversation(tokenizer, messages, max_tokens: int | None = None,
                        add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """The reference encoding of a conversation: token ids and the SFT loss mask.

    ids are the turns' ids one after another (`encode_turn`), plus <|assistant|> at the end
    with add_generation_prompt; loss_mask[t] = 1 exactly where ids[t] is an assistant turn's
    text token or its <|end|>. A one-turn conversation gives `encode_example`'s ids and mask.

    Truncation (only with max_tokens, the most ids the result may hold; a trainer passes
    block_size + 1): whole turns are dropped from the front, oldest user/assistant exchange
    first, then the system turn, until the rest fits. If the last exchange alone is still too
    long, its user text loses tokens from the left as in `encode_example`.

    Args:
        tokenizer: a tokenizer with the chat tokens (see `add_chat_tokens`).
        messages: [{"role": "system" | "user" | "assistant", "content": str}, ...]: an optional
            system turn first, then user and assistant turns taking turns, the user first.
        max_tokens: the most ids to return (None: no limit).
        add_generation_prompt: end with <|assistant|>, the prompt for the next answer (the
            conversation must end with a user turn).
    Returns:
        (ids, loss_mask), two lists of the same length.
    Raises:
        ValueError: bad messages, or no system token for a system turn.
        minillm.data.sft_batches.ResponseTooLong: the last answer alone does not fit in max_tokens.
    """
    check_messages(messages)
    turns = [encode_turn(tokenizer, m) for m in messages]
    if add_generation_prompt:
        _check_generation_prompt(messages)
        turns.append(([chat_token_ids(tokenizer)[1]], [0]))
    groups = _exchanges(messages, turns)
    while len(groups) > 1 and sum(len(ids) for g in groups for ids, _ in g) > (max_tokens or float("inf")):
        groups.pop(0)  # the oldest exchange, or the system turn once it is the oldest
    kept = [t for g in groups for t in g]
    ids, mask = [i for t, _ in kept for i in t], [m for _, t in kept for m in t]
    if max_tokens is not None and len(ids) > max_tokens:
        return _cut_last_exchange(kept, max_tokens)
    return ids, mask


def _exchanges(messages, turns) -> list[list]:
    """Turns grouped as they are dropped: [system], then each user turn with what follows it."""
    groups = []
    for message, turn in zip(messages, turns):
        if message["role"] == "assistant":
            groups[-1].append(turn)
        else:
            groups.append([turn])
    groups[-1] += turns[len(messages):]  # the generation prompt belongs to the last exchange
    return groups


def _cut_last_exchange(exchange, max_tokens: int) -> tuple[list[int], list[int]]:
    """One user turn (and its answer) that does not fit: cut the user text from the left."""
    (user_ids, _), *rest = exchange
    answer = [i for t, _ in rest for i in t]
    if not answer or len(answer) == 1:  # no answer yet, or only the generation prompt
        room = max_tokens - 1 - len(answer)
        if room < 1:
            raise UserError(f"max_tokens={max_tokens} leaves no room for the user turn inside the template")
        ids = user_ids[:1] + user_ids[1:][-room:] + answer
        return ids, [0] * len(ids)
    return build_sequence(user_ids[1:], answer[1:], max_tokens - 1, head=user_ids[:1], separator=answer[:1])


def check_messages(messages) -> None:
    """Raise ValueError unless `messages` is a conversation `encode_conversation` can lay out."""
    problem = messages_problem(messages)
    if problem:
        raise UserError(problem)


def messages_problem(messages) -> str | None:
    """What is wrong with a conversation, in one sentence, or None when it is well formed.

    Well formed: a non-empty list of {"role", "content": str} objects; an optional system turn
    first, then user and assistant turns taking turns, starting with the user.
    """
    if not isinstance(messages, list) or not messages:
        return "'messages' should be a non-empty list of {role, content} objects"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            return f"message {i} should be {{'role': system|user|assistant, 'content': str}}"
    first = 1 if messages[0]["role"] == "system" else 0
    for i, m in enumerate(messages[first:], start=first):
        expected = "user" if (i - first) % 2 == 0 else "assistant"
        if m["role"] == "system":
            return f"message {i} has role 'system', but a system turn may only come first"
        if m["role"] != expected:
            return (f"message {i} has role {m['role']!r} where {expected!r} belongs: user and "
                    "assistant take turns, the user first")
    if len(messages) == first:
        return "the conversation has no user turn"
    return None


def response_text(tokenizer, new_ids: list[int]) -> str:
    """Decode generated ids up to (not including) the first <|end|>."""
    end = tokenizer.special_tokens.get(END)
    if end is not None and end in new_ids:
        new_ids = new_ids[:new_ids.index(end)]
    return tokenizer.decode(new_ids)


# ----- the same layout for other programs -------------------------------------------------------

# transformers renders a list of {"role", "content"} messages with this Jinja template
# (tokenizer_config.json's "chat_template"): the layout above, turn after turn,
#   system (first only): <|system|>{text}<|end|>   user: <|user|>{text}
#   assistant: <|assistant|>{text}<|end|>           generation prompt: <|assistant|>
# so that one turn is exactly `format_example` and `apply_chat_template` gives minillm's ids.
HF_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' and loop.first -%}" + SYSTEM + "{{ message['content'] }}" + END
    + "{%- elif message['role'] == 'user' -%}" + USER + "{{ message['content'] }}"
    + "{%- elif message['role'] == 'assistant' -%}" + ASSISTANT + "{{ message['content'] }}" + END
    + "{%- else -%}{{ raise_exception('minillm chat turns are system (first only), user and assistant, "
      "not ' ~ message['role']) }}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}")
