"""NumPy and CuPy give the same numbers: ops (on the plain path and with the speed wing), the
model's forward and backward, training steps, generation; and a training step reads back from
the GPU only the logged scalars. The speed wing's CUDA kernels are held to its CPU twins.

Marked `gpu`: skipped cleanly where CuPy or a GPU is missing.
"""
import numpy
import pytest

import minillm
from minillm import Tensor, fast
from minillm.data.windows import TokenWindows
from minillm.engine import backend, optim
from minillm.model import functional as F
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.sampling import generate
from minillm.phases.losses import sequence_cross_entropy

import composed

pytestmark = pytest.mark.gpu

CONFIG = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=64)
OPS = {
    "gelu": F.gelu, "gelu_composed": composed.gelu, "softmax": F.softmax, "log_softmax": F.log_softmax,
    "layer_norm": F.layer_norm, "exp_tanh_sigmoid": lambda x: x.exp() * x.tanh() + x.sigmoid(),
    "softplus": lambda x: x.softplus(), "reductions": lambda x: x.max(axis=1) + x.logsumexp(axis=0).sum(),
    "matmul": lambda x: x @ x.T, "attention": lambda x: F.causal_self_attention(x.reshape(2, 6, 24), 2),
    "embedding_scatter": lambda x: F.embedding(x, numpy.array([[3, 1, 3, 11], [0, 3, 1, 1]])),
    "broadcast_bias": lambda x: x.reshape(3, 4, 24) * x[0].reshape(24) + x[1:2],  # unbroadcast's column sums
}


def on(device, fn):
    """Run fn on a device and bring the (numpy) results back."""
    backend.use_device(device)
    minillm.manual_seed(0)
    try:
        return fn()
    finally:
        backend.use_device("cpu")


def value_and_grad(name):
    x = Tensor(backend.asarray(numpy.random.default_rng(0).standard_normal((12, 24)).astype(numpy.float32)),
               requires_grad=True)
    out = OPS[name](x)
    (out * out).sum().backward()
    return out.numpy(), backend.to_numpy(x.grad)


@pytest.fixture
def fast_on():
    """The speed wing on (conftest switches it off after the test): its CUDA kernels run."""
    fast.enable()


