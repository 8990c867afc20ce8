"""Layers and optimizers: parameter naming, state dicts, AdamW against a hand computation,
small networks that learn, and schedules at their corners."""
import math

import numpy
import pytest

import minillm
from minillm import Tensor
from minillm.engine import backend, optim
from minillm.model import nn
from minillm.model import functional as F


class MLP(nn.Module):
    def __init__(self, n_in, hidden, n_out):
        self.fc1 = nn.Linear(n_in, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.fc2(self.drop(F.gelu(self.norm(self.fc1(x)))))


def test_named_parameters_are_stable_and_counted():
    layers = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 2, bias=False)])
    names = [n for n, _ in layers.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight"]
    assert layers.num_parameters() == 3 * 4 + 4 + 4 * 2


def test_shared_parameter_counted_once():
    a, b = nn.Embedding(5, 3), nn.Linear(3, 5)
    b.weight = a.weight
    both = nn.ModuleList([a, b])
    assert both.num_parameters() == 15 + 5


def test_state_dict_round_trip_and_refusals():
    m1, m2 = MLP(3, 8, 2), MLP(3, 8, 2)
    m2.load_state_dict({k: v.copy() for k, v in m1.state_dict().items()})
    x = Tensor(numpy.ones((2, 3), dtype=numpy.float32))
    numpy.testing.assert_array_equal(m1(x).numpy(), m2(x).numpy())
    state = m1.state_dict()
    with pytest.raises(KeyError, match="missing"):
        m2.load_state_dict({k: v for k, v in state.items() if k != "fc1.bias"})
    bad = dict(state)
    bad["fc2.weight"] = numpy.zeros((9, 9))
    with pytest.raises(ValueError, match=r"fc2.weight.*\(9, 9\).*\(8, 2\)"):
        m2.load_state_dict(bad)


def test_train_eval_switches_every_module():
    m = MLP(2, 4, 1)
    m.eval()
    assert not m.drop.training and not m.training
    m.train()
    assert m.drop.training


def test_adamw_first_steps_match_hand_computation():
    p = nn.Parameter(numpy.array([1.0, -2.0], dtype=numpy.float64))
    opt = optim.AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    ref, m, v = numpy.array([1.0, -2.0]), 0.0, 0.0
    for t, g in enumerate([numpy.array([0.5, -1.0]), numpy.array([0.2, 0.3])], start=1):
        p.grad = backend.asarray(g.copy())
        opt.step()
        ref = ref - 0.1 * 0.5 * ref
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        ref = ref - 0.1 * (m / (1 - 0.9 ** t)) / (numpy.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
        numpy.testing.assert_allclose(p.data, ref, rtol=1e-12)


def test_adamw_param_groups_exclude_decay():
    decayed = nn.Parameter(numpy.ones(1))
    kept = nn.Parameter(numpy.ones(1))
    opt = optim.AdamW([{"params": [decayed]}, {"params": [kept], "weight_decay": 0.0}],
                      lr=0.1, weight_decay=1.0)
    decayed.grad, kept.grad = backend.xp.zeros(1), backend.xp.zeros(1)
    opt.step()
    assert float(decayed.data[0]) == pytest.approx(0.9) and float(kept.data[0]) == 1.0


def test_sgd_momentum():
    p = nn.Parameter(numpy.array([0.0]))
    opt = optim.SGD([p], lr=1.0, momentum=0.5)
    for _ in range(2):
        p.grad = backend.asarray([1.0])
        opt.step()
    assert float(p.data[0]) == pytest.approx(-(1.0 + 1.5))


def test_mlp_learns_xor_with_adamw():
    minillm.manual_seed(0)
    x = Tensor(numpy.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=numpy.float32))
    y = numpy.array([0, 1, 1, 0])
    model = MLP(2, 16, 2)
    opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(150):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model(x).numpy().argmax(-1) == y).all()


