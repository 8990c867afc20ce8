"""Phase 1's formulas: the slide's training points and one-hot cross entropy, each against
the efficient form the trainer uses."""
import math

import numpy
import pytest

import minillm
from minillm import Tensor
from minillm.engine.gradcheck import gradcheck
from minillm.data.windows import TokenWindows, next_token_samples, split_train_val, window_samples
from minillm.phases.losses import cross_entropy, one_hot, one_hot_cross_entropy, sequence_cross_entropy

from conftest import rand


def test_next_token_samples_are_the_slide_list():
    assert next_token_samples([5, 7, 9, 11]) == [([5], 7), ([5, 7], 9), ([5, 7, 9], 11)]
    assert next_token_samples([3]) == []


def test_a_batched_window_holds_exactly_the_slide_samples():
    ids = numpy.arange(100, 140)
    windows = TokenWindows(ids, block_size=8)
    x, y = windows.batch(4, minillm.make_rng(0))
    assert x.shape == y.shape == (4, 8)
    for row_x, row_y in zip(x, y):
        start = int(row_x[0]) - 100
        window = ids[start:start + 9]  # block_size + 1 tokens
        assert window_samples(row_x, row_y) == next_token_samples(window)


def test_windows_are_seeded_and_cover_the_ends():
    windows = TokenWindows(numpy.arange(20), block_size=4)
    a = windows.batch(64, minillm.make_rng(1))[0]
    b = windows.batch(64, minillm.make_rng(1))[0]
    numpy.testing.assert_array_equal(a, b)
    assert a.min() == 0 and a[:, -1].max() == 18  # the last target is token 19


def test_sequential_batches_tile_the_sequence():
    windows = TokenWindows(numpy.arange(21), block_size=5)
    pairs = list(windows.sequential_batches(batch_size=3))
    xs = numpy.concatenate([x for x, _ in pairs])
    assert xs.shape == (4, 5) and xs[:, 0].tolist() == [0, 5, 10, 15]


def test_split_and_too_short_text():
    train, val = split_train_val(list(range(100)), 0.1)
    assert train == list(range(90)) and val == list(range(90, 100))
    with pytest.raises(ValueError, match="fewer than one block"):
        TokenWindows(numpy.arange(5), block_size=8)


def test_cross_entropy_is_minus_log_of_the_true_token_probability():
    # a hand-made distribution: logits whose softmax is (0.5, 0.25, 0.25)
    logits = Tensor(numpy.log(numpy.array([[0.5, 0.25, 0.25]])))
    assert one_hot_cross_entropy(logits, [1]).item() == pytest.approx(-math.log(0.25), rel=1e-6)
    assert cross_entropy(logits, numpy.array([0])).item() == pytest.approx(-math.log(0.5), rel=1e-6)


def test_one_hot_rows():
    numpy.testing.assert_array_equal(one_hot(numpy.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_slide_form_equals_fused_form_in_value_and_gradient(float64):
    z1, z2 = rand(6, 5, seed=1), rand(6, 5, seed=1)
    targets = numpy.array([0, 4, 4, 2, 1, 3])
    a, b = one_hot_cross_entropy(z1, targets), cross_entropy(z2, targets)
    a.backward()
    b.backward()
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    numpy.testing.assert_allclose(z1.grad, z2.grad, rtol=1e-10, atol=1e-14)


def test_both_cross_entropies_gradcheck(float64):
    targets = numpy.array([1, 0, 3])
    assert gradcheck(lambda z: one_hot_cross_entropy(z, targets), [rand(3, 4, seed=2)])
    assert gradcheck(lambda z: cross_entropy(z, targets), [rand(3, 4, seed=3)])


def test_mean_is_over_counted_targets_only(float64):
    z = rand(4, 3, seed=4)
    full = cross_entropy(z, numpy.array([0, 1, 2, 1]))
    partial = cross_entropy(z, numpy.array([0, -100, -100, 1]))
    pair = cross_entropy(Tensor(z.data[[0, 3]]), numpy.array([0, 1]))
    assert partial.item() == pytest.approx(pair.item(), rel=1e-12)
    assert full.item() != pytest.approx(partial.item())


def test_sequence_cross_entropy_flattens_batch_and_time(float64):
    z = rand(2, 3, 4, seed=5)
    t = numpy.array([[0, 1, 2], [3, -100, 0]])
    flat = cross_entropy(Tensor(z.data.reshape(6, 4)), t.reshape(6))
    assert sequence_cross_entropy(z, t).item() == pytest.approx(flat.item())