@pytest.mark.parametrize("path", ["plain", "fast"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_agree(name, path):
    if path == "fast":
        fast.enable()
    (v1, g1), (v2, g2) = on("cpu", lambda: value_and_grad(name)), on("cuda", lambda: value_and_grad(name))
    numpy.testing.assert_allclose(v1, v2, rtol=2e-5, atol=2e-5)
    numpy.testing.assert_allclose(g1, g2, rtol=2e-4, atol=2e-4)


def _weights():
    minillm.manual_seed(0)
    backend_device = backend.device
    backend.use_device("cpu")
    state = {k: v.copy() for k, v in GPT(CONFIG).state_dict().items()}
    backend.use_device(backend_device)
    return state


WEIGHTS = None


def model_with_shared_weights():
    global WEIGHTS
    if WEIGHTS is None:
        WEIGHTS = _weights()
    model = GPT(CONFIG)
    model.load_state_dict(WEIGHTS)
    return model


def train_steps(steps=3):
    model = model_with_shared_weights()
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    ids = numpy.random.default_rng(1).integers(0, 50, (4, 33))
    losses = []
    for _ in range(steps):
        loss = sequence_cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses, {k: backend.to_numpy(v) for k, v in model.state_dict().items()}


def test_model_training_steps_agree():
    (l1, w1), (l2, w2) = on("cpu", train_steps), on("cuda", train_steps)
    numpy.testing.assert_allclose(l1, l2, rtol=1e-4)
    for k in w1:
        numpy.testing.assert_allclose(w1[k], w2[k], rtol=1e-3, atol=1e-4, err_msg=k)


def greedy():
    return generate(model_with_shared_weights(), [[1, 2, 3], [4, 5]], 12, temperature=0.0)


def test_greedy_generation_agrees():
    assert on("cpu", greedy) == on("cuda", greedy)


def test_seeded_sampling_is_reproducible_on_the_gpu():
    def sample():
        return generate(model_with_shared_weights(), [1, 2, 3], 10, temperature=1.0, seed=7)
    assert on("cuda", sample) == on("cuda", sample)


def test_rng_state_round_trip_on_the_gpu():
    def draws():
        rng = backend.get_rng()
        state = backend.get_rng_state()
        a = backend.to_numpy(rng.random((5,), dtype=numpy.float32))
        backend.set_rng_state(state)
        return a, backend.to_numpy(rng.random((5,), dtype=numpy.float32))
    a, b = on("cuda", draws)
    numpy.testing.assert_array_equal(a, b)


def test_a_training_step_reads_back_only_the_logged_scalars():
    def count():
        model = model_with_shared_weights()
        opt = optim.AdamW(model.parameters(), lr=1e-3)
        windows = TokenWindows(numpy.random.default_rng(2).integers(0, 50, 500), block_size=32)
        x, y = windows.batch(4)  # batches are drawn on the device
        assert not backend.on_host(x)
        backend.transfers.update(dict.fromkeys(backend.transfers, 0))  # zero the counters
        loss = sequence_cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 1.0)  # reads the norm back: a logged scalar
        opt.step()
        loss.item()                                      # the loss: a logged scalar
        return dict(backend.transfers)
    assert on("cuda", count) == {"device_to_host": 2, "host_to_device": 0}


def test_gpu_generator_offers_what_the_library_draws():
    def draws():
        rng = minillm.make_rng(3)
        order = backend.to_numpy(rng.permutation(6))
        ints = backend.to_numpy(rng.integers(0, 5, size=4))
        normal = rng.standard_normal((2, 3), dtype=numpy.float32)
        uniform = rng.uniform(-1.0, 1.0, (3,), dtype=numpy.float32)
        return sorted(order.tolist()), ints, normal.shape, backend.to_numpy(uniform)
    order, ints, shape, uniform = on("cuda", draws)
    assert order == list(range(6)) and ((0 <= ints) & (ints < 5)).all() and shape == (2, 3)
    assert ((-1 <= uniform) & (uniform <= 1)).all()


@pytest.mark.usefixtures("fast_on")  # the plain path's scatter-add (add.at) uses atomic adds on a GPU
def test_gpu_training_is_reproducible_bit_for_bit():
    (l1, w1), (l2, w2) = on("cuda", train_steps), on("cuda", train_steps)
    assert l1 == l2
    for k in w1:
        numpy.testing.assert_array_equal(w1[k], w2[k], err_msg=k)


# ----- the speed wing's kernels (fast/cuda_kernels.py) against their NumPy twins in fast/ ----------

def _value_and_input_grads(fn, *arrays, dtype=numpy.float32):
    """fn's value and the gradient of Σ value·w (w fixed) with respect to each input."""
    inputs = [Tensor(backend.asarray(a.astype(dtype)), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    w = backend.asarray(numpy.random.default_rng(9).standard_normal(out.shape).astype(dtype))
    (out * Tensor(w)).sum().backward()
    return out.numpy(), [backend.to_numpy(t.grad) for t in inputs]


def _agree(fn, *arrays, dtype=numpy.float32):
    tol = 1e-10 if dtype == numpy.float64 else 2e-5
    (v1, g1), (v2, g2) = (on(d, lambda: _value_and_input_grads(fn, *arrays, dtype=dtype)) for d in ("cpu", "cuda"))
    numpy.testing.assert_allclose(v2, v1, rtol=tol * 10, atol=tol)
    for a, b in zip(g1, g2):
        numpy.testing.assert_allclose(b, a, rtol=tol * 10, atol=tol * 10)


DTYPES = pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64], ids=["f32", "f64"])


@pytest.mark.usefixtures("fast_on")
@DTYPES
@pytest.mark.parametrize("C", [7, 50, 768])
def test_layer_norm_kernel_agrees_with_its_twin(dtype, C):
    rng = numpy.random.default_rng(C)
    x, w, b = rng.standard_normal((3, 5, C)) * 3 + 1, rng.standard_normal(C), rng.standard_normal(C)
    _agree(lambda x, w, b: F.layer_norm(x, w, b), x, w, b, dtype=dtype)
    _agree(lambda x: F.layer_norm(x), x, dtype=dtype)


@pytest.mark.usefixtures("fast_on")
@DTYPES
@pytest.mark.parametrize("T", [5, 40, 130])
def test_causal_softmax_kernels_agree_with_their_twin(dtype, T):
    qkv = numpy.random.default_rng(T).standard_normal((2, T, 3 * 24)) * 2
    _agree(lambda t: F.causal_self_attention(t, 3), qkv, dtype=dtype)


@pytest.mark.usefixtures("fast_on")
@DTYPES
@pytest.mark.parametrize("V", [3, 101, 5000])
def test_cross_entropy_kernels_agree_with_their_twin(dtype, V):
    rng = numpy.random.default_rng(V)
    logits = rng.standard_normal((37, V)) * 4
    targets = rng.integers(0, V, 37)
    targets[[0, 5, 6]] = -100  # ignored rows count neither in the mean nor in the gradient
    _agree(lambda z: F.cross_entropy(z, backend.asarray(targets)), logits, dtype=dtype)


@pytest.mark.usefixtures("fast_on")
def test_adamw_kernel_agrees_with_its_twin():
    def run():
        minillm.manual_seed(0)
        p = minillm.model.nn.Parameter(numpy.random.default_rng(1).standard_normal((6, 7)).astype(numpy.float32))
        q = minillm.model.nn.Parameter(numpy.random.default_rng(2).standard_normal(7).astype(numpy.float32))
        opt = optim.AdamW([{"params": [p]}, {"params": [q], "weight_decay": 0.0}], lr=0.1, weight_decay=0.5)
        for step in range(3):
            opt.zero_grad()
            ((p * p).sum() * (step + 1) + (q * q * q).sum()).backward()
            opt.step()
        return backend.to_numpy(p.data), backend.to_numpy(q.data)
    for a, b in zip(on("cpu", run), on("cuda", run)):
        numpy.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