def test_linear_regression_with_sgd():
    rng = numpy.random.default_rng(0)
    xs = rng.standard_normal((64, 3)).astype(numpy.float32)
    target = xs @ numpy.array([[1.0], [-2.0], [0.5]], dtype=numpy.float32) + 0.3
    layer = nn.Linear(3, 1)
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        err = layer(Tensor(xs)) - Tensor(target)
        loss = (err * err).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    numpy.testing.assert_allclose(layer.weight.numpy()[:, 0], [1.0, -2.0, 0.5], atol=1e-3)


def test_optimizer_state_restores_exactly():
    def run(steps, restore_at=None):
        minillm.manual_seed(1)
        model = MLP(3, 5, 2)
        opt = optim.AdamW(model.parameters(), lr=0.01)
        x = Tensor(numpy.random.default_rng(0).standard_normal((4, 3)).astype(numpy.float32))
        for step in range(steps):
            if step == restore_at:
                saved_model = {k: v.copy() for k, v in model.state_dict().items()}
                saved_opt = opt.state_dict()
                saved_opt = {**saved_opt, "state": [{k: v.copy() for k, v in s.items()} for s in saved_opt["state"]]}
                model, opt = MLP(3, 5, 2), None
                model.load_state_dict(saved_model)
                opt = optim.AdamW(model.parameters(), lr=0.01)
                opt.load_state_dict(saved_opt)
            loss = (model(x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.state_dict()

    straight, resumed = run(6), run(6, restore_at=3)
    for k in straight:
        numpy.testing.assert_array_equal(straight[k], resumed[k])


def test_clip_grad_norm_returns_norm_before_clipping():
    a, b = nn.Parameter(numpy.zeros(1)), nn.Parameter(numpy.zeros(1))
    a.grad, b.grad = backend.asarray([3.0]), backend.asarray([4.0])
    assert optim.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    assert math.hypot(float(a.grad[0]), float(b.grad[0])) == pytest.approx(1.0, rel=1e-5)
    assert optim.clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-5)
    b.grad = backend.asarray([0.0])
    assert optim.grad_norm([a, b]) == pytest.approx(0.6, rel=1e-5) and float(a.grad[0]) == pytest.approx(0.6)


def _two_models_and_a_batch():
    minillm.manual_seed(3)
    a = MLP(4, 8, 3)
    b = MLP(4, 8, 3)
    b.load_state_dict(a.state_dict())
    x = Tensor(numpy.random.default_rng(0).standard_normal((5, 4)))
    return a, b, x


def _adamw_with_groups(model):
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.ndim == 2)]
    return optim.AdamW([{"params": decay}, {"params": rest, "weight_decay": 0.0}], lr=1e-2, weight_decay=0.1)


def test_flat_adamw_equals_its_per_parameter_twin():
    flat_model, loop_model, x = _two_models_and_a_batch()
    flat, loop = _adamw_with_groups(flat_model), _adamw_with_groups(loop_model)
    for _ in range(4):
        for model, opt, step in ((flat_model, flat, flat.step), (loop_model, loop, loop.step_each)):
            opt.zero_grad()
            (model(x) ** 2).sum().backward()
            step()
    assert all(p.grad is g for f in flat._flat for p, g in zip(f.params, f.grad_views)), "the flat path ran"
    for (name, p), q in zip(flat_model.named_parameters(), loop_model.parameters()):
        _same(p.data, q.data, name)
    for s1, s2 in zip(flat.state, loop.state):
        _same(s1["m"], s2["m"], "m")
        _same(s1["v"], s2["v"], "v")


def _same(a, b, name):
    """Bit for bit on NumPy. On a GPU the two models' gradients can differ in the last bit,
    and Adam's m/√v turns a last-bit difference of a near-zero gradient into a visible one
    (its first step is ±lr whatever the gradient's size): there, to a small share of the
    4 · lr = 0.04 the parameters move."""
    if backend.device == "cpu":
        numpy.testing.assert_array_equal(a, b, err_msg=name)
    else:
        numpy.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=name)


