"""`minillm chat`: talk to a trained model over several turns, each reply streamed as it is sampled.

    minillm chat --ckpt runs/pipeline/rlhf
    printf 'Where does Anna live?\\n/probs\\nWhat pet does she have?\\n/quit\\n' | minillm chat --ckpt runs/pipeline/sft

Colour in a terminal; plain text, with each typed line echoed, when stdin or stdout is not a
terminal (so a pipe gives a readable transcript). Lines starting with "/" are commands (/help).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from minillm.tokenizers import chat_template as chat
from minillm.app.chat_session import SAMPLING_RULES, ChatSession, Sampling
from minillm.app.commands.train_flags import number_flag
from minillm.errors import UserError
from minillm.app.explore import format_distribution

HELP = """commands:
  /probs        show LLM_φ(x) after each reply: the top 10 first tokens the reply was drawn from (toggle)
  /next TEXT    show LLM_φ(x) for x = exactly TEXT (type template tokens yourself, e.g. <|user|>Hi<|assistant|>)
  /temp T       sampling temperature (0 = greedy)
  /topk K       sample among the K most probable tokens (/topk off: all)
  /topp P       nucleus sampling with mass P in (0, 1] (/topp off: all)
  /reset        forget the conversation and start over
  /save FILE    append the conversation to FILE as one `messages` JSON line (what `minillm sft` reads)
  /help         this list
  /quit         leave (so do Ctrl-D and Ctrl-C)"""
COLOURS = {"you": "\033[1;32m", "model": "\033[1;36m", "note": "\033[2m", "bar": "\033[36m", "error": "\033[31m"}
RESET = "\033[0m"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "chat", help="talk to a trained model: several turns, streamed replies, /probs shows LLM_φ(x)",
        description="A conversation in the terminal with any run's model: a finetuned one (sft, rlhf, ...) "
                    "in its chat template, a pretrained one as raw completion. Type /help in the chat "
                    "for its commands.")
    p.add_argument("--ckpt", required=True, help="a run directory or checkpoint (with its tokenizer)")
    number_flag(p, "--temperature", SAMPLING_RULES["temperature"], default=Sampling.temperature,
                help="0 is greedy (default 0.7)")
    number_flag(p, "--top-k", SAMPLING_RULES["top_k"], default=None, help="sample among the k most probable tokens")
    number_flag(p, "--top-p", SAMPLING_RULES["top_p"], default=None, help="nucleus: smallest set reaching probability p")
    number_flag(p, "--max-new-tokens", SAMPLING_RULES["max_new_tokens"], default=None,
                help="longest reply in tokens (default: the room the context leaves, at least half the block)")
    number_flag(p, "--seed", SAMPLING_RULES["seed"], default=None,
                help="the same seed and the same lines give the same replies")
    p.set_defaults(func=handler)


class ChatTerminal:
    """The read-reply loop around a `ChatSession`: commands, colour, notices."""

    def __init__(self, session: ChatSession, stdin: TextIO, stdout: TextIO, colour: bool, echo: bool):
        self.session, self.stdin, self.out = session, stdin, stdout
        self.colour, self.echo, self.show_probs = colour, echo, False

    def paint(self, text: str, kind: str) -> str:
        return f"{COLOURS[kind]}{text}{RESET}" if self.colour else text

    def say(self, text: str, kind: str = "note") -> None:
        self.out.write(self.paint(text, kind) + "\n")
        self.out.flush()

    def read_line(self) -> str | None:
        """The next typed line, or None at the end of input (Ctrl-D)."""
        if self.colour:
            try:
                return input(self.paint("you> ", "you"))
            except EOFError:
                self.out.write("\n")
                return None
        line = self.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\n")
        if self.echo:
            self.say(f"you> {line}", "you")
        return line

    def loop(self) -> int:
        """Read and answer lines until /quit, Ctrl-D or Ctrl-C; always returns 0."""
        try:
            while (line := self.read_line()) is not None:
                if not self.handle(line.strip()):
                    break
        except KeyboardInterrupt:
            self.out.write("\n")
        self.say("bye")
        return 0

    def handle(self, line: str) -> bool:
        """Act on one line; False means leave."""
        if not line:
            return True
        if not line.startswith("/"):
            self.respond(line)
            return True
        command, _, arg = line.partition(" ")
        if command in ("/quit", "/exit"):
            return False
        try:
            self.command(command, arg.strip())
        except (UserError, OSError) as err:  # bad input, or a file /save cannot write
            self.say(f"error: {err}", "error")
        return True

    def command(self, command: str, arg: str) -> None:
        s = self.session.sampling
        if command == "/help":
            self.say(HELP)
        elif command == "/probs":
            self.show_probs = not self.show_probs
            self.say(f"LLM_φ(x) after each reply: {'on' if self.show_probs else 'off'}")
        elif command == "/next":
            if not arg:
                raise UserError("/next needs a prefix, e.g. /next Anna lives in")
            self.say(f"LLM_φ(x) for x = {arg!r}:")
            self.say(format_distribution(self.session.next_distribution(arg), paint=self.bar), "model")
        elif command == "/temp":
            s.temperature = _number(arg, "/temp", "temperature")
            self.say(f"temperature {s.temperature}")
        elif command == "/topk":
            s.top_k = None if arg == "off" else _number(arg, "/topk", "top_k", "or off")
            self.say(f"top-k {s.top_k or 'off'}")
        elif command == "/topp":
            s.top_p = None if arg == "off" else _number(arg, "/topp", "top_p", "or off")
            self.say(f"top-p {s.top_p or 'off'}")
        elif command == "/reset":
            self.session.reset()
            self.say("the conversation is forgotten; start again")
        elif command == "/save":
            self.save(arg)
        else:
            raise UserError(f"unknown command {command}; /help lists the commands")

    def bar(self, text: str) -> str:
        return self.paint(text, "bar")

    def respond(self, text: str) -> None:
        try:
            dropped, pieces = self.session.reply(text)
        except UserError as err:
            self.say(f"error: {err}", "error")
            return
        if dropped:
            self.say(f"(the conversation outgrew the model's context of {self.session.model.config.block_size} "
                     f"tokens: the oldest {dropped} exchange{'s' if dropped > 1 else ''} dropped)")
        self.out.write(self.paint("model> ", "model"))
        try:
            for piece in pieces:
                self.out.write(piece)
                self.out.flush()
        except UserError as err:  # the conversation so far is kept; the session goes on
            self.out.write("\n")
            self.say(f"error: {err}", "error")
            return
        self.out.write("\n")
        if self.show_probs:
            self.say("LLM_φ(x) for the reply's first token (x = the conversation so far):")
            self.say(format_distribution(self.session.first_token_distribution(), paint=self.bar), "model")

    def save(self, path: str) -> None:
        if not path:
            raise UserError("/save needs a file name, e.g. /save chats.jsonl")
        if not self.session.history:
            raise UserError("nothing to save yet: the conversation is empty")
        line = json.dumps(self.session.messages_record(), ensure_ascii=False) + "\n"
        with open(path, "a+b") as f:  # appends always land at the end; reading may look anywhere
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # the file's last line had no line end: never glue onto it
            f.write(line.encode("utf-8"))
        self.say(f"saved {len(self.session.history)} turns to {path} (one messages line, appended)")


def _number(text: str, command: str, setting: str, alternative: str = ""):
    """The value of a slash command, parsed and checked by its setting's rule (SAMPLING_RULES)."""
    rule = SAMPLING_RULES[setting]
    try:
        return rule.parse(text)
    except argparse.ArgumentTypeError:
        raise UserError(f"{command} takes {rule.expected}{' ' + alternative if alternative else ''}, "
                        f"got {text!r}") from None


