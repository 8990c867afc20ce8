"""The language model: a GPT written out of minillm's layers.

Lecture: an LLM is a function LLM_phi(x) = (y_1, ..., y_|V|) with Σ y = 1: given tokens
x_1..x_t it returns the probability of every vocabulary entry being x_{t+1}. Here that
function is a GPT-2-style transformer: token + position embeddings, n_layer pre-LayerNorm
blocks (causal multi-head self-attention, then a 4x GELU MLP, each added back to the
residual stream), a final LayerNorm and an LM head tied to the token embedding.

Shape legend: B batch, T sequence length, C model width (n_embd), H heads, D head width
(C / H), F MLP width (4C), V vocabulary.
Left out: rotary positions, grouped-query attention, mixture of experts, flash attention.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from minillm.engine import backend
from minillm.model import nn
from minillm.model import functional as F
from minillm.errors import UserError
from minillm.model.kv_cache import KVCache
from minillm.engine.tensor import Tensor, concatenate, no_grad


@dataclass
class GPTConfig:
    vocab_size: int = 65        # V: how many different tokens there are
    block_size: int = 64        # the longest context the model can read (positions)
    n_layer: int = 4            # transformer blocks
    n_head: int = 4             # attention heads per block (H)
    n_embd: int = 128           # model width C; each head gets D = C / H
    dropout: float = 0.0        # dropout probability while training
    bias: bool = True           # biases in Linear and LayerNorm layers (GPT-2 has them)
    tie_weights: bool = True    # the LM head reuses the token embedding matrix

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"GPTConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def _normal_(param: nn.Parameter, std: float) -> None:
    rng = backend.get_rng()
    param.data[...] = (rng.standard_normal(param.shape) * std).astype(param.dtype)


class CausalSelfAttention(nn.Module):
    """Each position looks at itself and earlier positions: softmax(QKᵀ/√D + causal mask) V."""

    def __init__(self, config: GPTConfig):
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        qkv = self.c_attn(x)  # (B, T, C) -> (B, T, 3C)
        if cache is not None:
            y = self._attend_cached(qkv, cache, layer)
        elif self._dropout_active():
            y = F.causal_self_attention_composed(qkv, self.n_head, dropout=self.attn_dropout)
        else:
            y = F.causal_self_attention(qkv, self.n_head)
        return self.resid_dropout(self.c_proj(y))

    def _dropout_active(self) -> bool:
        """The one-node attention computes softmax(QKᵀ/√D + mask) V with nothing between the
        softmax and V, so training with attention dropout takes the composed path, which has the hook."""
        return self.attn_dropout.training and self.attn_dropout.p > 0

    def _attend_cached(self, qkv: Tensor, cache: KVCache, layer: int) -> Tensor:
        """Incremental decoding: the new queries attend to the cached keys and values too
        (and never to padding, where the cache has a key mask)."""
        q, k, v = (F.split_heads(part, self.n_head) for part in F.split(qkv, 3, axis=2))  # (B, H, T, D)
        offset = cache.length
        k, v = cache.append(layer, k, v)  # (B, H, offset + T, D)
        mask = F.causal_mask(q.shape[2], offset)  # (T, offset + T)
        if cache.key_mask is not None:
            T, xp = q.shape[2], backend.xp
            itself = xp.arange(offset + T)[None, :] == (offset + xp.arange(T))[:, None]  # (T, offset + T)
            # Padding is never a key, except to itself: a padding query with no key at all would
            # get softmax(all -inf) = NaN, and that NaN would reach real rows through the values.
            mask = (mask & cache.key_mask[:, None, None, : offset + T]) | itself
        return F.merge_heads(F.attention(q, k, v, mask, self.attn_dropout))  # (B, H, T, D) -> (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig):
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, F) -> (B, T, C)


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)): pre-LayerNorm residual block."""

    def __init__(self, config: GPTConfig):
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


