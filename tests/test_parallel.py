"""Element-wise work split over threads (`cpu_threads.parallel_rows`) against its one-thread twin:
the fused ops, AdamW and whole training steps give the same numbers bit for bit."""
import os
import subprocess
import sys

import numpy
import pytest

import minillm
from minillm import Tensor
from minillm.fast import cpu_threads, attention as fused_attention
from minillm.engine import optim
from minillm.engine.gradcheck import gradcheck
from minillm.model import functional as F
from minillm.errors import UserError
from minillm.model.gpt import GPT, GPTConfig

from conftest import rand

SPLIT = dict(count=3, min_size=1)  # three threads, and every array split however small


def _value_and_grads(fn, *inputs):
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    weights = numpy.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    (out * Tensor(weights)).sum().backward()
    return [out.numpy()] + [t.grad.copy() for t in inputs]


OPS = {
    "gelu": (lambda x: F.gelu(x), [(7, 5, 6)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b), [(7, 5, 8), (8,), (8,)]),
    "layer_norm_plain": (lambda x: F.layer_norm(x), [(7, 5, 8)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(7, 5, 6), (6, 9), (9,)]),
    "attention": (lambda qkv: F.causal_self_attention(qkv, 2), [(7, 5, 12)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, [0, 3, -100, 2, 1, 1, 4]), [(7, 5)]),
}


# (op, attention's query tile): attention also with its queries in tiles of 2 rows
CASES = [(name, 64) for name in sorted(OPS)] + [("attention", 2)]


@pytest.mark.parametrize("name, tile", CASES, ids=[f"{n}-tile{t}" for n, t in CASES])
def test_threaded_op_equals_one_thread_bit_for_bit(name, tile, monkeypatch):
    monkeypatch.setattr(fused_attention, "ATTENTION_TILE", tile)
    fn, shapes = OPS[name]
    inputs = [rand(*shape, seed=i).detach() for i, shape in enumerate(shapes)]
    inputs = [Tensor(t.data.astype(numpy.float32), requires_grad=True) for t in inputs]
    with cpu_threads.threads(1):
        one = _value_and_grads(fn, *inputs)
    with cpu_threads.threads(**SPLIT):
        split = _value_and_grads(fn, *inputs)
    for a, b in zip(one, split):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["gelu", "layer_norm", "linear", "attention", "cross_entropy"])
def test_threaded_op_gradcheck(name, float64):
    fn, shapes = OPS[name]
    with cpu_threads.threads(**SPLIT):
        assert gradcheck(fn, [rand(*shape, seed=i) for i, shape in enumerate(shapes)])


def test_threaded_whole_model_gradcheck(float64):
    minillm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4))
    x = numpy.random.default_rng(0).integers(0, 5, (3, 4))
    with cpu_threads.threads(**SPLIT):
        assert gradcheck(lambda *_: F.cross_entropy(model(x).reshape(-1, 5), x[:, ::-1].reshape(-1)),
                         model.parameters(), atol=1e-6, rtol=1e-5)


def _train(steps: int = 3):
    """A tiny GPT after a few AdamW steps (clipped): its parameters and the losses."""
    minillm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8))
    opt = optim.AdamW([{"params": [p for p in model.parameters() if p.ndim == 2]},
                       {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                      lr=1e-2, weight_decay=0.1)
    ids = numpy.random.default_rng(0).integers(0, 11, (steps, 5, 7))
    losses = []
    for window in ids:
        loss = F.cross_entropy(model(window[:, :-1]).reshape(-1, 11), window[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 0.5)
        opt.step()
        losses.append(loss.item())
    return [p.numpy().copy() for p in model.parameters()], losses


def test_threaded_training_steps_equal_one_thread_bit_for_bit():
    with cpu_threads.threads(1):
        params_one, losses_one = _train()
    with cpu_threads.threads(**SPLIT):
        params_split, losses_split = _train()
    assert losses_one == losses_split
    for a, b in zip(params_one, params_split):
        numpy.testing.assert_array_equal(a, b)


def test_parallel_rows_splits_rows_and_keeps_their_order():
    x = numpy.arange(20.0).reshape(10, 2)
    out = numpy.empty(10)

    def row_sums(block, out_block, offset):
        out_block[...] = block.sum(axis=1) + offset
        return len(block)

    with cpu_threads.threads(3, min_size=1):
        assert cpu_threads.parallel_rows(row_sums, x, out, offset=1.0) == [3, 3, 4]
    numpy.testing.assert_array_equal(out, x.sum(axis=1) + 1)
    with cpu_threads.threads(3, min_size=100):  # small arrays stay on the calling thread
        assert cpu_threads.parallel_rows(row_sums, x, out, offset=1.0) == [10]


def test_parallel_rows_passes_on_a_worker_error():
    def fail_on_last_block(block):
        if block[-1] == 9:
            raise FloatingPointError("the last block failed")

    with cpu_threads.threads(2, min_size=1), pytest.raises(FloatingPointError, match="last block"):
        cpu_threads.parallel_rows(fail_on_last_block, numpy.arange(10))


def test_bad_thread_counts_are_refused():
    with pytest.raises(UserError, match="positive integer"):
        cpu_threads.set_threads(0)
    done = subprocess.run([sys.executable, "-m", "minillm", "--help"], capture_output=True, text=True,
                          env={**os.environ, "MINILLM_THREADS": "two"})
    assert done.returncode == 2
    assert "MINILLM_THREADS must be a positive integer" in done.stderr and "Traceback" not in done.stderr