def test_flat_adamw_falls_back_when_a_parameter_has_no_gradient_or_is_rebound():
    flat_model, loop_model, x = _two_models_and_a_batch()
    flat, loop = optim.AdamW(flat_model.parameters(), lr=1e-2), optim.AdamW(loop_model.parameters(), lr=1e-2)
    for model, opt, step in ((flat_model, flat, flat.step), (loop_model, loop, loop.step_each)):
        opt.zero_grad()
        (model.fc1(x) ** 2).sum().backward()  # fc2 and the norm get no gradient: they must not move
        step()
        model.fc1.weight.data = model.fc1.weight.data.copy()  # a rebound array joins a new flat buffer
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        step()
    for (name, p), q in zip(flat_model.named_parameters(), loop_model.parameters()):
        _same(p.data, q.data, name)
    assert flat_model.fc1.weight.data.base is not None, "the rebound parameter is a flat view again"


def test_clip_grad_norm_on_flat_buffers_equals_the_per_gradient_sum():
    model, _, x = _two_models_and_a_batch()
    optim.AdamW(model.parameters())
    (model(x) ** 2).sum().backward()
    separate = [p.grad.copy() for p in model.parameters()]
    expected = math.sqrt(sum(float((g.astype(numpy.float64) ** 2).sum()) for g in separate))
    assert optim._flat_buffers([p.grad for p in model.parameters()]) is not None
    assert optim.clip_grad_norm(model.parameters(), 1e-3) == pytest.approx(expected, rel=1e-5)
    for p, g in zip(model.parameters(), separate):
        numpy.testing.assert_allclose(p.grad, g * (1e-3 / (expected + 1e-6)), rtol=1e-4)


def test_schedules_at_their_corners():
    assert optim.ConstantSchedule(3e-4)(12345) == 3e-4
    s = optim.WarmupCosineSchedule(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert s(0) == pytest.approx(0.1)         # first warmup step: 1/10 of max
    assert s(9) == pytest.approx(1.0)         # end of warmup
    assert s(10) == pytest.approx(1.0)        # cosine starts at the top
    assert s(60) == pytest.approx(0.55)       # halfway: the midpoint of max and min
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        optim.WarmupCosineSchedule(1.0, 10, 5)



class SharedSquare(nn.Module):
    """Two layers that share one weight (as the tied embedding and LM head do), then a third."""

    def __init__(self):
        self.first, self.second, self.last = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.last(F.gelu(self.second(F.gelu(self.first(x)))))


def test_gradients_written_into_the_optimizers_buffer_equal_copied_ones(monkeypatch):
    """fused.Linear writes a laid-out parameter's gradient straight into AdamW's flat buffer
    (tensor._gradient_buffers): the same numbers as the copy there, also when one weight
    serves two layers, and when a second backward adds to the first (no buffer handed out)."""
    minillm.manual_seed(5)
    with_buffers, plain = SharedSquare(), SharedSquare()
    plain.load_state_dict(with_buffers.state_dict())
    opt = optim.AdamW(with_buffers.parameters(), lr=1e-2)
    x = Tensor(numpy.random.default_rng(1).standard_normal((5, 6)).astype(numpy.float32))
    written, backward = [], F.fused.Linear.backward

    def spy(self, grad):
        grads = backward(self, grad)
        if self.grad_out is not None:
            written.extend(g is b for g, b in zip(grads[1:], self.grad_out[1:]) if b is not None)
        return grads

    for backward_pass in range(2):
        written.clear()
        with monkeypatch.context() as patch:
            patch.setattr(F.fused.Linear, "backward", spy)
            (with_buffers(x) ** 2).sum().backward()
        (plain(x) ** 2).sum().backward()
        assert written and all(written) if backward_pass == 0 else not written
        for (name, p), q in zip(with_buffers.named_parameters(), plain.parameters()):
            numpy.testing.assert_allclose(minillm.to_numpy(p.grad), minillm.to_numpy(q.grad),
                                          rtol=1e-6, atol=1e-7, err_msg=name)
    assert opt._flat[0].has_all_grads()
