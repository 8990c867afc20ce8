"""The one-node functions of `model/functional.py` composed from the engine's primitives,
written as the formulas read: the twins the tests hold the one-node versions equal to, in
value and gradient (tests/test_functional.py) and by finite differences (tests/test_ops.py)."""
import math

from minillm.model import functional as F


def linear(x, weight, bias=None):
    """x W + b as two primitives: a matrix product, then a broadcast add."""
    out = F._tensor(x) @ weight
    return out if bias is None else out + bias


def softmax(x, axis: int = -1):
    """exp(x - max) / Σ exp(x - max); the max is subtracted as a constant so exp cannot overflow."""
    x = F._tensor(x)
    e = (x - x.data.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """x - logsumexp(x)."""
    x = F._tensor(x)
    return x - x.logsumexp(axis=axis, keepdims=True)


def gelu(x):
    """½ x (1 + tanh(√(2/π) (x + 0.044715 x³))), term by term."""
    x = F._tensor(x)
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1 + inner.tanh())


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """(x - μ) / √(σ² + eps) · w + b over the last axis."""
    x = F._tensor(x)
    centered = x - x.mean(axis=-1, keepdims=True)
    out = centered / ((centered * centered).mean(axis=-1, keepdims=True) + eps).sqrt()
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


def embedding(weight, ids):
    """W[ids] as integer-array indexing (whose backward is a scatter-add)."""
    return weight[F._check_ids(ids, weight.shape[0])]
