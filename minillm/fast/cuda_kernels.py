"""Fused GPU kernels (CuPy) for the element-wise and row-wise work of the model.

Lecture: the same formulas as `fast/fused.py` and `engine/optim.py`, compiled into one GPU kernel each,
so a chain of a dozen array operations reads and writes memory once instead of a dozen
times, and costs one kernel launch instead of a dozen. The array-expression versions in
`fast/fused.py` and `engine/optim.py` stay the twins these kernels are tested against
(tests/test_backends_agree.py). Kernels are built on first use through `backend.xp`, so
this module never imports CuPy itself and costs nothing on the CPU.

- Element-wise (`ElementwiseKernel`): GELU forward and backward, the cross-entropy gradient,
  the AdamW update over one flat buffer of parameters.
- Row-wise (`RawKernel`, one 32-thread warp per row, sums and maxima by warp shuffles):
  layer norm forward and backward, the causal softmax of attention and its backward, the
  cross entropy's log-sum-exp. A row is at most a few thousand numbers here, so one warp
  per row keeps every reduction inside registers, with no shared memory or second pass.
- Column sums (bias and layer-norm weight gradients) as one cuBLAS matrix-vector product.
- A deterministic scatter-add (the embedding's backward) that sums in a fixed order, so
  training on a GPU is reproducible bit for bit, as on the CPU.
Left out: matrix products (cuBLAS does them), attention fused with its matrix products
(flash attention: a tiled kernel well beyond a readable file).
"""
from __future__ import annotations

from minillm.engine import backend

_KERNELS: dict = {}

# y = ½ x (1 + t), t = tanh(√(2/π) (x + 0.044715 x³))
_GELU_FORWARD = """
    t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
    y = 0.5 * x * (1 + t);
"""
# dy/dx = ½ (1 + t) + ½ x (1 - t²) √(2/π) (1 + 3·0.044715 x²)
_GELU_BACKWARD = """
    T inner = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
    dx = g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * inner);
"""


# y[s, c] = Σ_{j in segment s} values[order[j], c], summed in sorted order: the same order
# every run, unlike atomic adds, so a GPU run is reproducible bit for bit.
_SEGMENT_SUM = """
    const long long s = i / C, c = i % C;
    T acc = 0;
    for (long long j = starts[s]; j < ends[s]; ++j) acc += values[order[j] * C + c];
    y = acc;
"""


# p <- p·decay;  m <- β1·m + (1-β1)·g;  v <- β2·v + (1-β2)·g²;  p <- p - step · m / (√v + eps')
# (decay = 1 - lr·λ; step and eps' carry Adam's bias corrections, as in optim.AdamW)
_ADAMW = """
    p = p * decay;
    m = beta1 * m + one_minus_beta1 * g;
    v = beta2 * v + one_minus_beta2 * (g * g);
    p = p - step * (m / (sqrt(v) + eps));
"""

# dL/dz[r, c] = (softmax(z)[r, c] - [c = y_r]) · scale on counted rows, 0 on ignored rows;
# softmax(z) = exp(z - logsumexp(z)), with the row's log-sum-exp saved by the forward.
_CROSS_ENTROPY_BACKWARD = """
    const long long r = i / V, c = i % V;
    const long long y = targets[r];
    d = (y == ignore) ? (T)0 : (T)((exp(z - lse[r]) - (c == y ? 1 : 0)) * scale[0]);
"""