def check_token_ids(ids, vocab_size: int, block_size: int | None = None):
    """A language model's input, checked: integer ids of shape (B, T) (a (T,) row becomes (1, T)),
    at most block_size long when given, each in [0, vocab_size); returned on the device."""
    ids = backend.as_checkable(ids.data if isinstance(ids, Tensor) else ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers of shape (B, T) or (T,), got {ids.dtype} {ids.shape}")
    if block_size is not None and ids.shape[1] > block_size:
        raise UserError(f"input has {ids.shape[1]} tokens but the model's block_size (the longest "
                        f"context it can read) is {block_size}: crop the input")
    bad = backend.out_of_range(ids, 0, vocab_size)
    if bad:
        raise UserError(f"token ids must lie in [0, {vocab_size}) (the vocabulary), "
                        f"got values from {bad[0]} to {bad[1]}")
    return backend.asarray(ids)


class GPT(nn.Module):
    """A GPT-2-style decoder-only transformer: ids (B, T) -> logits (B, T, V)."""

    def __init__(self, config: GPTConfig):
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)   # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)   # position embedding
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and the projections that
        write into the residual stream scaled by 1/√(2·n_layer), so its variance does not
        grow with depth."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                _normal_(p, residual_std)
            elif name.endswith("weight") and p.ndim == 2:
                _normal_(p, 0.02)
            elif name.endswith("bias"):
                p.data[...] = 0

    # ----- the function LLM_phi ---------------------------------------------------------
    def forward(self, ids, cache: KVCache | None = None, positions=None) -> Tensor:
        """Logits for every position: ids (B, T) -> (B, T, V).

        Args:
            ids: token ids, nested lists or an integer array, shape (B, T) or (T,).
            cache: a KVCache for incremental decoding (see minillm.model.sampling).
            positions: (B, T) position ids; by default 0..T-1 (after the cached length).
        """
        return self.head(self.hidden_states(ids, cache, positions))  # (B, T, C) -> (B, T, V)

    def hidden_states(self, ids, cache: KVCache | None = None, positions=None) -> Tensor:
        """The transformer without its LM head: ids (B, T) -> final-LayerNorm states (B, T, C).

        The reward model reads these; arguments as in `forward`.
        """
        ids = check_token_ids(ids, self.config.vocab_size, self.config.block_size)
        B, T = ids.shape
        if positions is None:
            start = cache.length if cache is not None else 0
            if start + T > self.config.block_size:
                raise ValueError(f"{start} cached + {T} new tokens exceed the model's block_size "
                                 f"({self.config.block_size} positions)")
            positions = backend.xp.arange(start, start + T)[None, :]  # (1, T)
        x = self.drop(self.wte(ids) + self.wpe(positions))  # (B, T) -> (B, T, C)
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)

    def head(self, x: Tensor) -> Tensor:
        """The LM head: hidden states (..., C) -> logits (..., V)."""
        if self.lm_head is not None:
            return self.lm_head(x)
        return x @ self.wte.weight.T  # tied: the same matrix reads tokens in and writes them out

    def next_token_probs(self, ids):
        """The lecture's LLM_phi(x): P(x_{t+1} = v | x_1..x_t) for every v in V (sums to 1).

        ids (T,) -> (V,), or (B, T) -> (B, V); the last `block_size` tokens are used.
        """
        with no_grad():
            batch = backend.asarray(ids)
            single = batch.ndim == 1
            batch = batch[None, :] if single else batch
            logits = self(batch[:, -self.config.block_size:]).data[:, -1, :]  # (B, V)
            probs = F.softmax(Tensor._wrap(logits), axis=-1).data
        return probs[0] if single else probs

    # ----- size: when is a model large ------------------------------------------------
    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters N; `non_embedding=True` leaves out the position table (and the token
        table, when it is not tied to the head), the convention of scaling-law papers."""
        n = super().num_parameters()
        if non_embedding:
            n -= self.wpe.weight.size
            if self.lm_head is not None:
                n -= self.wte.weight.size
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token ≈ 6·N + 12·n_layer·n_embd·T.

        6·N: each parameter costs a multiply and an add forward (2) and twice that backward
        (4); 12·L·C·T: the attention scores and their weighted sum, which have no parameters
        (Kaplan et al., 2020; PaLM, Chowdhery et al., 2022, appendix B).
        """
        T = seq_len or self.config.block_size
        c = self.config
        return 6 * self.num_parameters(non_embedding=True) + 12 * c.n_layer * c.n_embd * T

    def resize_token_embeddings(self, vocab_size: int, rng=None, noise: float = 0.01) -> None:
        """Grow the vocabulary (e.g. for new chat tokens); old rows stay exactly as they were.

        Each new row is the mean of the existing rows plus N(0, noise²) noise. The mean
        embedding is a token the model already "understands" on average, and with a tied head
        its logit h·e_new equals the average old logit, so a new token starts neither
        dominant nor impossible (Hewitt, 2021); the small noise keeps the new rows apart.
        An untied LM head grows the same way, one new column per new token.
        """
        rng = rng or backend.get_rng()

        def grow(table, axis: int):  # the mean slice along `axis`, plus noise, appended
            shape = list(table.shape)
            shape[axis] = vocab_size - table.shape[axis]
            new = (table.mean(axis=axis, keepdims=True) + rng.standard_normal(tuple(shape)) * noise)
            return concatenate([Tensor._wrap(table), Tensor._wrap(new.astype(table.dtype))], axis=axis).data

        if vocab_size < self.config.vocab_size:
            raise ValueError(f"cannot shrink the vocabulary from {self.config.vocab_size} to {vocab_size}")
        self.wte.weight = nn.Parameter(grow(self.wte.weight.data, 0))             # (V_old, C) -> (V, C)
        if self.lm_head is not None:
            self.lm_head.weight = nn.Parameter(grow(self.lm_head.weight.data, 1))  # (C, V_old) -> (C, V)
        self.config.vocab_size = vocab_size
