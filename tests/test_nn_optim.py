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


def test_schedules_at_their_corners():
    s = optim.WarmupCosineSchedule(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert s(0) == pytest.approx(0.1)         # first warmup step: 1/10 of max
    assert s(9) == pytest.approx(1.0)         # end of warmup
    assert s(10) == pytest.approx(1.0)        # cosine starts at the top
    assert s(60) == pytest.approx(0.55)       # halfway: the midpoint of max and min
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        optim.WarmupCosineSchedule(1.0, 10, 5)
