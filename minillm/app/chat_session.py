"""A conversation with a trained model: the context it sees, trimmed to fit, and streamed replies.

Lecture 5: a chat model is still LLM_φ. It answers by continuing the conversation so far, laid
out in the chat template it was finetuned with, one sampled token at a time (a KV cache keeps
each step to one new position). The context is every turn so far; when it would leave too
little room for the answer in the model's block, the oldest exchanges are dropped whole (the
session says how many). A pretrained model knows no template: it gets the raw text of the
conversation, one line per turn, and its reply is its continuation up to the end of its first
line. `minillm chat` is the terminal around this; the pipeline report holds one conversation
per model with it. Left out: keeping the KV cache from one reply to the next, system turns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from minillm.io import checks
from minillm.tokenizers import chat_template as chat
from minillm.tokenizers.base import ENDOFTEXT
from minillm.errors import UserError
from minillm.app.explore import NextToken, top_next_tokens
from minillm.model.sampling import stream, text_pieces


@dataclass
class Sampling:
    """How replies are drawn (see `minillm.model.sampling.generate`); changed in a chat by /temp, /topk, /topp."""

    temperature: float = 0.7
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None   # None: all the room left (the context keeps at least half the block free)
    seed: int | None = None             # reply n is drawn with seed + n: a session replays exactly

    def check(self) -> None:
        """Refuse a setting no sampler can use, in one sentence (None means "off" or "default")."""
        for name, rule in SAMPLING_RULES.items():
            rule.check(name, getattr(self, name))


# One rule per sampling setting (minillm/io/checks.py): `minillm chat`'s flags and slash commands use them too.
SAMPLING_RULES = {"temperature": checks.NONNEGATIVE, "top_k": checks.POSITIVE_INT, "top_p": checks.PROBABILITY,
                  "max_new_tokens": checks.POSITIVE_INT, "seed": checks.SEED}


class ChatSession:
    """The turns so far and how to answer the next one.

    Args:
        model: a GPT.
        tokenizer: its tokenizer.
        template: True for a finetuned model (SFT, RLHF, ...): the chat template; False for a
            pretrained model: raw completion.
        sampling: the sampling settings (a `Sampling`).
    """

    def __init__(self, model, tokenizer, template: bool, sampling: Sampling | None = None):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.sampling = sampling or Sampling()
        self.history: list[dict] = []   # every turn, for /save
        self.context: list[dict] = []   # the turns the model still sees
        self.last_prompt: list[int] | None = None  # the ids the last reply was sampled after
        self.replies = 0
        self.sampling.check()
        self._check_room()

    # ----- the context ---------------------------------------------------------------
    def reset(self) -> None:
        """Start over: no turns, no context."""
        self.history, self.context, self.last_prompt = [], [], None

    def _check_room(self) -> int:
        """Positions kept free for the reply: max_new_tokens, or half the block."""
        block = self.model.config.block_size
        room = self.sampling.max_new_tokens or block // 2
        if not 0 < room < block:
            raise UserError(f"max_new_tokens must lie between 1 and {block - 1} (the model's block_size "
                             f"{block} also holds the conversation), got {room}")
        return room

    def encode(self, turns: list[dict]) -> list[int]:
        """The ids the model reads for `turns` (ending with the user's), ready for its answer."""
        if self.template:
            return chat.encode_conversation(self.tokenizer, turns, add_generation_prompt=True)[0]
        return self.tokenizer.encode("".join(t["content"] + "\n" for t in turns))

    def prompt_for(self, text: str) -> tuple[list[int], int]:
        """Add a user turn; return the ids to answer it from and how many old exchanges were dropped.

        Whole exchanges (a user turn and its answer) go, oldest first, until the rest leaves
        room for the reply; a single user turn longer than that loses its first tokens.
        """
        if not text.strip():
            raise UserError("the message is empty: type some text for the model to answer")
        self.tokenizer.encode(text)  # a character the tokenizer cannot read fails here, before the turn is kept
        limit = self.model.config.block_size - self._check_room()
        self.context.append({"role": "user", "content": text})
        self.history.append({"role": "user", "content": text})
        dropped = 0
        while len(self.context) > 1 and len(self.encode(self.context)) > limit:
            del self.context[:2]
            dropped += 1
        if not self.template:
            return self.encode(self.context)[-limit:], dropped
        ids = chat.encode_conversation(self.tokenizer, self.context, max_tokens=limit, add_generation_prompt=True)[0]
        return ids, dropped

    # ----- replies ---------------------------------------------------------------------
    def stop_ids(self) -> list[int]:
        """A chat model stops at <|end|>; any model at <|endoftext|> if its tokenizer has one."""
        names = ([chat.END] if self.template else []) + [ENDOFTEXT]
        return [self.tokenizer.special_tokens[n] for n in names if n in self.tokenizer.special_tokens]

    def reply(self, text: str) -> tuple[int, Iterator[str]]:
        """Answer a user message: (exchanges dropped from the context, the reply's text pieces).

        The pieces come as the tokens are sampled; when the iterator ends (or is closed early,
        e.g. by Ctrl-C), what was said so far becomes the assistant's turn.
        """
        ids, dropped = self.prompt_for(text)
        return dropped, self._stream(ids)

    def _stream(self, ids: list[int]) -> Iterator[str]:
        s = self.sampling
        s.check()  # settings changed since the start (a slash command, or code) are checked again
        self.last_prompt = ids
        max_new = min(s.max_new_tokens or self.model.config.block_size, self.model.config.block_size - len(ids))
        seed = None if s.seed is None else s.seed + self.replies
        self.replies += 1
        tokens = stream(self.model, ids, max_new, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                        stop_ids=self.stop_ids(), seed=seed)
        said = ""
        try:
            for piece in text_pieces(self.tokenizer, ids, tokens, self.stop_ids()):
                if self.template:
                    said += piece
                    yield piece
                    continue
                combined = (said + piece).lstrip()  # raw completion: one line, no leading blank lines
                done = "\n" in combined  # after lstrip: a line break that follows some text
                combined = combined.split("\n")[0]
                if len(combined) > len(said):
                    yield combined[len(said):]
                said = combined
                if done:
                    return
        finally:
            self._answered(said)

    def _answered(self, text: str) -> None:
        turn = {"role": "assistant", "content": text if self.template else text.strip("\n")}
        self.context.append(turn)
        self.history.append(dict(turn))

    def answer(self, text: str) -> str:
        """The whole reply at once (for reports and tests)."""
        return "".join(self.reply(text)[1])

    # ----- LLM_φ(x) -------------------------------------------------------------------------
    def first_token_distribution(self, k: int = 10) -> list[NextToken]:
        """The top-k of LLM_φ(x) where x is what the last reply was sampled after."""
        if self.last_prompt is None:
            raise UserError("no reply yet: say something first, or use /next TEXT")
        return top_next_tokens(self.model, self.tokenizer, self.last_prompt, k)

    def next_distribution(self, prefix: str, k: int = 10) -> list[NextToken]:
        """The top-k of LLM_φ(x) for x = exactly `prefix` (special tokens typed in it count)."""
        ids = self.tokenizer.encode(prefix)
        return top_next_tokens(self.model, self.tokenizer, ids[-self.model.config.block_size:], k)

    def messages_record(self) -> dict:
        """The whole conversation in the `messages` layout `minillm sft` reads."""
        return {"messages": [dict(m) for m in self.history]}
