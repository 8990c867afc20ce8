"""A recurrent neural network language model: the neural LM of cs224n's lecture on RNNs.

Lecture: "any system that implements the above probability function will be called a
language model". A vanilla (Elman) RNN implements P(x_{t+1} | x_1..x_t) by folding the whole
prefix into one hidden vector, updated token by token:

    h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h),     h_0 = 0
    z_t = W_hy h_t + b_y,                         ȳ = softmax(z_t)

with x_t the one-hot vector of token x_t, so W_xh x_t is one column of W_xh (a table lookup).
The same weights are applied at every position, so the context has no length limit, unlike
the n-gram's n-1 tokens or the GPT's block_size. It has the same `next_token_probs(ids)`
interface as `NGramLM` and `GPT`. Written on the engine's Tensor ops only, so backprop through
time is the engine's ordinary backward pass.
Left out: gated cells (LSTM, GRU), several layers, dropout, a KV-cache-like incremental decoder.
"""
from __future__ import annotations

import math

from minillm.engine import backend
from minillm.engine.tensor import Tensor, no_grad, stack
from minillm.errors import UserError
from minillm.model import functional as F
from minillm.model import nn
from minillm.model.gpt import check_token_ids


class RNNLM(nn.Module):
    """A one-layer tanh RNN language model: ids (B, T) -> logits (B, T, V).

    Stored in the row-vector convention of `nn.Linear` (x @ W), so the recurrence reads

        h_t = tanh(W_xh[x_t] + h_{t-1} @ W_hh + b_h),    z_t = h_t @ W_hy + b_y

    with W_xh (V, H), W_hh (H, H), W_hy (H, V): the transposes of the column form above.
    The three weight tables start uniform in ±1/√H and the biases at 0.

    Example:
        >>> lm = RNNLM(vocab_size=5, hidden_size=8)
        >>> lm.next_token_probs([1, 2, 3]).shape
        (5,)
    """

    def __init__(self, vocab_size: int, hidden_size: int, rng=None):
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        rng, dtype = rng or backend.get_rng(), backend.get_default_dtype()
        bound = 1.0 / math.sqrt(hidden_size)

        def uniform(*shape):  # ±1/√H for every table: each reads (or is read by) H numbers
            return nn.Parameter(rng.uniform(-bound, bound, shape).astype(dtype, copy=False))

        self.W_xh = uniform(vocab_size, hidden_size)
        self.W_hh = uniform(hidden_size, hidden_size)
        self.b_h = nn.Parameter(backend.xp.zeros(hidden_size, dtype=dtype))
        self.W_hy = uniform(hidden_size, vocab_size)
        self.b_y = nn.Parameter(backend.xp.zeros(vocab_size, dtype=dtype))

    # ----- the recurrence ---------------------------------------------------------------
    def step(self, ids_t, h_prev: Tensor) -> Tensor:
        """One step, h_t = tanh(W_xh[x_t] + h_{t-1} @ W_hh + b_h): ids_t (B,), h (B, H) -> (B, H)."""
        return (F.embedding(self.W_xh, ids_t) + h_prev @ self.W_hh + self.b_h).tanh()

    def hidden_states(self, ids, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Every hidden state and the last one: ids (B, T) -> ((B, T, H), (B, H)).

        `h0` (B, H) continues from an earlier chunk's last state; by default h_0 = 0.
        """
        ids = check_token_ids(ids, self.vocab_size)
        B, T = ids.shape
        h = h0 if h0 is not None else Tensor._wrap(backend.xp.zeros((B, self.hidden_size),
                                                                  dtype=self.W_hh.dtype))
        states = []
        for t in range(T):  # backprop through time: the engine walks this chain backwards
            h = self.step(ids[:, t], h)
            states.append(h)
        return stack(states, axis=1), h  # T × (B, H) -> (B, T, H)

    def forward(self, ids, h0: Tensor | None = None) -> Tensor:
        """Logits for every position, z_t = h_t @ W_hy + b_y: ids (B, T) -> (B, T, V)."""
        states, _ = self.hidden_states(ids, h0)
        return states @ self.W_hy + self.b_y  # (B, T, H) -> (B, T, V)

    # ----- the function LLM_phi ---------------------------------------------------------
    def next_token_probs(self, ids):
        """P(x_{t+1} = v | x_1..x_t) for every v in V (sums to 1), reading the whole prefix.

        ids (T,) -> (V,), or (B, T) -> (B, V); an empty prefix gives softmax(b_y) (h_0 = 0).
        """
        with no_grad():
            batch = backend.asarray(ids)
            single = batch.ndim == 1
            batch = batch[None, :] if single else batch
            if batch.shape[1] == 0:
                h = Tensor._wrap(backend.xp.zeros((batch.shape[0], self.hidden_size), dtype=self.W_hh.dtype))
            else:
                _, h = self.hidden_states(batch)
            probs = F.softmax(h @ self.W_hy + self.b_y, axis=-1).data  # (B, V)
        return probs[0] if single else probs

    def __repr__(self) -> str:
        return f"RNNLM(vocab_size={self.vocab_size}, hidden_size={self.hidden_size})"
