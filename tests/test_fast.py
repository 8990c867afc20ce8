"""The speed wing (`minillm.fast`) against the plain path: every op it replaces gives the plain
op's value and gradient, training steps give the plain parameters, the flat AdamW's buffers
behave, and `enable()` / `disable()` swap exactly the names they list."""
import math
import os
import subprocess
import sys

import numpy
import pytest

import minillm
from minillm import Tensor, fast
from minillm.engine import ops, optim
from minillm.engine.tensor import Tensor as TensorClass
from minillm.fast import attention as fast_attention, cpu_threads, flat_adamw, fused
from minillm.model import functional as F
from minillm.model import nn

from conftest import rand, train_tiny_gpt
from twin_checks import value_and_grads

OPS = {  # name -> (function of tensors, input shapes)
    "linear": (lambda x, w, b: F.linear(x, w, b), [(3, 5, 6), (6, 9), (9,)]),
    "linear_2d_no_bias": (lambda x, w: F.linear(x, w), [(5, 6), (6, 9)]),
    "matmul_layer": (lambda x, w: x @ w, [(3, 5, 6), (6, 4)]),
    "matmul_batched": (lambda a, b: a @ b, [(2, 3, 4), (2, 4, 5)]),
    "broadcast_add": (lambda a, b: a + b, [(3, 5, 6), (6,)]),
    "gelu": (lambda x: F.gelu(x), [(3, 5, 6)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b), [(3, 5, 8), (8,), (8,)]),
    "layer_norm_no_affine": (lambda x: F.layer_norm(x), [(3, 5, 8)]),
    "embedding": (lambda w: F.embedding(w, numpy.array([[1, 1, 9], [0, 1, 3]])), [(10, 4)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, [0, 3, -100, 2, 1, 1, 4]), [(7, 5)]),
    "attention": (lambda qkv: F.causal_self_attention(qkv, 2), [(2, 7, 12)]),
}


def _plain_and_fast(fn, inputs):
    """fn's value and input gradients on the plain path, then with the speed wing on (its
    threads splitting every array, however small)."""
    fast.disable()
    plain = value_and_grads(fn, *inputs)
    fast.enable()
    with cpu_threads.threads(3, min_size=1):
        quick = value_and_grads(fn, *inputs)
    fast.disable()
    return plain, quick


# (op, attention's query tile): attention also with its queries in tiles of 2 and 3 rows (7 = 3 + 3 + 1)
CASES = [(name, 64) for name in sorted(OPS)] + [("attention", 2), ("attention", 3)]


@pytest.mark.parametrize("name, tile", CASES, ids=[f"{n}-tile{t}" for n, t in CASES])
def test_fast_op_equals_plain_in_value_and_gradient_float64(name, tile, float64, monkeypatch):
    monkeypatch.setattr(fast_attention, "ATTENTION_TILE", tile)
    fn, shapes = OPS[name]
    plain, quick = _plain_and_fast(fn, [rand(*shape, seed=i) for i, shape in enumerate(shapes)])
    for a, b in zip(plain, quick):
        numpy.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(OPS))
def test_fast_op_equals_plain_to_float32_rounding(name):
    fn, shapes = OPS[name]
    inputs = [Tensor(rand(*shape, seed=i).data.astype(numpy.float32), requires_grad=True)
              for i, shape in enumerate(shapes)]
    plain, quick = _plain_and_fast(fn, inputs)
    for a, b in zip(plain, quick):
        assert a.dtype == b.dtype == numpy.float32
        numpy.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, tolerance", [(numpy.float64, 1e-10), (numpy.float32, 2e-4)],
                         ids=["float64", "float32"])
def test_training_steps_fast_equal_plain(dtype, tolerance):
    """float32: Adam's m/√v turns a last-bit difference of a near-zero gradient into a visible
    one, so the parameters agree to a small share of the 4 · lr = 0.04 they move."""
    plain, plain_losses, plain_optimizer = train_tiny_gpt(dtype=dtype)
    fast.enable()
    quick, quick_losses, quick_optimizer = train_tiny_gpt(dtype=dtype)
    fast.disable()
    assert (plain_optimizer, quick_optimizer) == ("AdamW", "FlatAdamW")
    numpy.testing.assert_allclose(quick_losses, plain_losses, rtol=tolerance)
    for a, b in zip(plain, quick):
        numpy.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)


# ----- the switch ----------------------------------------------------------------------

def test_enable_swaps_the_listed_names_and_disable_puts_the_plain_ones_back():
    plain = {(id(ns), name): vars(ns)[name] for ns, name, _ in fast._replacements()}
    assert not fast.enabled() and F.Gelu is not fused.Gelu
    fast.enable()
    fast.enable()  # twice is harmless
    assert fast.enabled() and F.Gelu is fused.Gelu and ops.MatMul is fused.MatMul
    assert optim.AdamW is flat_adamw.FlatAdamW and issubclass(flat_adamw.FlatAdamW, plain[(id(optim), "AdamW")])
    assert F.CausalSelfAttention is fast_attention.CausalSelfAttention
    fast.disable()
    assert not fast.enabled() and cpu_threads.get_threads() == 1
    assert all(vars(ns)[name] is plain[(id(ns), name)] for ns, name, _ in fast._replacements())


