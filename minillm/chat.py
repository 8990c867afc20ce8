"""The chat template: how a (prompt, response) pair is laid out as one token sequence.

Lecture 5 §Phase 2: after SFT the model answers a prompt instead of continuing it. It learns
that on sequences in one fixed layout, and must be shown the same layout when asked later:
    <|user|>{prompt}<|assistant|>{response}<|end|>
This module is the single place the layout lives; SFT, the reward model, RLHF and
`minillm generate` all format and encode through it, and it imports nothing else from
minillm (data/ builds batches on it). The three special tokens are added to whichever
tokenizer the pretrained model used, and the model's embedding grows to match.
Left out: multi-turn conversations, system prompts, escaping special-token text typed by users.
"""
from __future__ import annotations

from typing import NamedTuple

from minillm.errors import UserError

TEMPLATE_NAME = "minillm-chat-v1"  # stored as checkpoint meta["chat_template"]
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (USER, ASSISTANT, END)


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
    """Add <|user|>, <|assistant|>, <|end|> to the tokenizer and grow the model to match.

    New ids come after the existing vocabulary, so every old token keeps its id and the
    model keeps its old embedding rows (`GPT.resize_token_embeddings`). Calling it again is a
    no-op. Returns the three ids, e.g. [77, 78, 79] on a 77-token character tokenizer.
    """
    ids = tokenizer.add_special_tokens(list(CHAT_TOKENS))
    if model is not None and model.config.vocab_size < tokenizer.vocab_size:
        model.resize_token_embeddings(tokenizer.vocab_size)
    return ids


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
                         "minillm.chat.add_chat_tokens(tokenizer, model) first")
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


def response_text(tokenizer, new_ids: list[int]) -> str:
    """Decode generated ids up to (not including) the first <|end|>."""
    end = tokenizer.special_tokens.get(END)
    if end is not None and end in new_ids:
        new_ids = new_ids[:new_ids.index(end)]
    return tokenizer.decode(new_ids)


# ----- the same layout for other programs -------------------------------------------------------

_SYSTEM = "<|system|>"  # the system turn's token (a conversation's optional first turn)

# transformers renders a list of {"role", "content"} messages with this Jinja template
# (tokenizer_config.json's "chat_template"): the layout above, turn after turn,
#   system (first only): <|system|>{text}<|end|>   user: <|user|>{text}
#   assistant: <|assistant|>{text}<|end|>           generation prompt: <|assistant|>
# so that one turn is exactly `format_example` and `apply_chat_template` gives minillm's ids.
HF_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' and loop.first -%}" + _SYSTEM + "{{ message['content'] }}" + END
    + "{%- elif message['role'] == 'user' -%}" + USER + "{{ message['content'] }}"
    + "{%- elif message['role'] == 'assistant' -%}" + ASSISTANT + "{{ message['content'] }}" + END
    + "{%- else -%}{{ raise_exception('minillm chat turns are system (first only), user and assistant, "
      "not ' ~ message['role']) }}"
    + "{%- endif -%}{%- endfor -%}"
    + "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}")
