"""Fused ops: neural-network functions computed in one node with a hand-written backward.

Lecture: the transformer's building blocks. Each of these could be composed from the
primitives in `ops.py` (and `functional.py` keeps that composed twin next to it, tested
for equal values and gradients); fused, each is one node in the graph, which saves memory
and the Python cost of many small nodes, and lets the backward use the closed form.

What this file does beyond the formulas, so nothing here surprises a reader:
- On a GPU, the element-wise and row-wise work of GELU, layer norm, the attention softmax and
  cross entropy runs as compiled CuPy kernels from `kernels.py` (one kernel instead of a
  chain of array expressions). The NumPy expressions below are those kernels' twins: the
  same formula, run on the CPU, and tested against the kernels (tests/test_backends_agree.py).
- In-place updates (`-=`, `*=`, `out=`) appear only on arrays the same function has just
  created and no one else holds, to save a temporary the size of the activations; each one
  is marked with a comment saying which array it overwrites and why that is safe.
"""
from __future__ import annotations

import math

import numpy

from minillm import kernels
from minillm.backend import get_array_module
from minillm.cpu_threads import parallel_rows
from minillm.ops import Function
from minillm.ops_reduce import layer_product

GELU_C = math.sqrt(2.0 / math.pi)


class Softmax(Function):
    """y = exp(x - max x) / Σ exp(x - max x); backward: dx = y ⊙ (g - Σ g⊙y)."""

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))  # subtract the max: exp never overflows
        self.y, self.axis = e / e.sum(axis=axis, keepdims=True), axis
        return self.y

    def backward(self, grad):
        y = self.y
        return (y * (grad - (grad * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """y = x - logsumexp(x); backward: dx = g - softmax(x) · Σ g."""

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.out, self.axis = out, axis
        return out

    def backward(self, grad):
        xp = get_array_module(grad)
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


class Gelu(Function):
    """GPT-2's GELU, tanh approximation: y = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))).

    dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²), with t the tanh above.
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        if xp is not numpy:  # on a GPU: the same formula as one compiled kernel
            y, self.t = kernels.gelu_forward(x)
            return y
        y, self.t = xp.empty_like(x), xp.empty_like(x)
        parallel_rows(_gelu_rows, x, y, self.t)
        return y

    def backward(self, grad):
        x, t = self.x, self.t
        xp = get_array_module(grad)
        if xp is not numpy:
            return (kernels.gelu_backward(grad, x, t),)
        dx = xp.empty_like(grad)
        parallel_rows(_gelu_backward_rows, grad, x, t, dx)
        return (dx,)


def _gelu_rows(x, y, t) -> None:
    """Into y and t, for a block of rows: t = tanh(√(2/π) (x + 0.044715 x³)), y = ½ x (1 + t)."""
    xp = get_array_module(x)
    # Each step below writes over an array the caller made for this (t, then y).
    xp.multiply(x, x, out=t)
    t *= GELU_C * 0.044715
    t += GELU_C
    t *= x  # √(2/π) x + √(2/π) 0.044715 x³
    xp.tanh(t, out=t)
    xp.add(t, 1, out=y)
    y *= x
    y *= 0.5


def _gelu_backward_rows(grad, x, t, dx) -> None:
    """Into dx, for a block of rows: g · ½ (1 + t) (1 + x (1 - t) √(2/π) (1 + 3·0.044715 x²)),
    which is g · (½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)) with 1 - t² = (1 - t)(1 + t)
    factored out: fewer passes over the arrays."""
    xp = get_array_module(x)
    inner = xp.multiply(x, x, out=dx)  # dx holds x √(2/π)(1 + 3·0.044715 x²) (1 - t) + 1 first
    inner *= GELU_C * 3 * 0.044715
    inner += GELU_C
    inner *= x
    one_minus_t = xp.subtract(1, t)
    inner *= one_minus_t
    inner += 1
    half_one_plus_t = xp.multiply(t, 0.5, out=one_minus_t)  # 1 - t was read: reuse its memory
    half_one_plus_t += 0.5
    dx *= half_one_plus_t
    dx *= grad


class Linear(Function):
    """y = x W + b: x (..., in), W (in, out), b (out,) or None -> (..., out).

    With x and g flattened to rows (N, in) and (N, out): dx = g Wᵀ, dW = xᵀ g, db = Σ_rows g.
    One node where the composed x @ W + b is two: the bias is added to each block of the
    product's rows by the thread that computed it, with no (N, out) temporary for the sum.
    """

    def forward(self, x, weight, bias=None):
        rows = x.reshape(-1, x.shape[-1])  # (..., in) -> (N, in)
        self.rows, self.weight, self.lead = rows, weight, x.shape[:-1]
        return layer_product(rows, weight, bias).reshape(*self.lead, weight.shape[1])  # -> (..., out)

    def backward(self, grad):
        g = grad.reshape(-1, grad.shape[-1])  # (..., out) -> (N, out)
        dx = layer_product(g, self.weight.T).reshape(*self.lead, -1) if self.needs_grad[0] else None
        out_w, out_b = _gradient_outputs(self.grad_out, g.dtype)  # the optimizer's buffers, if free
        dw = layer_product(self.rows.T, g, out=out_w) if self.needs_grad[1] else None  # (in, N) @ (N, out)
        db = _column_sums(g, out=out_b) if self.needs_grad[2] else None
        return dx, dw, db


def _gradient_outputs(grad_out, dtype) -> tuple:
    """(weight's, bias's) array to write the gradient into, from the engine's `grad_out`:
    the optimizer's buffers where given and of the gradient's dtype, else None."""
    if grad_out is None:
        return None, None
    return tuple(b if b is not None and b.dtype == dtype else None for b in grad_out[1:3])


def _column_sums(matrix, out=None):
    """Σ over axis 0 of (N, C) -> (C,), into `out` if given, as one matrix-vector product
    1ᵀ M (BLAS on the CPU; cuBLAS through `kernels.column_sums` on a GPU): several times
    faster than NumPy's axis-0 sum, and no less accurate (BLAS sums in blocks, with fused
    multiply-adds). Not split over threads: it takes tens of microseconds, about what
    handing a block to another thread costs."""
    xp = get_array_module(matrix)
    if xp is not numpy:
        sums = kernels.column_sums(matrix)
        return sums if out is None else _copy_into(out, sums)
    return xp.matmul(xp.ones(matrix.shape[0], dtype=matrix.dtype), matrix, out=out)


def _copy_into(out, values):
    out[...] = values
    return out


class LayerNorm(Function):
    """y = (x - μ) / √(σ² + eps) · w + b over the last axis.

    With x̂ the normalised input and ĝ = g ⊙ w, the closed-form backward is
    dx = (ĝ - mean(ĝ) - x̂ ⊙ mean(ĝ ⊙ x̂)) / √(σ² + eps), dw = Σ g ⊙ x̂, db = Σ g.
    """

    def forward(self, x, weight, bias, eps=1e-5):
        xp = get_array_module(x)
        self.weight = weight
        if xp is not numpy:  # on a GPU: one kernel per row for all of it
            y, self.xhat, self.inv_std = kernels.layer_norm_forward(x, weight, bias, eps)
            return y
        rows = x.reshape(-1, x.shape[-1])  # (..., C) -> (N, C): blocks of rows go to threads
        y, xhat, inv_std = xp.empty_like(rows), xp.empty_like(rows), xp.empty((len(rows), 1), dtype=x.dtype)
        parallel_rows(_layer_norm_rows, rows, y, xhat, inv_std, weight=weight, bias=bias, eps=eps)
        self.xhat, self.inv_std = xhat.reshape(x.shape), inv_std.reshape(x.shape[:-1] + (1,))
        return y.reshape(x.shape)

    def backward(self, grad):
        xhat, xp, C = self.xhat, get_array_module(grad), grad.shape[-1]
        if xp is not numpy:
            dx = kernels.layer_norm_backward(grad, xhat, self.inv_std, self.weight)
            gx = grad * xhat if self.needs_grad[1] else None
        else:
            rows = grad.reshape(-1, C)  # (..., C) -> (N, C)
            dx, gx = xp.empty_like(rows), xp.empty_like(rows) if self.needs_grad[1] else None
            parallel_rows(_layer_norm_backward_rows, rows, xhat.reshape(rows.shape),
                          self.inv_std.reshape(-1, 1), dx, *([] if gx is None else [gx]), weight=self.weight)
            dx = dx.reshape(grad.shape)
        dw = _column_sums(gx.reshape(-1, C)) if self.needs_grad[1] else None
        db = _column_sums(grad.reshape(-1, C)) if self.needs_grad[2] else None
        return dx, dw, db, None


def _layer_norm_rows(x, y, xhat, inv_std, weight, bias, eps) -> None:
    """Into y, x̂ and 1/√(σ² + eps), for a block of rows:
    x̂ = (x - μ) / √(σ² + eps), y = x̂ · w + b."""
    xp = get_array_module(x)
    xp.subtract(x, _row_means(x)[:, None], out=xhat)  # x - μ, normalised in place below
    variance = xp.einsum("rc,rc->r", xhat, xhat) / xhat.dtype.type(x.shape[-1])  # mean of (x - μ)²
    xp.divide(1.0, xp.sqrt(variance + eps), out=inv_std[:, 0])
    xhat *= inv_std
    if weight is None:
        y[...] = xhat
    else:
        xp.multiply(xhat, weight, out=y)
    if bias is not None:
        y += bias


def _layer_norm_backward_rows(grad, xhat, inv_std, dx, gx=None, weight=None) -> None:
    """Into dx, for a block of rows: dx = (ĝ - mean(ĝ) - x̂ ⊙ mean(ĝ ⊙ x̂)) / √(σ² + eps),
    ĝ = g ⊙ w; and g ⊙ x̂ into gx where given (its column sums are dw)."""
    xp = get_array_module(grad)
    ghat = grad if weight is None else xp.multiply(grad, weight, out=dx)  # dx holds ĝ until the end
    if gx is not None:  # mean(ĝ ⊙ x̂) = mean((g ⊙ x̂) ⊙ w): from gx, which dw needs anyway
        mean_ghat_xhat = _row_means(xp.multiply(grad, xhat, out=gx), weight)
    else:
        mean_ghat_xhat = _row_means(ghat * xhat)
    correction = xhat * mean_ghat_xhat[:, None]  # x̂ ⊙ mean(ĝ ⊙ x̂) + mean(ĝ), then subtracted
    correction += _row_means(ghat)[:, None]
    dx = xp.subtract(ghat, correction, out=dx)
    dx *= inv_std


def _row_means(rows, weight=None):
    """(r, C) -> (r,): Σ_c rows[:, c] · w_c / C for each row (w = 1: the row's mean), in one
    pass with no temporary, several times faster than NumPy's mean over short rows.

    Through `einsum`, not a BLAS matrix-vector product (faster still): BLAS rounds a row's
    sum differently depending on where the row sits in its block, and splitting the rows
    over threads must not change the numbers."""
    xp = get_array_module(rows)
    C = rows.shape[-1]
    scale = xp.full(C, 1.0 / C, dtype=rows.dtype) if weight is None else weight * rows.dtype.type(1.0 / C)
    return xp.einsum("rc,c->r", rows, scale)


def scatter_add_rows(num_rows: int, ids, values):
    """out[i] = Σ_{j: ids[j] = i} values[j], for an (N,) id array and (N, C) values.

    NumPy's `add.at` is slow; sorting the ids and summing each run with `add.reduceat`
    gives the same sums several times faster. On a GPU a kernel sums each run in sorted
    order (`kernels.scatter_add_rows`), deterministic where atomic adds would not be.
    """
    xp = get_array_module(values)
    if xp is not numpy:
        return kernels.scatter_add_rows(num_rows, ids, values)
    out = xp.zeros((num_rows, values.shape[-1]), dtype=values.dtype)
    order = numpy.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = numpy.flatnonzero(numpy.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    if len(starts):
        out[sorted_ids[starts]] = numpy.add.reduceat(values[order], starts, axis=0)
    return out


class Embedding(Function):
    """out[..., :] = W[ids[...], :]; backward: dW[i] = Σ of the gradients of the rows that read i."""

    def forward(self, weight, ids):
        self.num_rows, self.ids = weight.shape[0], ids
        return weight[ids]  # (..., ) ids -> (..., C)

    def backward(self, grad):
        flat = grad.reshape(-1, grad.shape[-1])
        return scatter_add_rows(self.num_rows, self.ids.reshape(-1), flat), None


class CrossEntropy(Function):
    """Mean over counted rows of -log softmax(logits)[target]: L = mean(logsumexp(z) - z[y]).

    Rows whose target equals `ignore_index` do not count. dL/dz = (softmax(z) - onehot(y)) / n
    on counted rows, 0 on ignored rows. Logits (N, V), targets (N,).
    """

    def forward(self, logits, targets, ignore_index):
        xp = get_array_module(logits)
        counted = targets != ignore_index
        self.count = xp.maximum(counted.sum(), 1).astype(logits.dtype)
        if xp is not numpy:  # on a GPU: log-sum-exp and the picked logit in one kernel per row
            self.lse, nll = kernels.cross_entropy_forward(logits, targets, ignore_index)
            self.logits, self.targets, self.ignore_index = logits, targets, ignore_index
            return nll.sum() / self.count
        safe_targets = xp.where(counted, targets, 0)
        self.probs, nll = xp.empty_like(logits), xp.empty(len(targets), dtype=logits.dtype)
        parallel_rows(_cross_entropy_rows, logits, safe_targets, self.probs, nll)
        self.targets, self.counted = safe_targets, counted
        return (nll * counted).sum() / self.count

    def backward(self, grad):
        if get_array_module(grad) is not numpy:  # softmax - onehot, scaled, in one kernel
            scale = (grad / self.count).astype(self.logits.dtype)
            return kernels.cross_entropy_backward(self.logits, self.targets, self.lse, scale,
                                                  self.ignore_index), None, None
        d = get_array_module(grad).empty_like(self.probs)
        weights = (self.counted / self.count)[:, None] * grad  # (N, 1): 1/n on counted rows, 0 on ignored
        parallel_rows(_cross_entropy_backward_rows, self.probs, self.targets, weights, d)
        return d, None, None


def _cross_entropy_rows(logits, targets, probs, nll) -> None:
    """Into probs and nll, for a block of rows: softmax(z) and logsumexp(z) - z[y] (max-shifted)."""
    xp = get_array_module(logits)
    shifted = xp.subtract(logits, logits.max(axis=-1, keepdims=True), out=probs)  # exponentiated below
    picked = shifted[xp.arange(len(targets)), targets]  # (n,)
    exp = xp.exp(shifted, out=probs)
    total = exp.sum(axis=-1, keepdims=True)
    xp.subtract(xp.log(total[:, 0]), picked, out=nll)
    probs /= total


def _cross_entropy_backward_rows(probs, targets, weights, d) -> None:
    """Into d, for a block of rows: (softmax(z) - onehot(y)) · weight of the row."""
    d[...] = probs
    d[get_array_module(d).arange(len(targets)), targets] -= 1  # softmax - onehot
    d *= weights


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
            rows, keys = (slice(None), slice(None), slice(lo, hi)), (slice(None), slice(None), slice(0, hi))
            tile = self._probs(q[rows], k[keys], lo) if probs is None else probs[:, :, lo:hi, :hi]
            dprobs = dy[rows] @ v[keys].swapaxes(-1, -2)  # (b, H, t, s), a new array only this function holds
            # dS = P ⊙ (dP - Σ_j dP ⊙ P) · scale, written over dP's memory: dP is not read again.
            if self.on_gpu:
                dscores = kernels.softmax_backward_(dprobs, tile, self.scale)  # one kernel
            else:
                row_dot = xp.einsum("bhtd,bhtd->bht", dy[rows], y[rows])[..., None]  # Σ_j dP_ij P_ij = dy_i · y_i
                dscores = dprobs
                dscores -= row_dot
                dscores *= tile
                dscores *= self.scale
            xp.matmul(dscores, k[keys], out=dq[rows])  # dq = dS k (the scale is in dS)
            if hi == dk.shape[2]:  # the last tile: every key, written
                xp.matmul(tile.swapaxes(-1, -2), dy[rows], out=dv)  # dv = Pᵀ dy
                xp.matmul(dscores.swapaxes(-1, -2), q[rows], out=dk)  # dk = dSᵀ q
            else:  # an earlier tile: its keys also got gradients from the later tiles
                dv[keys] += tile.swapaxes(-1, -2) @ dy[rows]
                dk[keys] += dscores.swapaxes(-1, -2) @ q[rows]


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