# One warp (32 threads) per row of a (rows, C) array; each thread visits every 32nd column.
_ROWS = r"""
template<typename T> __device__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
template<typename T> __device__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) { T u = __shfl_xor_sync(0xffffffff, v, o); v = u > v ? u : v; }
    return v;
}
#define ROW_SETUP                                                                  \
    const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; \
    const int lane = threadIdx.x % 32;                                             \
    if (row >= rows) return;

// x̂ = (x - μ) / √(σ² + eps),  y = x̂ · w + b  (w, b skipped where has_w, has_b are 0)
template<typename T> __global__ void layer_norm_forward(
        const T* x, const T* w, const T* b, T* y, T* xhat, T* inv_std,
        long long rows, int C, T eps, int has_w, int has_b) {
    ROW_SETUP
    const T* xr = x + row * C;
    T s = 0;
    for (int c = lane; c < C; c += 32) s += xr[c];
    const T mu = warp_sum(s) / C;
    T ss = 0;
    for (int c = lane; c < C; c += 32) { T d = xr[c] - mu; ss += d * d; }
    const T r = (T)1 / sqrt(warp_sum(ss) / C + eps);
    for (int c = lane; c < C; c += 32) {
        T h = (xr[c] - mu) * r;
        xhat[row * C + c] = h;
        if (has_w) h = h * w[c];
        if (has_b) h = h + b[c];
        y[row * C + c] = h;
    }
    if (lane == 0) inv_std[row] = r;
}

// ĝ = g · w;  dx = (ĝ - mean(ĝ) - x̂ · mean(ĝ · x̂)) · inv_std
template<typename T> __global__ void layer_norm_backward(
        const T* g, const T* xhat, const T* inv_std, const T* w, T* dx,
        long long rows, int C, int has_w) {
    ROW_SETUP
    const T* gr = g + row * C;
    const T* hr = xhat + row * C;
    T s1 = 0, s2 = 0;
    for (int c = lane; c < C; c += 32) {
        T gh = has_w ? gr[c] * w[c] : gr[c];
        s1 += gh;
        s2 += gh * hr[c];
    }
    const T m1 = warp_sum(s1) / C, m2 = warp_sum(s2) / C;
    for (int c = lane; c < C; c += 32) {
        T gh = has_w ? gr[c] * w[c] : gr[c];
        dx[row * C + c] = (gh - m1 - hr[c] * m2) * inv_std[row];
    }
}

// In place over s (rows = B·H·Tq rows of Tk scores): P = softmax(s · scale + causal mask).
// Query i of a head (i = row mod Tq) sits at position Tk - Tq + i and sees keys 0..that.
template<typename T> __global__ void causal_softmax_forward(
        T* s, long long rows, int Tq, int Tk, T scale) {
    ROW_SETUP
    T* r = s + row * Tk;
    const int last = Tk - Tq + (int)(row % Tq);
    T m = r[0] * scale;  // key 0 is always visible, so the row's maximum starts from it
    for (int c = lane; c <= last; c += 32) { T u = r[c] * scale; m = u > m ? u : m; }
    m = warp_max(m);
    T total = 0;
    for (int c = lane; c <= last; c += 32) { T e = exp(r[c] * scale - m); r[c] = e; total += e; }
    const T inv = (T)1 / warp_sum(total);
    for (int c = lane; c < Tk; c += 32) r[c] = c <= last ? r[c] * inv : (T)0;
}

// In place over dp: dS = P · (dP - Σ_j dP · P) · scale, the softmax's backward times the scale.
template<typename T> __global__ void softmax_backward(
        T* dp, const T* p, long long rows, int cols, T scale) {
    ROW_SETUP
    T* d = dp + row * cols;
    const T* pr = p + row * cols;
    T dot = 0;
    for (int c = lane; c < cols; c += 32) dot += d[c] * pr[c];
    dot = warp_sum(dot);
    for (int c = lane; c < cols; c += 32) d[c] = pr[c] * (d[c] - dot) * scale;
}

// lse = log Σ_c exp(z_c) (max-shifted);  nll = lse - z[y], 0 where y is the ignored id.
template<typename T> __global__ void cross_entropy_forward(
        const T* z, const long long* targets, T* lse, T* nll,
        long long rows, int V, long long ignore) {
    ROW_SETUP
    const T* zr = z + row * V;
    T m = zr[0];
    for (int c = lane; c < V; c += 32) m = zr[c] > m ? zr[c] : m;
    m = warp_max(m);
    T total = 0;
    for (int c = lane; c < V; c += 32) total += exp(zr[c] - m);
    const T l = m + log(warp_sum(total));
    if (lane == 0) {
        lse[row] = l;
        const long long y = targets[row];
        nll[row] = (y == ignore) ? (T)0 : l - zr[y];
    }
}
"""
_ROW_KERNELS = ("layer_norm_forward", "layer_norm_backward", "causal_softmax_forward",
                "softmax_backward", "cross_entropy_forward")
