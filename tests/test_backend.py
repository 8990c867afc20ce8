"""The backend: seeding, dtypes, and the rule that array code never calls NumPy directly."""
import ast
import pathlib

import numpy
import pytest

import minillm
from minillm.engine import backend

PACKAGE = pathlib.Path(minillm.__file__).parent
# Host-only code may use NumPy directly (DESIGN: tokenizers, data files, plots, checkpoints,
# the CLI, and the gradient checker's float64 bookkeeping). Every other module is array
# code: it reaches its array library through minillm.engine.backend (xp or get_array_module) so
# that the same lines run on CuPy.
HOST_ONLY = {"engine/backend.py", "engine/gradcheck.py", "io/checkpoint.py", "io/safe_files.py", "app/cli.py",
             "model/ngram.py", "io/plots.py", "app/report.py", "io/hf_gpt2.py",
             # the phases' loops: host-side bookkeeping around the array code they call
             "phases/trainer.py", "phases/progress.py", "phases/common.py", "phases/summaries.py", "phases/rl/judge.py",
             "phases/pretrain.py", "phases/sft.py", "phases/reward.py", "phases/rl/rlhf.py",
             "phases/rl/dpo.py", "phases/rl/best_of_n_run.py"}
HOST_ONLY_DIRS = {"tokenizers", "data", "app/commands"}
ARRAY_MODULES = sorted(
    p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
    if p.relative_to(PACKAGE).as_posix() not in HOST_ONLY
    and p.relative_to(PACKAGE).parent.as_posix() not in HOST_ONLY_DIRS)
# NumPy may be imported for dtypes and host-side types only; these are the allowed uses.
ALLOWED_NUMPY_ATTRS = {"float16", "float32", "float64", "generic", "ndarray", "dtype", "integer",
                       "asarray",  # engine/tensor.py: wraps a NumPy scalar that a reduction returned
                       "__version__"}  # a run's record of the library it ran on


def _numpy_uses(path):
    tree = ast.parse(path.read_text())
    names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for a in node.names if a.name == "numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            yield node.attr, node.lineno


@pytest.mark.parametrize("name", ARRAY_MODULES)
def test_array_code_goes_through_the_backend(name):
    path = PACKAGE / name
    bad = [(attr, line) for attr, line in _numpy_uses(path) if attr not in ALLOWED_NUMPY_ATTRS]
    # fast/fused.py's scatter_add_rows has a NumPy-only fast path, taken only when xp is numpy.
    if name == "fast/fused.py":
        bad = [(a, l) for a, l in bad if a not in {"argsort", "flatnonzero", "r_", "add"}]
    assert not bad, f"{name} calls numpy directly at {bad}: use backend.xp or get_array_module"


def test_only_backend_imports_cupy():
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() != "engine/backend.py":
            assert "import cupy" not in path.read_text(), f"{path} imports cupy"


def test_same_seed_same_numbers():
    minillm.manual_seed(42)
    a = backend.get_rng().standard_normal(5)
    minillm.manual_seed(42)
    b = backend.get_rng().standard_normal(5)
    numpy.testing.assert_array_equal(a, b)
    state = backend.get_rng_state()
    c = backend.get_rng().random(3)
    backend.set_rng_state(state)
    numpy.testing.assert_array_equal(c, backend.get_rng().random(3))


def test_default_dtype_setting():
    assert minillm.Tensor([1.0]).dtype == numpy.float32
    with minillm.default_dtype(numpy.float64):
        assert minillm.Tensor([1.0]).dtype == numpy.float64
    assert minillm.get_default_dtype() == numpy.float32
    with pytest.raises(TypeError, match="floating"):
        minillm.set_default_dtype(numpy.int32)


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative integer"):
        minillm.make_rng(-1)


def test_to_numpy_and_transfer_counter_on_cpu():
    minillm.use_device("cpu")
    backend.transfers.update(dict.fromkeys(backend.transfers, 0))  # zero the counters
    arr = backend.to_numpy(backend.asarray([1.0, 2.0]))
    assert isinstance(arr, numpy.ndarray)
    assert backend.transfers == {"device_to_host": 0, "host_to_device": 0}
