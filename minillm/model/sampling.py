"""Sampling text from a language model: one token at a time, with a KV cache.

Lecture: a language model gives P(x_{t+1} | x_1..x_t); to write text we draw x_{t+1} from it,
append it, and ask again. How we draw is a choice: greedy (the argmax), temperature
(p ∝ exp(z/τ)), top-k, top-p (nucleus). RLHF samples many responses at once and needs the
policy's log π(y_t) of each sampled token, so this module returns those too.
Left out: beam search, repetition penalties, speculative decoding, sliding the context past
block_size (a request that does not fit raises ValueError instead).
The array-taking functions accept host (NumPy) or device arrays: they go through
`backend.asarray`, so an n-gram model's NumPy probabilities sample on a GPU too.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator, Sequence

from minillm.engine import backend, ops
from minillm.model import functional as F
from minillm.errors import UserError
from minillm.model.kv_cache import KVCache
from minillm.engine.tensor import Tensor, no_grad


# ----- turning logits into a token ----------------------------------------------------

def log_probs(logits):
    """log softmax of raw logits (B, V) -> (B, V): the model's log P(v | context) at τ = 1."""
    return ops.log_softmax(backend.asarray(logits), axis=-1)


def pick(matrix, columns):
    """matrix (B, V), columns (B,) -> (B,): matrix[b, columns[b]] for every row b."""
    matrix, columns = backend.asarray(matrix), backend.asarray(columns)
    return backend.xp.take_along_axis(matrix, columns[:, None], axis=-1)[:, 0]


def sampling_probs(logits, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None):
    """The distribution we sample from, (B, V) logits -> (B, V) probabilities (float64).

    temperature: p_i ∝ exp(z_i / τ); τ < 1 sharpens, τ > 1 flattens.
    top_k: keep the k most probable tokens, p_i = 0 for the rest, renormalise.
    top_p: nucleus sampling; sort by probability and keep the smallest set of top tokens
        whose probability reaches p (the most probable token is always kept), renormalise.
    Ties are broken by the sort order, so top_k keeps exactly k tokens.
    """
    xp = backend.xp
    z = backend.asarray(logits).astype(xp.float64) / temperature  # (B, V), on the device
    p = ops.softmax(z, axis=-1)
    if top_k is None and top_p is None:
        return p
    order = xp.argsort(-p, axis=-1)                              # (B, V) most probable first
    sorted_p = xp.take_along_axis(p, order, axis=-1)
    keep_sorted = xp.ones(p.shape, dtype=bool)
    if top_k is not None:
        keep_sorted &= xp.arange(p.shape[-1])[None, :] < top_k
    if top_p is not None:
        before = xp.cumsum(sorted_p, axis=-1) - sorted_p         # mass of the tokens ranked above
        keep_sorted &= before < top_p
    keep = xp.take_along_axis(keep_sorted, xp.argsort(order, axis=-1), axis=-1)  # back to vocab order
    p = xp.where(keep, p, 0.0)
    return p / p.sum(axis=-1, keepdims=True)


def sample(probs, rng):
    """One token per row from (B, V) probabilities, by inverting the cumulative distribution."""
    xp = backend.xp
    probs = backend.asarray(probs)
    cdf = xp.cumsum(probs, axis=-1)                                # (B, V)
    u = (1.0 - rng.random((probs.shape[0], 1))) * cdf[:, -1:]     # in (0, total]: never a p = 0 token
    return xp.minimum((cdf < u).sum(axis=-1), probs.shape[-1] - 1)  # (B,)


def choose(logits, temperature, top_k, top_p, rng):
    """(B, V) logits -> (B,) token ids: argmax when temperature is 0, else a sample."""
    logits = backend.asarray(logits)
    if temperature == 0:
        return logits.argmax(axis=-1)
    return sample(sampling_probs(logits, temperature, top_k, top_p), rng)


# ----- the two decoders: with a KV cache, and the full-recompute twin ----------------

