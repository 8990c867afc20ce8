"""The fast causal self-attention: softmax(q kᵀ/√D + causal mask) v, every head, one node.

The same formula and closed-form backward as `functional.CausalSelfAttention`, whose place
`minillm.fast.enable()` gives it; tests/test_fast.py holds the two equal in value and gradient.
It has a module of its own because it has a layout of its own (heads as strided views of the
packed projections), query tiles on the CPU and a different memory plan on a GPU.

What this file does beyond the formula, so nothing here surprises a reader:
- On the CPU, q, k and v are views of the packed (B, T, 3C) projections and the output is
  written by token, so no head is ever copied; the queries run in tiles that skip the keys
  after them (`ATTENTION_TILE`); blocks of sequences run on `cpu_threads.parallel_rows`.
- On a GPU, the softmax and its backward are kernels from `fast/cuda_kernels.py`, and P is recomputed in
  backward instead of kept (device memory is the scarce resource there).
"""
from __future__ import annotations

import math

import numpy

from minillm.fast import cuda_kernels as kernels
from minillm.engine.backend import get_array_module
from minillm.fast.cpu_threads import parallel_rows
from minillm.engine.ops import Function

_CAUSAL_BIAS: dict = {}
# Query rows per tile of the CPU attention (see CausalSelfAttention._attend); found by timing.
ATTENTION_TILE = 64


def _causal_bias(xp, T: int, dtype):
    """(T, T) additive mask, 0 on and below the diagonal and -inf above; built once per size.

    Adding it is much faster than assigning -inf through a boolean index every step.
    """
    key = (xp.__name__, T, xp.dtype(dtype).str)
    if key not in _CAUSAL_BIAS:
        _CAUSAL_BIAS[key] = xp.triu(xp.full((T, T), -xp.inf, dtype=dtype), k=1)
    return _CAUSAL_BIAS[key]


