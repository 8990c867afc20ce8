"""The speed wing's threads (`fast/cpu_threads.py`'s `parallel_rows`) against one thread: the
fast ops, the flat AdamW and whole training steps give the same numbers bit for bit, and a
training run continued in a fresh process equals one that never stopped."""
import os
import subprocess
import sys

import numpy
import pytest

import minillm
import minillm.fast
from minillm import Tensor
from minillm.fast import cpu_threads, attention as fused_attention
from minillm.engine.gradcheck import gradcheck
from minillm.model import functional as F
from minillm.errors import UserError
from minillm.model.gpt import GPT, GPTConfig

from conftest import rand, train_tiny_gpt
from twin_checks import value_and_grads

SPLIT = dict(count=3, min_size=1)  # three threads, and every array split however small


@pytest.fixture(autouse=True)
def _fast():
    """Every test here runs the speed wing (conftest switches it off after each test)."""
    minillm.fast.enable()


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
def test_fast_threaded_op_equals_one_thread_bit_for_bit(name, tile, monkeypatch):
    monkeypatch.setattr(fused_attention, "ATTENTION_TILE", tile)
    fn, shapes = OPS[name]
    inputs = [rand(*shape, seed=i).detach() for i, shape in enumerate(shapes)]
    inputs = [Tensor(t.data.astype(numpy.float32), requires_grad=True) for t in inputs]
    with cpu_threads.threads(1):
        one = value_and_grads(fn, *inputs)
    with cpu_threads.threads(**SPLIT):
        split = value_and_grads(fn, *inputs)
    for a, b in zip(one, split):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["gelu", "layer_norm", "linear", "attention", "cross_entropy"])
def test_fast_threaded_op_gradcheck(name, float64):
    fn, shapes = OPS[name]
    with cpu_threads.threads(**SPLIT):
        assert gradcheck(fn, [rand(*shape, seed=i) for i, shape in enumerate(shapes)])


def test_fast_threaded_whole_model_gradcheck(float64):
    minillm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, n_embd=4))
    x = numpy.random.default_rng(0).integers(0, 5, (3, 4))
    with cpu_threads.threads(**SPLIT):
        assert gradcheck(lambda *_: F.cross_entropy(model(x).reshape(-1, 5), x[:, ::-1].reshape(-1)),
                         model.parameters(), atol=1e-6, rtol=1e-5)


def test_fast_threaded_training_steps_equal_one_thread_bit_for_bit():
    with cpu_threads.threads(1):
        params_one, losses_one, _ = train_tiny_gpt(steps=3)
    with cpu_threads.threads(**SPLIT):
        params_split, losses_split, _ = train_tiny_gpt(steps=3)
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


# Trains a tiny GPT with the speed wing on, its threads splitting every array: "straight" runs
# four steps and saves the state after two; "resumed", a fresh process, loads that state and
# runs the last two. Prints a digest of the parameters and the optimizer's moments.
RESUME = """
import hashlib, pickle, sys
import minillm.fast
minillm.fast.enable()
import numpy
import minillm
from minillm.engine import optim
from minillm.fast import cpu_threads
from minillm.model import functional as F
from minillm.model.gpt import GPT, GPTConfig
mode, path = sys.argv[1], sys.argv[2]
cpu_threads.set_threads(2, min_size=1)
minillm.manual_seed(0)
model = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16))
opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
windows = numpy.random.default_rng(0).integers(0, 37, (4, 6, 17))
def step(window):
    loss = F.cross_entropy(model(window[:, :-1]).reshape(-1, 37), window[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    optim.clip_grad_norm(model.parameters(), 0.5)
    opt.step()
if mode == "resumed":
    state, opt_state = pickle.load(open(path, "rb"))
    model.load_state_dict(state)
    opt.load_state_dict(opt_state)
else:
    for window in windows[:2]:
        step(window)
    pickle.dump(({k: v.copy() for k, v in model.state_dict().items()}, pickle.loads(pickle.dumps(opt.state_dict()))),
                open(path, "wb"))
for window in windows[2:]:
    step(window)
arrays = [*model.state_dict().values(), *(s[k] for s in opt.state for k in ("m", "v"))]
print(type(opt).__name__, hashlib.sha256(b"".join(numpy.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest())
"""


def test_a_run_resumed_in_a_fresh_process_equals_one_that_never_stopped(tmp_path):
    def run(mode):
        return subprocess.run([sys.executable, "-c", RESUME, mode, str(tmp_path / "state.pkl")],
                              capture_output=True, text=True, check=True).stdout.split()

    straight, resumed = run("straight"), run("resumed")
    assert straight[0] == "FlatAdamW" and straight == resumed