class CachedDecoder:
    """Prefill the prompts once, then run the model on ONE new position per step.

    Prompts of different lengths are left-padded to the longest (P); a key mask hides the
    padding and each row's position ids start at 0, so a row decodes exactly as if alone.
    """

    def __init__(self, model, rows: list[list[int]], max_new_tokens: int):
        xp = backend.xp
        self.model, self.rows = model, rows
        self.lengths = xp.asarray([len(r) for r in rows])           # (B,)
        P = max(len(r) for r in rows)
        self.P = P
        key_mask = xp.arange(P + max_new_tokens)[None, :] >= (P - self.lengths)[:, None]  # (B, P+N)
        self.cache = KVCache.for_model(model, len(rows), P + max_new_tokens, key_mask=key_mask)
        self.steps = 0

    def start(self):
        """Run the prompts, all in one batch; return the logits for the first new token, (B, V).

        Each row is left-padded to P with token 0; its position ids count from its first real
        token, and the cache's key mask hides the padding from every query, so each row
        decodes as if alone. (A padding query sees only itself, see the model's attention,
        so it stays finite and never reaches a real row.)"""
        xp, P = backend.xp, self.P
        ids = [[0] * (P - len(row)) + list(row) for row in self.rows]                # (B, P)
        pad = P - self.lengths                                                    # (B,)
        positions = xp.maximum(xp.arange(P)[None, :] - pad[:, None], 0)        # (B, P)
        with no_grad():
            return self.model(ids, cache=self.cache, positions=positions).data[:, -1]

    def step(self, tokens):
        """Feed the tokens just chosen, (B,); return the logits for the next one, (B, V)."""
        positions = (self.lengths + self.steps)[:, None]              # (B, 1)
        self.steps += 1
        with no_grad():
            return self.model(tokens[:, None], cache=self.cache, positions=positions).data[:, -1]


class RecomputeDecoder:
    """The twin without a cache: every step runs the whole growing sequence again (O(T²))."""

    def __init__(self, model, rows: list[list[int]], max_new_tokens: int):
        self.model, self.rows = model, [list(r) for r in rows]

    def start(self):
        with no_grad():
            if len({len(r) for r in self.rows}) == 1:
                return self.model(self.rows).data[:, -1]
            # one row at a time: without a cache the model has no padding mask
            return backend.xp.stack([self.model([r]).data[0, -1] for r in self.rows])

    def step(self, tokens):
        for row, token in zip(self.rows, backend.to_numpy(tokens).tolist()):
            row.append(int(token))
        return self.start()


# ----- input checks -------------------------------------------------------------------

def _as_rows(prompt_ids) -> tuple[list[list[int]], bool]:
    """A prompt (T,) or a batch of prompts (B, T_b) -> (list of int lists, is_single)."""
    if isinstance(prompt_ids, Tensor):
        prompt_ids = prompt_ids.data
    if hasattr(prompt_ids, "ndim"):
        prompt_ids = backend.to_numpy(prompt_ids).tolist()
    prompt_ids = list(prompt_ids)
    single = not prompt_ids or not hasattr(prompt_ids[0], "__len__")  # ints, not rows
    rows = [prompt_ids] if single else [list(r) for r in prompt_ids]
    if not rows or any(len(r) == 0 for r in rows):
        raise UserError("the prompt is empty: give at least one token id to condition on "
                         "(e.g. a newline or <|endoftext|> token)")
    for r in rows:
        if any(isinstance(i, (float, bool)) for i in r):
            raise UserError(f"prompt token ids must be integers, got {r[:5]}...")
    return [[int(i) for i in r] for r in rows], single


def _check_settings(model, rows, max_new_tokens, temperature, top_k, top_p) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise UserError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not temperature >= 0 or math.isinf(temperature):
        raise UserError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise UserError(f"top_k must be a positive integer (or None for no limit), got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"top_p must lie in (0, 1] (1 keeps every token), got {top_p}")
    block = model.config.block_size
    longest = max(len(r) for r in rows)
    if longest + max_new_tokens > block:
        raise UserError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} needs "
                         f"{longest + max_new_tokens} positions, but the model's block_size is "
                         f"{block}: ask for at most {max(block - longest, 0)} new tokens or "
                         f"shorten the prompt")


# ----- the sampling loop --------------------------------------------------------------

