"""Shared test setup: every test starts on float32 with a fixed global seed."""
import numpy
import pytest

from minillm import backend


@pytest.fixture(autouse=True)
def _fresh_backend_state():
    backend.set_default_dtype(numpy.float32)
    backend.manual_seed(0)
    backend.set_debug_nan(False)
    yield
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
