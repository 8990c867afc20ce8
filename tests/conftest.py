"""Shared test setup: every test starts on float32 with a fixed global seed, on the device
chosen with `pytest --device cpu|cuda` (default cpu)."""
import os

# The tests' models are tiny: BLAS threads cost more than they bring at these sizes, and on
# a busy machine they oversubscribe the cores. Set before NumPy loads OpenBLAS; the lesson
# kernels inherit it. (A user's own runs keep the default.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy  # noqa: E402
import pytest  # noqa: E402

from minillm import fast  # noqa: E402
from minillm.engine import backend  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=["cpu", "cuda"],
                     help="run the suite's array code on NumPy (cpu) or CuPy (cuda)")


def pytest_configure(config):
    if config.getoption("--device") == "cuda":
        _compare_on_the_host()


def _compare_on_the_host():
    """On --device cuda, NumPy's assertion helpers bring CuPy arrays to the host first, so
    the same test bodies check both backends (CuPy refuses implicit conversion)."""
    import functools
    import numpy.testing as nt

    def host(value):
        return backend.to_numpy(value) if type(value).__module__.startswith("cupy") else value

    for name in ("assert_allclose", "assert_array_equal", "assert_array_almost_equal", "assert_equal"):
        original = getattr(nt, name)

        @functools.wraps(original)
        def wrapped(*args, _original=original, **kwargs):
            return _original(*[host(a) for a in args], **kwargs)
        setattr(nt, name, wrapped)


def gpu_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_backend_state(request):
    backend.use_device(request.config.getoption("--device"))
    backend.set_default_dtype(numpy.float32)
    backend.manual_seed(0)
    backend.set_debug_nan(False)
    yield
    fast.disable()  # the default path again after a test that switched the speed wing on (the CLI does)
    backend.use_device(request.config.getoption("--device"))
    backend.set_default_dtype(numpy.float32)
    backend.set_debug_nan(False)


@pytest.fixture
def float64():
    """Gradient checks run in float64."""
    backend.set_default_dtype(numpy.float64)
    yield


def rand(*shape, seed=0, requires_grad=True, positive=False):
    """A float64 leaf tensor of standard normal values (or values in [0.5, 2] if positive)."""
    from minillm import Tensor
    rng = numpy.random.default_rng(seed)
    data = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    return Tensor(backend.asarray(data, numpy.float64), requires_grad=requires_grad)


def train_tiny_gpt(steps: int = 4, dtype=numpy.float32):
    """A tiny GPT after a few clipped AdamW steps (two groups, one without decay), on whichever
    path is switched in: its parameters, the losses and the optimizer's class name."""
    import minillm
    from minillm.engine import optim
    from minillm.model import functional as F
    from minillm.model.gpt import GPT, GPTConfig
    with backend.default_dtype(dtype):
        minillm.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8))
        opt = optim.AdamW([{"params": [p for p in model.parameters() if p.ndim == 2]},
                           {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                          lr=1e-2, weight_decay=0.1)
        losses = []
        for window in numpy.random.default_rng(0).integers(0, 11, (steps, 5, 7)):
            loss = F.cross_entropy(model(window[:, :-1]).reshape(-1, 11), window[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            optim.clip_grad_norm(model.parameters(), 0.5)
            opt.step()
            losses.append(loss.item())
    return [p.numpy().copy() for p in model.parameters()], losses, type(opt).__name__