def decode_steps(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 stop_ids: Sequence[int] | None = None, seed: int | None = None,
                 use_cache: bool = True) -> Iterator[tuple[list[int | None], list[float | None]]]:
    """The loop under `generate` and `stream`: one (tokens, logp) pair per step: each token and its log π(y_t).

    Each is a list with one entry per row; a row that has already stopped gets None.
    Arguments as in `generate`.
    """
    rows, _ = _as_rows(prompt_ids)
    _check_settings(model, rows, max_new_tokens, temperature, top_k, top_p)
    rng = backend.make_rng(seed) if seed is not None else backend.get_rng()
    stops = set(stop_ids or ())
    active = [True] * len(rows)
    decoder = (CachedDecoder if use_cache else RecomputeDecoder)(model, rows, max_new_tokens)
    logits = decoder.start() if max_new_tokens else None              # (B, V)
    for step in range(max_new_tokens):
        tokens = choose(logits, temperature, top_k, top_p, rng)       # (B,)
        chosen = pick(log_probs(logits), tokens)               # (B,) log π(y_t)
        tokens_h, chosen_h = backend.to_numpy(tokens).tolist(), backend.to_numpy(chosen).tolist()
        yield ([t if a else None for t, a in zip(tokens_h, active)],
               [logp if a else None for logp, a in zip(chosen_h, active)])
        active = [a and t not in stops for t, a in zip(tokens_h, active)]
        if not any(active) or step == max_new_tokens - 1:
            return
        logits = decoder.step(tokens)


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             stop_ids: Sequence[int] | None = None, seed: int | None = None,
             return_logprobs: bool = False, use_cache: bool = True):
    """Continue a prompt (or a batch of prompts) by sampling from the model.

    Each step draws x_{t+1} ~ P(· | x_1..x_t) from the logits z of the last position:
    greedy (argmax z) when temperature is 0, otherwise from p_i ∝ exp(z_i / τ), optionally
    restricted to the top_k most probable tokens and/or to the nucleus (the smallest set of
    most probable tokens whose probability reaches top_p), renormalised.

    Args:
        model: a GPT (anything with `config.block_size` and the GPT's forward/cache signature).
        prompt_ids: one prompt (T,) as a list of ints, or a batch (B, T_b) of lists of
            different lengths (left-padded internally).
        max_new_tokens: how many tokens to add at most; prompt + new must fit in block_size,
            otherwise ValueError (the context is never cropped silently).
        temperature: τ >= 0; 0 is greedy.
        top_k: keep only the k most probable tokens (None: all).
        top_p: keep the nucleus reaching probability top_p, in (0, 1] (None: all).
        stop_ids: a row stops right after emitting one of these (the stop id is included);
            the batch ends when every row stopped.
        seed: sample with `backend.make_rng(seed)`, so the same seed gives the same text;
            None uses the global generator (`minillm.manual_seed`).
        return_logprobs: also return log π(y_t) of every new token: log softmax of the RAW
            logits (temperature 1, no top-k/top-p), i.e. the model's own probability of the
            token, which is what RLHF's policy gradient and KL need, whatever the sampler did.
        use_cache: False runs the full-recompute twin (same tokens, slower), for tests and
            benchmarks.

    Returns:
        prompt + new ids: a list of ints for one prompt, a list of lists for a batch. With
        return_logprobs, a pair (ids, logp), logp holding one list of floats per row (log π(y_t) of each
        new token; a plain list for one prompt).
    """
    rows, single = _as_rows(prompt_ids)
    new_ids, logp = [[] for _ in rows], [[] for _ in rows]
    for tokens, step_logp in decode_steps(model, rows, max_new_tokens, temperature, top_k, top_p,
                                          stop_ids, seed, use_cache):
        for b, (t, token_logp) in enumerate(zip(tokens, step_logp)):
            if t is not None:
                new_ids[b].append(t)
                logp[b].append(token_logp)
    ids = [r + n for r, n in zip(rows, new_ids)]
    if single:
        ids, logp = ids[0], logp[0]
    return (ids, logp) if return_logprobs else ids


def stream(model, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None,
           stop_ids: Sequence[int] | None = None, seed: int | None = None) -> Iterator[int]:
    """Like `generate` for one prompt, but yields each new token id as soon as it is chosen.

    Same sampling rules and seed as `generate` (the same seed gives the same tokens). Bad
    settings raise here, when stream is called, not at the first token.
    """
    rows, single = _as_rows(prompt_ids)
    if not single:
        raise ValueError("stream takes one prompt (a list of ints); use generate for a batch")
    _check_settings(model, rows, max_new_tokens, temperature, top_k, top_p)
    steps = decode_steps(model, rows, max_new_tokens, temperature, top_k, top_p, stop_ids, seed)
    return (tokens[0] for tokens, _ in steps)


HELD_BACK = "\ufffd"  # what a decoder prints for an incomplete UTF-8 sequence


def text_pieces(tokenizer, prompt_ids: Sequence[int], new_ids: Iterable[int],
                stop_ids: Sequence[int] = ()) -> Iterator[str]:
    """The text of streamed tokens, piece by piece, as soon as it forms complete characters.

    The whole sequence is decoded each time and only the new suffix yielded, so tokenizers
    that insert spaces between words, and byte pieces of one character, both come out right.
    Stops at the first id in stop_ids (not decoded). Pulling lazily from `stream` means a
    consumer that stops reading also stops the sampling.
    """
    ids, shown = list(prompt_ids), tokenizer.decode(prompt_ids)
    for token in new_ids:
        if token in stop_ids:
            break
        ids.append(token)
        text = tokenizer.decode(ids)
        if text.endswith(HELD_BACK) or not text.startswith(shown):
            continue  # wait for the rest of the character
        yield text[len(shown):]
        shown = text
    text = tokenizer.decode(ids)
    if text.startswith(shown) and len(text) > len(shown):
        yield text[len(shown):]  # whatever was still held back at the end