def open_session(ckpt, args: argparse.Namespace) -> ChatSession:
    """A session for a loaded checkpoint: the chat template if the model was finetuned with it."""
    if getattr(ckpt, "model_kind", "gpt") != "gpt":
        raise UserError(f"{args.ckpt} holds a {ckpt.model_kind} (it scores answers, it does not write "
                         "them): chat with a language model's run, e.g. runs/pipeline/sft or rlhf")
    if ckpt.tokenizer is None:
        raise UserError(f"the checkpoint {args.ckpt} has no tokenizer, so typed text cannot be encoded")
    template = chat.uses_chat_template(ckpt.meta) or chat.has_chat_tokens(ckpt.tokenizer)
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.seed)
    return ChatSession(ckpt.model.eval(), ckpt.tokenizer, template, sampling)


def banner(session: ChatSession, where: str) -> str:
    kind = ("a finetuned model, in its chat template" if session.template else
            "a pretrained model: raw completion, no chat template (each reply is its continuation "
            "of the conversation's text, up to the end of its first line)")
    return f"minillm chat with {where}: {kind}. /help lists the commands; /quit, Ctrl-D or Ctrl-C leaves."


def handler(args: argparse.Namespace) -> int:
    from minillm.io import checkpoint  # loaded only when the command runs

    session = open_session(checkpoint.load(args.ckpt), args)
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if terminal:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    ui = ChatTerminal(session, sys.stdin, sys.stdout, colour=terminal, echo=not sys.stdin.isatty())
    ui.say(banner(session, args.ckpt))
    return ui.loop()
