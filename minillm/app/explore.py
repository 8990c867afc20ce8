"""LLM_φ(x) made visible: the most probable next tokens after a prefix, for one model or several.

Lecture 5's definition: a language model maps a prefix x to a distribution over the
vocabulary, LLM_φ(x) = ȳ = (ȳ_1, …, ȳ_|V|). `minillm chat` prints it under a reply (/probs,
/next) and the lessons' prefix explorer draws it for the pretrained, SFT and RLHF models side
by side; both read it here. Left out: attributions (which context token caused which
probability), distributions over several future tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

from minillm.engine import backend
from minillm.tokenizers import chat_template as chat
from minillm.errors import UserError
from minillm.model.sampling import HELD_BACK


@dataclass(frozen=True)
class NextToken:
    id: int
    text: str     # what the token prints as (a special token by its name)
    prob: float   # ȳ_id = P(x_{t+1} = id | x)


def token_text(tokenizer, token_id: int) -> str:
    """A token as text; a byte piece that is not a whole character shows as its vocabulary entry."""
    text = tokenizer.decode([token_id])
    return tokenizer.id_to_token(token_id) if HELD_BACK in text else text


def top_next_tokens(model, tokenizer, ids: list[int], k: int = 10) -> list[NextToken]:
    """The k most probable next tokens after `ids`, most probable first: LLM_φ(x)'s top k.

    Example: after "<|user|>Where does Anna live?<|assistant|>" an SFT model might give
    [NextToken(id=261, text='Anna', prob=0.93), NextToken(id=73, text='I', prob=0.04), ...].
    """
    if not ids:
        raise UserError("the prefix is empty: LLM_φ(x) needs at least one token of context")
    probs = backend.to_numpy(model.next_token_probs(ids))  # (V,)
    order = probs.argsort()[::-1][:k]
    return [NextToken(int(i), token_text(tokenizer, int(i)), float(probs[i])) for i in order]


def prefix_ids(tokenizer, prefix: str, template: bool) -> list[int]:
    """The ids a model reads for a prefix: a chat model gets it as a user turn awaiting its answer
    (`chat.encode_prompt`), a pretrained model the raw text."""
    return chat.encode_prompt(tokenizer, prefix) if template else tokenizer.encode(prefix)


def next_token_distributions(models: dict, prefix: str, k: int = 10, raw: bool = False) -> dict:
    """Each model's top-k next tokens after one prefix, side by side.

    Args:
        models: {name: (GPT, tokenizer, uses the chat template[, best-of n])}, as `report.load_models`
            returns; a best-of-n entry (n > 0) is left out: it has no next-token distribution of its own.
        prefix: the text typed.
        raw: give every model the literal text (no template), to compare the functions on one x.
    Returns:
        {name: [NextToken, ...]}, in the models' order.
    """
    return {name: top_next_tokens(model, tok, prefix_ids(tok, prefix, template and not raw), k)
            for name, (model, tok, template, *best_of) in models.items() if not any(best_of)}


def turn_rows(tokenizer, messages) -> tuple[list[tuple[list[str], list[int]]], list[str]]:
    """A conversation turn by turn, for drawing its loss mask (`plots.plot_loss_mask`).

    Returns:
        ([(token pieces, mask) per turn], ["1 user", "2 assistant", ...]); the rows joined
        are exactly `chat.encode_conversation(tokenizer, messages)`.
    """
    chat.check_messages(messages)
    rows = []
    for message in messages:
        ids, mask = chat.encode_turn(tokenizer, message)
        rows.append(([token_text(tokenizer, i) for i in ids], mask))
    return rows, [f"{i + 1} {m['role']}" for i, m in enumerate(messages)]


def format_distribution(tokens: list[NextToken], width: int = 30, paint=lambda text: text) -> str:
    """Text bars, one line per token: probability, a bar of `width` characters at p = 1, the token.

    Example line: "  0.931 ███████████████████████████▉   'Anna'"
    """
    lines = []
    for t in tokens:
        full, part = divmod(round(t.prob * width * 8), 8)
        bar = "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])
        lines.append(f"  {t.prob:6.3f} {paint(bar.ljust(width + 1))} {t.text!r}")
    return "\n".join(lines)