_WARPS_PER_BLOCK = 8


def _kernel(name: str, in_params: str, out_params: str, body: str):
    if name not in _KERNELS:
        _KERNELS[name] = backend.xp.ElementwiseKernel(in_params, out_params, body, f"minillm_{name}")
    return _KERNELS[name]


def _row_kernel(name: str, dtype):
    """The row-wise kernel `name` compiled for float or double."""
    ctype = {"float32": "float", "float64": "double"}.get(backend.xp.dtype(dtype).name)
    if ctype is None:
        raise TypeError(f"the GPU row kernels run in float32 or float64, got {dtype}")
    if "rows" not in _KERNELS:  # one module holds every row kernel, for float and double
        _KERNELS["rows"] = backend.xp.RawModule(
            code=_ROWS, options=("--std=c++11",),
            name_expressions=[f"{k}<{t}>" for k in _ROW_KERNELS for t in ("float", "double")])
    return _KERNELS["rows"].get_function(f"{name}<{ctype}>")


def _launch_rows(name: str, dtype, rows: int, args) -> None:
    """Run a row kernel with one warp per row."""
    blocks = (rows + _WARPS_PER_BLOCK - 1) // _WARPS_PER_BLOCK
    _row_kernel(name, dtype)((blocks,), (32 * _WARPS_PER_BLOCK,), args)


def _int32(value):  # the C ints the row kernels take, as typed scalars
    return backend.xp.int32(value)


def _int64(value):
    return backend.xp.int64(value)


def _scalars(dtype, *values):
    return tuple(backend.xp.dtype(dtype).type(v) for v in values)


def layer_norm_forward(x, weight, bias, eps: float):
    """(y, x̂, 1/√(σ² + eps)) of layer norm over the last axis, one kernel. x (..., C)."""
    xp = backend.xp
    x = xp.ascontiguousarray(x)
    C = x.shape[-1]
    rows = x.size // C
    y, xhat, inv_std = xp.empty_like(x), xp.empty_like(x), xp.empty(x.shape[:-1] + (1,), x.dtype)
    w = x if weight is None else xp.ascontiguousarray(weight)  # a placeholder pointer when absent
    b = x if bias is None else xp.ascontiguousarray(bias)
    _launch_rows("layer_norm_forward", x.dtype, rows,
                 (x, w, b, y, xhat, inv_std, _int64(rows), _int32(C), *_scalars(x.dtype, eps),
                  _int32(weight is not None), _int32(bias is not None)))
    return y, xhat, inv_std


def layer_norm_backward(grad, xhat, inv_std, weight):
    """dL/dx of layer norm, one kernel (dw and db are column sums, left to CuPy)."""
    xp = backend.xp
    grad = xp.ascontiguousarray(grad)
    C = grad.shape[-1]
    rows = grad.size // C
    dx = xp.empty_like(grad)
    w = grad if weight is None else xp.ascontiguousarray(weight)
    _launch_rows("layer_norm_backward", grad.dtype, rows,
                 (grad, xhat, inv_std, w, dx, _int64(rows), _int32(C), _int32(weight is not None)))
    return dx


