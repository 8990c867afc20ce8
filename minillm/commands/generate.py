"""`minillm generate`: continue a prompt with a trained checkpoint, printing as it samples.

    minillm generate --ckpt runs/shakespeare --prompt "ROMEO:" --temperature 0.8 --top-k 40

The prompt is printed, then each new token as soon as it is chosen (flushed), decoded
incrementally so a character split over several byte-level tokens prints once complete.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, TextIO

from minillm import chat
from minillm.errors import UserError
from minillm.generate import stream, text_pieces


def register(subparsers) -> None:
    """Add the `generate` command."""
    parser = subparsers.add_parser("generate", help="sample a continuation of a prompt from a checkpoint")
    parser.add_argument("--ckpt", required=True, help="a checkpoint directory (with its tokenizer)")
    parser.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="how many tokens to add (default: fill the model's context)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy; <1 sharper, >1 flatter")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most probable tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus: smallest set reaching probability p")
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
    parser.add_argument("--stop", nargs="*", default=None, metavar="TOKEN",
                        help="special tokens that end the text (default: <|endoftext|> if the tokenizer has it)")
    parser.set_defaults(func=handler)


def format_prompt_for_checkpoint(ckpt, text: str) -> str:
    """The text the model should see for a user's prompt.

    An SFT checkpoint (`ckpt.meta["chat_template"] == "minillm-chat-v1"`) expects the chat
    template around the prompt: `minillm.chat.format_prompt`. A template given as a string
    with a "{prompt}" placeholder is filled in. Without a template the text is unchanged.
    """
    template = (getattr(ckpt, "meta", None) or {}).get("chat_template")
    if template == chat.TEMPLATE_NAME:
        return chat.format_prompt(text)
    if isinstance(template, str) and "{prompt}" in template:
        return template.replace("{prompt}", text)
    return text


def stop_ids_for(tokenizer, names: list[str] | None) -> list[int]:
    """Ids of the stop tokens: the named ones, or <|endoftext|> when the tokenizer has it."""
    if names is None:
        return [tokenizer.special_tokens["<|endoftext|>"]] if "<|endoftext|>" in tokenizer.special_tokens else []
    return [tokenizer.token_to_id(name) for name in names]


def print_incrementally(tokenizer, prompt_ids: list[int], new_ids: Iterable[int],
                        stop_ids: list[int], out: TextIO) -> list[int]:
    """Print each new token's text as soon as it forms complete characters; return the ids
    (the stop token included, when one ended the text)."""
    seen = []

    def recorded(tokens):
        for token in tokens:
            seen.append(token)
            yield token

    for piece in text_pieces(tokenizer, prompt_ids, recorded(new_ids), stop_ids):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return seen


def run(ckpt, args: argparse.Namespace, out: TextIO | None = None) -> list[int]:
    """Generate from a loaded checkpoint (anything with .model, .tokenizer, .meta); return new ids."""
    out = out or sys.stdout  # looked up now, so a redirected stdout is honoured
    if ckpt.tokenizer is None:
        raise UserError(f"the checkpoint {args.ckpt} has no tokenizer, so a text prompt cannot be "
                         "encoded: save it with checkpoint.save(..., tokenizer=tok)")
    tokenizer, model = ckpt.tokenizer, ckpt.model
    prompt_ids = tokenizer.encode(format_prompt_for_checkpoint(ckpt, args.prompt))
    if not prompt_ids:
        raise UserError("the prompt encodes to no tokens: give some text to continue")
    block = model.config.block_size
    if len(prompt_ids) >= block:
        raise UserError(f"the prompt is {len(prompt_ids)} tokens but the model's block_size (its "
                         f"longest context) is {block}: shorten the prompt to leave room for new tokens")
    max_new = args.max_new_tokens if args.max_new_tokens is not None else block - len(prompt_ids)
    stop_ids = stop_ids_for(tokenizer, args.stop)
    if args.stop is None and chat.uses_chat_template(ckpt.meta):
        stop_ids.append(tokenizer.token_to_id(chat.END))  # a chat model ends its answer here
    out.write(tokenizer.decode(prompt_ids))
    out.flush()
    tokens = stream(model, prompt_ids, max_new, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, stop_ids=stop_ids, seed=args.seed)
    return print_incrementally(tokenizer, prompt_ids, tokens, stop_ids, out)


def handler(args: argparse.Namespace) -> int:
    from minillm import checkpoint  # loaded only when the command runs

    run(checkpoint.load(args.ckpt), args)
    return 0