@pytest.mark.parametrize("argv, environment, expected", [
    (["pretrain", "--plain"], {}, True),      # after the command's name: the command's own flag, not ours
    (["--plain", "pretrain"], {}, False),
    (["pretrain"], {"MINILLM_PLAIN": "1"}, False),
    (["pretrain"], {"MINILLM_PLAIN": "0"}, True),
    ([], {}, True),
], ids=["flag-after-command", "flag", "variable", "variable-0", "no-arguments"])
def test_the_command_enables_unless_asked_for_the_plain_path(argv, environment, expected, monkeypatch):
    monkeypatch.delenv("MINILLM_PLAIN", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert fast.enable_unless_plain(argv) is expected and fast.enabled() is expected


def test_the_command_runs_fast_by_default_and_plain_when_asked():
    probe = ("import sys; from minillm.app import cli; from minillm import fast; "
             "cli.build_parser = lambda: sys.exit(10 + fast.enabled()); cli.main(sys.argv[1:])")
    runs = {args: subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items() if k != "MINILLM_PLAIN"}).returncode
            for args in [(), ("--plain",)]}
    assert runs == {(): 11, ("--plain",): 10}


# ----- the flat AdamW ------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        self.fc1, self.norm, self.fc2 = nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.gelu(self.norm(self.fc1(x))))


def _two_models_and_a_batch():
    minillm.manual_seed(3)
    a, b = MLP(), MLP()
    b.load_state_dict(a.state_dict())
    return a, b, Tensor(numpy.random.default_rng(0).standard_normal((5, 4)).astype(numpy.float32))


def test_flat_adamw_lays_parameters_out_in_one_buffer_and_steps_each_without_a_gradient():
    fast.enable()
    flat_model, plain_model, x = _two_models_and_a_batch()
    flat = flat_adamw.FlatAdamW(flat_model.parameters(), lr=1e-2)
    plain = flat_adamw.FlatAdamW.__mro__[1](plain_model.parameters(), lr=1e-2)  # the plain AdamW
    for model, opt in ((flat_model, flat), (plain_model, plain)):
        opt.zero_grad()
        (model.fc1(x) ** 2).sum().backward()  # fc2 and the norm get no gradient: they must not move
        opt.step()
    # the first step went parameter by parameter: the parameters without a gradient stay put
    for (name, p), q in zip(flat_model.named_parameters(), plain_model.parameters()):
        numpy.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6, err_msg=name)
    assert numpy.array_equal(flat_model.fc2.weight.data, plain_model.fc2.weight.data)
    flat_model.fc1.weight.data = flat_model.fc1.weight.data.copy()  # a rebound array joins a new flat buffer
    for model, opt in ((flat_model, flat), (plain_model, plain)):
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
    assert all(p.grad is g for f in flat._flat for p, g in zip(f.params, f.grad_views)), "the flat path ran"
    assert flat_model.fc1.weight.data.base is not None, "the rebound parameter is a flat view again"
    for (name, p), q in zip(flat_model.named_parameters(), plain_model.parameters()):
        numpy.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6, err_msg=name)


def test_clip_grad_norm_on_flat_buffers_equals_the_per_gradient_sum():
    fast.enable()
    model, _, x = _two_models_and_a_batch()
    optim.AdamW(model.parameters())
    (model(x) ** 2).sum().backward()
    separate = [p.grad.copy() for p in model.parameters()]
    expected = math.sqrt(sum(float((g.astype(numpy.float64) ** 2).sum()) for g in separate))
    assert len(flat_adamw.flat_gradients(model.parameters())) == 1, "one flat buffer, not one per parameter"
    assert optim.clip_grad_norm(model.parameters(), 1e-3) == pytest.approx(expected, rel=1e-5)
    for p, g in zip(model.parameters(), separate):
        numpy.testing.assert_allclose(p.grad, g * (1e-3 / (expected + 1e-6)), rtol=1e-4)


class SharedSquare(nn.Module):
    """Two layers that share one weight (as the tied embedding and LM head do), then a third."""

    def __init__(self):
        self.first, self.second, self.last = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.last(F.gelu(self.second(F.gelu(self.first(x)))))


def test_gradients_written_into_the_flat_buffer_equal_copied_ones(monkeypatch):
    """fused.Linear writes a laid-out parameter's gradient straight into the flat buffer
    (`grad_out`): the same numbers as the plain path's, also when one weight serves two
    layers, and when a second backward adds to the first (no buffer handed out)."""
    minillm.manual_seed(5)
    with_buffers, plain = SharedSquare(), SharedSquare()
    plain.load_state_dict(with_buffers.state_dict())
    x = Tensor(numpy.random.default_rng(1).standard_normal((5, 6)).astype(numpy.float32))
    for _ in range(2):
        (plain(x) ** 2).sum().backward()
    fast.enable()
    optim.AdamW(with_buffers.parameters(), lr=1e-2)
    written, backward = [], fused.Linear.backward

    def spy(self, grad):
        grads = backward(self, grad)
        if self.grad_out is not None:
            written.extend(g is b for g, b in zip(grads[1:], self.grad_out[1:]) if b is not None)
        return grads

    monkeypatch.setattr(fused.Linear, "backward", spy)
    for backward_pass in range(2):
        written.clear()
        (with_buffers(x) ** 2).sum().backward()
        assert any(written) is (backward_pass == 0), "buffers are offered on the first backward only"
    for (name, p), q in zip(with_buffers.named_parameters(), plain.parameters()):
        assert p.grad is p.grad_buffer, name
        numpy.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6, err_msg=name)
    assert TensorClass._accumulate is flat_adamw.accumulate


def test_no_module_binds_a_swapped_name_at_import():
    """`from minillm.engine.optim import AdamW` in the package would keep the plain AdamW after
    `enable()`: the package reaches every swapped name through its module (`optim.AdamW`)."""
    import ast
    import pathlib
    swapped = {(ns.__name__, name) for ns, name, _ in fast._replacements() if isinstance(ns, type(ops))}
    package = pathlib.Path(minillm.__file__).parent
    bound = [(path.relative_to(package).as_posix(), node.module, alias.name)
             for path in package.rglob("*.py") for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom) for alias in node.names if (node.module, alias.name) in swapped]
    assert not bound, bound
