"""`minillm generate`: continue a prompt with a trained checkpoint, printing as it samples.

    minillm generate --ckpt runs/shakespeare --prompt "ROMEO:" --temperature 0.8 --top-k 40
    minillm generate --ckpt runs/sft --prompt "Where does Anna live?" --best-of 4 --rm runs/rm

The prompt is printed, then each new token as soon as it is chosen (flushed), decoded
incrementally so a character split over several byte-level tokens prints once complete.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, TextIO

from minillm.io import checks
from minillm.app.chat_session import SAMPLING_RULES
from minillm.app.commands.train_flags import number_flag
from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.errors import UserError
from minillm.model.sampling import stream, text_pieces


def register(subparsers) -> None:
    """Add the `generate` command."""
    parser = subparsers.add_parser("generate", help="sample a continuation of a prompt from a checkpoint")
    parser.add_argument("--ckpt", required=True, help="a checkpoint directory (with its tokenizer)")
    parser.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    number_flag(parser, "--max-new-tokens", SAMPLING_RULES["max_new_tokens"], default=None,
                help="how many tokens to add (default: fill the model's context)")
    number_flag(parser, "--temperature", SAMPLING_RULES["temperature"], default=1.0,
                help="0 is greedy; <1 sharper, >1 flatter")
    number_flag(parser, "--top-k", SAMPLING_RULES["top_k"], default=None, help="sample among the k most probable tokens")
    number_flag(parser, "--top-p", SAMPLING_RULES["top_p"], default=None,
                help="nucleus: smallest set reaching probability p")
    number_flag(parser, "--seed", SAMPLING_RULES["seed"], default=None, help="the same seed gives the same text")
    parser.add_argument("--stop", nargs="*", default=None, metavar="TOKEN",
                        help="special tokens that end the text (default: <|endoftext|> if the tokenizer has it)")
    number_flag(parser, "--best-of", checks.POSITIVE_INT, default=None, metavar="N",
                help="sample N answers and print the one the --rm reward model scores highest "
                             "(a chat checkpoint; the candidates and their scores go to stderr)")
    parser.add_argument("--rm", help="the reward-model run that picks the best of --best-of N answers")
    parser.set_defaults(func=handler)


def format_prompt_for_checkpoint(ckpt, text: str) -> str:
    """The text the model should see for a user's prompt.

    An SFT checkpoint (`ckpt.meta["chat_template"] == "minillm-chat-v1"`) expects the chat
    template around the prompt: `minillm.tokenizers.chat_template.format_prompt`. A template given as a string
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
    unknown = [name for name in names if name not in tokenizer.special_tokens]
    if unknown:
        raise UserError(f"--stop takes special tokens of the model's tokenizer ({', '.join(tokenizer.special_tokens) or 'it has none'}), "
                        f"got {', '.join(unknown)}")
    return [tokenizer.special_tokens[name] for name in names]


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


def best_of(ckpt, reward, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> str:
    """Best-of-n: N sampled answers of a chat model, the reward model's favourite printed.

    The candidates and their scores go to `err`, with best-of-n's KL to the model as sampled
    (at --temperature), log N − (N−1)/N nats (`rl_best_of_n.best_of_n_kl`): the price of picking, paid
    without training.
    """
    from minillm.phases.rl import best_of_n as rl_best_of_n  # loaded only when the command runs
    out, err = out or sys.stdout, err or sys.stderr
    if not chat.uses_chat_template(ckpt.meta):
        raise UserError(f"--best-of needs a chat model (an SFT or RLHF run); {args.ckpt} has no chat template")
    if args.top_k is not None or args.top_p is not None:
        raise UserError("--best-of samples at --temperature only: leave out --top-k and --top-p")
    tok, model = ckpt.tokenizer, ckpt.model
    prompt_ids = chat.encode_prompt(tok, args.prompt)
    room = model.config.block_size - len(prompt_ids)
    max_new = min(args.max_new_tokens or room, room)
    end = chat.chat_token_ids(tok).end
    n = args.best_of
    responses, scores = rl_best_of_n.best_of_n_candidates(model, reward, [prompt_ids], n, max_new, end,
                                                          args.temperature, args.seed)
    scores = backend.to_numpy(scores)[0].tolist()
    ranked = sorted(zip(scores, responses), key=lambda pair: -pair[0])
    for rank, (score, ids) in enumerate(ranked, start=1):
        err.write(f"{rank}. {score:+.4f}  {chat.response_text(tok, ids)}\n")
    sampled = "model" if args.temperature == 1.0 else f"model sampled at τ = {args.temperature}"
    kl = rl_best_of_n.best_of_n_kl(n)
    err.write(f"best of {n}: KL(best-of-{n} ‖ {sampled}) = log {n} − {n - 1}/{n} = {kl:.3f} nats "
              "(at most; exact when no two answers tie)\n")
    answer = chat.response_text(tok, ranked[0][1])
    out.write(answer + "\n")
    return answer


def handler(args: argparse.Namespace) -> int:
    from minillm.io import checkpoint  # loaded only when the command runs

    if (args.best_of is None) != (args.rm is None):
        raise UserError("--best-of N and --rm RM_RUN go together: the reward model picks the best of N samples")
    if args.best_of is not None and args.temperature == 0:
        raise UserError("--best-of samples N answers at --temperature > 0 (at 0 all N would be the greedy one)")
    ckpt = checkpoint.load_kind(args.ckpt, "gpt", "--ckpt")
    if args.best_of is None:
        run(ckpt, args)
        return 0
    reward = checkpoint.load_kind(args.rm, "reward_model", "--rm")
    best_of(ckpt, reward.model.eval(), args)
    return 0