class CausalSelfAttention(Function):
    """Multi-head causal self-attention from packed projections, in one node.

    Forward, per head (q, k, v of shape (T, D)):  S = q kᵀ / √D + causal mask,
    P = softmax(S), y = P v.  Backward, with dy given:
        dv = Pᵀ dy,   dP = dy vᵀ,   dS = P ⊙ (dP - Σ_j dP ⊙ P),   dq = dS k / √D,   dk = dSᵀ q / √D.
    On the CPU the row sums Σ_j dP_ij P_ij are taken as dy_i · y_i, the same number:
    Σ_j (Σ_d dy_id v_jd) P_ij = Σ_d dy_id (P v)_id, a (T, D) product instead of a (T, T) one.
    Input qkv (B, T, 3C) holds q, k, v side by side; output (B, T, C) has the heads merged.

    On a GPU, P is not kept between forward and backward but recomputed from q and k (one
    more product and one kernel): the (B, H, T, T) probabilities are the largest activation
    of a layer, and device memory is the scarce resource there. On the CPU P is kept.
    """

    def forward(self, qkv, n_head):
        xp = get_array_module(qkv)
        B, T, C3 = qkv.shape
        C = C3 // 3
        D = C // n_head
        self.scale, self.on_gpu = 1.0 / math.sqrt(D), xp is not numpy
        # (B, T, 3C) -> (3, B, H, T, D): q, k and v as views of qkv, no copy on the CPU (BLAS
        # reads each head's (T, D) matrix with a row stride of 3C)
        q, k, v = _heads(xp, qkv.reshape(B, T, 3, n_head, D), self.on_gpu)
        y_rows, y = _head_outputs(xp, (B, T, n_head, D), qkv.dtype, self.on_gpu)  # y: (B, H, T, D)
        self.probs = None if self.on_gpu else xp.empty((B, n_head, T, T), dtype=q.dtype)
        self.tiles = self._query_tiles(T)  # fixed here: backward reads the P these tiles wrote
        # Each block of sequences attends on its own thread (one call on a GPU), its products on
        # one BLAS thread: they release the interpreter lock, and so does the softmax's array work.
        parallel_rows(self._attend, q, k, v, y, *([] if self.probs is None else [self.probs]), products=True)
        self.q, self.k, self.v, self.shape = q, k, v, (B, T, C, n_head, D)
        self.y = None if self.on_gpu else y  # a view of the output, which the next layer keeps anyway
        return y_rows.reshape(B, T, C)  # (B, T, H, D) -> (B, T, C)

    def _attend(self, q, k, v, y, probs=None):
        """y = P v, P = softmax(q kᵀ · scale + causal mask), for a block of sequences:
        (b, H, T, D) x 3 -> y (b, H, T, D), written in place; P is kept in `probs` if given.

        On the CPU the queries go in tiles (`_query_tiles`): the queries lo..hi-1 see only
        the keys 0..hi-1, so each tile's products and softmax skip the keys after it, which
        the causal mask would zero anyway. P's entries past a tile's keys stay unwritten.
        """
        xp = get_array_module(q)
        for lo, hi in self.tiles:
            tile = None if probs is None else probs[:, :, lo:hi, :hi]
            xp.matmul(self._probs(q[:, :, lo:hi], k[:, :, :hi], lo, tile), v[:, :, :hi], out=y[:, :, lo:hi])

    def _query_tiles(self, T: int) -> list:
        """[(lo, hi), ...]: the query rows of each tile; one tile (all of T) on a GPU, where
        one kernel per step matters more than the arithmetic a tile saves."""
        if self.on_gpu or T <= ATTENTION_TILE:
            return [(0, T)]
        return [(lo, min(lo + ATTENTION_TILE, T)) for lo in range(0, T, ATTENTION_TILE)]

    def _probs(self, q, k, offset: int = 0, out=None):
        """P = softmax(q kᵀ · scale + causal mask) for queries at positions offset.. and keys
        from 0: (b, H, t, D) x (b, H, s, D) -> (b, H, t, s), into `out` if given."""
        xp = get_array_module(q)
        scores = xp.matmul(q, k.swapaxes(-1, -2), out=out)  # (b, H, t, D) @ (b, H, D, s) -> (b, H, t, s)
        # scores is new, or `out`, and only ours: scale, mask, exponentiate and normalise it in place.
        if self.on_gpu:
            return kernels.causal_softmax_(scores, self.scale)  # all of the below, one kernel
        t, s = scores.shape[-2:]
        scores *= self.scale
        scores += _causal_bias(xp, s, scores.dtype)[offset:offset + t]  # -inf after each query: no looking ahead
        scores -= scores.max(axis=-1, keepdims=True)
        probs = xp.exp(scores, out=scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        return probs

    def backward(self, grad):
        xp = get_array_module(grad)
        B, T, C, H, D = self.shape
        (dy,) = _heads(xp, grad.reshape(B, T, 1, H, D), self.on_gpu)  # (B, T, C) -> (B, H, T, D)
        dqkv_rows, (dq, dk, dv) = _head_outputs(xp, (B, T, 3, H, D), grad.dtype, self.on_gpu)
        kept = [] if self.on_gpu else [self.probs, self.y]
        parallel_rows(self._attend_backward, dy, self.q, self.k, self.v, dq, dk, dv, *kept, products=True)
        return dqkv_rows.reshape(B, T, 3 * C), None  # (B, T, 3, H, D) -> (B, T, 3C)

    def _attend_backward(self, dy, q, k, v, dq, dk, dv, probs=None, y=None):
        """dq, dk, dv (b, H, T, D) of a block of sequences from dy (b, H, T, D), written in place;
        P is recomputed from q and k where it was not kept (on a GPU, where y is not given either).

        Tile by tile as in `_attend`, from the last (which sees every key, so its products
        write all of dk and dv) to the first (which adds to the keys it sees)."""
        xp = get_array_module(dy)
        for lo, hi in reversed(self.tiles):
            q_t, dy_t = q[:, :, lo:hi], dy[:, :, lo:hi]  # the tile's queries: (b, H, t, D)
            k_t, v_t = k[:, :, :hi], v[:, :, :hi]  # the keys they see: (b, H, s, D)
            tile = self._probs(q_t, k_t, lo) if probs is None else probs[:, :, lo:hi, :hi]  # (b, H, t, s)
            dprobs = dy_t @ v_t.swapaxes(-1, -2)  # (b, H, t, s), a new array only this function holds
            # dS = P ⊙ (dP - Σ_j dP ⊙ P) · scale, written over dP's memory: dP is not read again.
            if self.on_gpu:
                dscores = kernels.softmax_backward_(dprobs, tile, self.scale)  # one kernel
            else:
                row_dot = xp.einsum("bhtd,bhtd->bht", dy_t, y[:, :, lo:hi])[..., None]  # Σ_j dP_ij P_ij = dy_i · y_i
                dscores = dprobs
                dscores -= row_dot
                dscores *= tile
                dscores *= self.scale
            xp.matmul(dscores, k_t, out=dq[:, :, lo:hi])  # dq = dS k (the scale is in dS)
            if hi == dk.shape[2]:  # the last tile: every key, written
                xp.matmul(tile.swapaxes(-1, -2), dy_t, out=dv)  # dv = Pᵀ dy
                xp.matmul(dscores.swapaxes(-1, -2), q_t, out=dk)  # dk = dSᵀ q
            else:  # an earlier tile: its keys also got gradients from the later tiles
                dv[:, :, :hi] += tile.swapaxes(-1, -2) @ dy_t
                dk[:, :, :hi] += dscores.swapaxes(-1, -2) @ q_t


def _heads(xp, packed, on_gpu: bool):
    """(B, T, P, H, D) -> (P, B, H, T, D): the P packed parts (q, k, v; or one gradient) by head.

    On the CPU these are views: NumPy hands BLAS each (T, D) matrix with its row stride, as
    fast as a copy would be and without the copy. cuBLAS's batched products want whole
    matrices, so on a GPU they are copied once.
    """
    heads = packed.transpose(2, 0, 3, 1, 4)
    return xp.ascontiguousarray(heads) if on_gpu else heads


def _head_outputs(xp, shape, dtype, on_gpu: bool):
    """An array for per-head results, and its per-head views: shape (B, T, H, D) gives
    (rows, y (B, H, T, D)); (B, T, P, H, D) gives (rows, P views (B, H, T, D)).

    On the CPU `rows` is laid out by token, so the products write each head's rows straight
    into place and `rows.reshape(B, T, -1)` is free. On a GPU the heads are whole matrices and
    `rows` a transposed view of them (its reshape copies once).
    """
    if not on_gpu:
        rows = xp.empty(shape, dtype=dtype)
        by_head = rows.transpose(0, 2, 1, 3) if len(shape) == 4 else rows.transpose(2, 0, 3, 1, 4)
        return rows, by_head
    if len(shape) == 4:
        B, T, H, D = shape
        by_head = xp.empty((B, H, T, D), dtype=dtype)
        return by_head.transpose(0, 2, 1, 3), by_head
    B, T, P, H, D = shape
    by_head = xp.empty((P, B, H, T, D), dtype=dtype)
    return by_head.transpose(1, 3, 0, 2, 4), by_head