def causal_softmax_(scores, scale: float):
    """In place: scores (..., Tq, Tk) -> softmax(scores · scale + causal mask), one kernel.

    Query i sees keys 0..Tk - Tq + i (the cached keys and itself)."""
    Tq, Tk = scores.shape[-2:]
    _launch_rows("causal_softmax_forward", scores.dtype, scores.size // Tk,
                 (scores, _int64(scores.size // Tk), _int32(Tq), _int32(Tk),
                  *_scalars(scores.dtype, scale)))
    return scores


def softmax_backward_(dprobs, probs, scale: float):
    """In place over dprobs: dS = P ⊙ (dP - Σ_j dP ⊙ P) · scale, one kernel."""
    cols = dprobs.shape[-1]
    _launch_rows("softmax_backward", dprobs.dtype, dprobs.size // cols,
                 (dprobs, probs, _int64(dprobs.size // cols), _int32(cols),
                  *_scalars(dprobs.dtype, scale)))
    return dprobs


def cross_entropy_forward(logits, targets, ignore_index: int):
    """(log-sum-exp per row, -log softmax(z)[y] per row, 0 on ignored rows), one kernel.

    logits (N, V), targets (N,) -> (N,), (N,)."""
    xp = backend.xp
    logits = xp.ascontiguousarray(logits)
    targets = xp.ascontiguousarray(targets, dtype=xp.int64)
    N, V = logits.shape
    lse, nll = xp.empty(N, logits.dtype), xp.empty(N, logits.dtype)
    _launch_rows("cross_entropy_forward", logits.dtype, N,
                 (logits, targets, lse, nll, _int64(N), _int32(V), _int64(ignore_index)))
    return lse, nll


def cross_entropy_backward(logits, targets, lse, scale, ignore_index: int):
    """dL/dz = (softmax(z) - onehot(y)) · scale on counted rows, 0 on ignored ones, one kernel.

    scale: a one-element device array (the upstream gradient over the count of rows)."""
    xp = backend.xp
    kernel = _kernel("cross_entropy_backward", "T z, raw T lse, raw int64 targets, raw T scale, int64 V, "
                     "int64 ignore", "T d", _CROSS_ENTROPY_BACKWARD)
    return kernel(xp.ascontiguousarray(logits), lse, xp.ascontiguousarray(targets, dtype=xp.int64),
                  scale.reshape(1), logits.shape[1], ignore_index)


def adamw_(p, g, m, v, decay: float, beta1: float, beta2: float, step: float, eps: float) -> None:
    """The AdamW update of `optim.AdamW`, in place over flat p, m, v, one kernel."""
    kernel = _kernel("adamw", "T g, T decay, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, "
                     "T step, T eps", "T p, T m, T v", _ADAMW)
    kernel(g, *_scalars(p.dtype, decay, beta1, 1 - beta1, beta2, 1 - beta2, step, eps), p, m, v)


_ONES: dict = {}


def column_sums(matrix):
    """Σ over the rows of a (N, C) array as the product ones(N) @ matrix -> (C,).

    cuBLAS runs this matrix-vector product much faster than a reduction over axis 0, which
    CuPy does with one thread striding down each column; the gradients of biases and of
    layer norm's weights are such sums."""
    xp = backend.xp
    key = (matrix.shape[0], matrix.dtype.str)
    if key not in _ONES:  # one vector per size, so each sum is a single launch
        _ONES[key] = xp.ones(matrix.shape[0], dtype=matrix.dtype)
    return _ONES[key] @ xp.ascontiguousarray(matrix)


def gelu_forward(x):
    """(y, t) for GELU in one kernel: t is kept for the backward."""
    return _kernel("gelu_forward", "T x", "T y, T t", _GELU_FORWARD)(x)


def gelu_backward(grad, x, t):
    """dL/dx for GELU in one kernel."""
    return _kernel("gelu_backward", "T g, T x, T t", "T dx", _GELU_BACKWARD)(grad, x, t)


def scatter_add_rows(num_rows: int, ids, values):
    """out[i] = Σ_{j: ids[j] = i} values[j] on the GPU, deterministically.

    The ids are sorted once; one kernel thread per (distinct id, channel) sums that id's rows
    in sorted order. CuPy's `add.at` would use atomic adds, whose order (and so the float
    rounding) changes from run to run. ids (N,), values (N, C) -> (num_rows, C).
    """
    xp = backend.xp
    values = xp.ascontiguousarray(values)
    order = xp.argsort(ids)
    sorted_ids = ids[order]
    is_start = xp.concatenate([xp.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1]])
    starts = xp.flatnonzero(is_start)
    ends = xp.concatenate([starts[1:], xp.asarray([len(ids)], dtype=starts.dtype)])
    sums = xp.empty((len(starts), values.shape[1]), dtype=values.dtype)
    kernel = _kernel("segment_sum", "raw T values, raw int64 order, raw int64 starts, raw int64 ends, int64 C",
                     "T y", _SEGMENT_SUM)
    kernel(values, order.astype(xp.int64), starts.astype(xp.int64), ends.astype(xp.int64),
           values.shape[1], sums)
    out = xp.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    out[sorted_ids[starts]] = sums
    return out
