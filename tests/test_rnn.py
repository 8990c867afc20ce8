"""The RNN language model: its recurrence equals the formula written out in NumPy, its gradient
(backprop through time) agrees with finite differences in float64, it has the n-gram's and the
GPT's interface, and a short training run lowers its loss."""
import numpy
import pytest

import minillm
from minillm.engine import backend
from minillm.engine.gradcheck import gradcheck
from minillm.engine.optim import AdamW
from minillm.engine.tensor import Tensor
from minillm.errors import UserError
from minillm.model import functional as F
from minillm.model.rnn import RNNLM


def make(V=6, H=5, seed=0):
    minillm.manual_seed(seed)
    return RNNLM(vocab_size=V, hidden_size=H)


def ids(B, T, V, seed=1):
    return numpy.random.default_rng(seed).integers(0, V, size=(B, T))


def numpy_logits(model, x):
    """The docstring's formula, one position at a time, in plain NumPy (float64)."""
    W_xh, W_hh, b_h, W_hy, b_y = (backend.to_numpy(p.data).astype(numpy.float64) for p in
                                  (model.W_xh, model.W_hh, model.b_h, model.W_hy, model.b_y))
    B, T = x.shape
    h = numpy.zeros((B, model.hidden_size))
    out = []
    for t in range(T):
        one_hot = numpy.eye(model.vocab_size)[x[:, t]]          # (B, V)
        h = numpy.tanh(one_hot @ W_xh + h @ W_hh + b_h)          # W_xh x_t is a row lookup
        out.append(h @ W_hy + b_y)
    return numpy.stack(out, axis=1)                              # (B, T, V)


def test_forward_is_the_recurrence_written_out(float64):
    model = make()
    x = ids(3, 7, 6)
    got = backend.to_numpy(model(x).data)
    assert got.shape == (3, 7, 6)
    numpy.testing.assert_allclose(got, numpy_logits(model, x), rtol=1e-12, atol=1e-12)


def test_gradcheck_every_parameter_through_time(float64):
    model = make(V=5, H=4)
    x = ids(2, 6, 5)
    targets = ids(2, 6, 5, seed=2)

    def loss_of(*_params):
        return F.cross_entropy(model(x).reshape(-1, 5), targets.reshape(-1))

    assert [name for name, _ in model.named_parameters()] == ["W_xh", "W_hh", "b_h", "W_hy", "b_y"]
    assert gradcheck(loss_of, model.parameters(), atol=1e-7, rtol=1e-5)


def test_gradcheck_through_a_carried_state(float64):
    model = make(V=4, H=3)
    h0 = Tensor(numpy.random.default_rng(3).standard_normal((2, 3)) * 0.5, requires_grad=True)
    assert gradcheck(lambda h: model(ids(2, 4, 4), h0=h), [h0])


def test_state_carries_across_chunks(float64):
    model = make()
    x = ids(2, 10, 6)
    whole = backend.to_numpy(model(x).data)
    _, h = model.hidden_states(x[:, :4])
    rest = backend.to_numpy(model(x[:, 4:], h0=h).data)
    numpy.testing.assert_allclose(rest, whole[:, 4:], rtol=1e-12, atol=1e-12)


def test_next_token_probs_is_the_softmax_of_the_last_logits(float64):
    model = make()
    x = ids(1, 9, 6)[0]
    p = backend.to_numpy(model.next_token_probs(x))
    z = numpy_logits(model, x[None, :])[0, -1]
    assert p.shape == (6,) and abs(p.sum() - 1) < 1e-12
    numpy.testing.assert_allclose(p, numpy.exp(z) / numpy.exp(z).sum(), rtol=1e-10)
    batch = backend.to_numpy(model.next_token_probs(numpy.stack([x, x])))
    assert batch.shape == (2, 6)
    numpy.testing.assert_allclose(batch[1], p, rtol=1e-12)
    empty = backend.to_numpy(model.next_token_probs(numpy.zeros(0, dtype=numpy.int64)))
    b_y = backend.to_numpy(model.b_y.data)
    numpy.testing.assert_allclose(empty, numpy.exp(b_y) / numpy.exp(b_y).sum())


def test_reads_contexts_longer_than_any_window():
    """No block_size: a 500-token prefix is read whole, and its first token still matters."""
    model = make(V=4, H=8)
    x = ids(1, 500, 4)[0]
    flipped = x.copy()
    flipped[-3] = (x[-3] + 1) % 4
    p, q = (backend.to_numpy(model.next_token_probs(s)) for s in (x, flipped))
    assert abs(p.sum() - 1) < 1e-5 and numpy.abs(p - q).max() > 0


def test_training_lowers_the_loss():
    model = make(V=3, H=16)
    x = numpy.tile([0, 1, 2], (4, 8))                     # a periodic text: every next token is certain
    opt = AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, 3), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.5 and losses[-1] < 0.1 * losses[0]   # log 3 ≈ 1.1 at chance


@pytest.mark.parametrize("bad, message, error", [
    (numpy.array([[0, 9]]), r"token ids must lie in \[0, 6\)", UserError),  # a user's ids: bad input
    (numpy.array([0.5, 1.0]), "ids must be integers", ValueError),          # not ids at all: a bug in the caller
])
def test_bad_ids_are_named(bad, message, error):
    with pytest.raises(error, match=message):
        make().next_token_probs(bad)


@pytest.mark.parametrize("V, H", [(0, 4), (4, 0), (4.0, 2), (True, 3)])
def test_bad_sizes_are_named(V, H):
    with pytest.raises(UserError, match="must be a positive integer"):
        RNNLM(vocab_size=V, hidden_size=H)