# ----- scoring given responses: log π(y_t | x, y_<t) in one forward pass ----------------

def response_log_softmax(model, prompt_ids: list, response_ids, temperature: float = 1.0) -> Tensor:
    """log π(· | x, y_<t) over the vocabulary at every response position, in ONE forward pass.

    Each row is prompt + response, right-padded (causal attention: padding after a token never
    changes it). The logits at position P_i − 1 + t predict response token t of row i.

    Args:
        prompt_ids: (N,) lists of prompt ids. response_ids: (N, T) padded response ids.
        temperature: the policy is softmax(z / τ); τ = 1 is the model's own distribution.
    Returns:
        (N, T, V) Tensor of log-probabilities (differentiable when grad is enabled).
    """
    inputs, rows, positions = response_inputs(prompt_ids, response_ids, model.config.block_size)
    logits = model(inputs)                                                   # (N, L-1, V)
    picked = logits[rows, positions]                                         # (N, L-1, V) -> (N, T, V)
    return F.log_softmax(picked * (1.0 / temperature) if temperature != 1.0 else picked, axis=-1)


def response_inputs(prompt_ids: list, response_ids, block_size: int | None = None) -> tuple[list, Any, Any]:
    """The model inputs of prompt + response rows, and where each response token is predicted.

    Row i is prompt_i + response_i without its last token, right-padded to L − 1 (causal
    attention: padding after a token never changes it). The state that predicts response token
    t of row i is position P_i − 1 + t. A short prompt beside a long response of another row
    can push a row's padding past the block: with block_size, rows are cut to it and positions
    clamped inside it, which touches padding only when every prompt + its real response fits.
    Returns (inputs (N, L-1) lists, rows (N, 1), positions (N, T)): index an (N, L-1, ...)
    output with [rows, positions] to get (N, T, ...).
    """
    xp = backend.xp
    responses = backend.to_numpy(response_ids).tolist()
    full = [p + r for p, r in zip(prompt_ids, responses)]
    L = max(len(r) for r in full) if block_size is None else min(max(len(r) for r in full), block_size + 1)
    inputs = [r[:L - 1] + [0] * (L - 1 - len(r[:L - 1])) for r in full]     # (N, L-1)
    starts = xp.asarray([len(p) - 1 for p in prompt_ids])                    # (N,)
    N, T = len(full), len(responses[0])
    positions = xp.minimum(starts[:, None] + xp.arange(T)[None, :], L - 2)   # (N, T)
    return inputs, xp.arange(N)[:, None], positions


def token_logprobs(log_dist: Tensor, response_ids) -> Tensor:
    """log π(y_t): pick each sampled token's entry of log π(·), (N, T, V) and ids (N, T) -> (N, T)."""
    xp = backend.xp
    N, T = response_ids.shape
    return log_dist[xp.arange(N)[:, None], xp.arange(T)[None, :], response_ids]


def response_logprobs(model, prompt_ids: list, response_ids, temperature: float = 1.0) -> Tensor:
    """log π(y_t | x, y_<t) of every response token, (N, T): one batched forward pass."""
    return token_logprobs(response_log_softmax(model, prompt_ids, response_ids, temperature), response_ids)


def sequence_logprobs(model, prompt_ids, response_ids):
    """log π(y_t | x, y_<t) of every response token as lists: `response_logprobs` on unpadded input.

    The sequences x + y go through the model once, right-padded into one batch; it must equal
    `generate(..., return_logprobs=True)` up to float error. RLHF's rollouts call
    `response_logprobs` directly, on padded arrays.

    Args:
        prompt_ids: (T_x,) list of ints, or a batch (B, T_x) of lists.
        response_ids: (T_y,) or (B, T_y), matching prompt_ids.
    Returns:
        (T_y,) list of floats, or (B, T_y) lists for a batch.
    """
    prompts, single = _as_rows(prompt_ids)
    responses = [[int(t) for t in r] for r in ([response_ids] if single else response_ids)]
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    for x, y in zip(prompts, responses):
        if len(x) + len(y) > model.config.block_size:
            raise UserError(f"prompt ({len(x)}) + response ({len(y)}) tokens exceed the model's "
                             f"block_size ({model.config.block_size})")
    T = max(1, max(len(y) for y in responses))
    ids = backend.xp.asarray([y + [0] * (T - len(y)) for y in responses], dtype=backend.xp.int64)  # (N, T)
    with no_grad():
        scored = backend.to_numpy(response_logprobs(model, prompts, ids).data).tolist()         # (N, T)
    out = [row[:len(y)] for row, y in zip(scored, responses)]
    return out[0] if single else out
