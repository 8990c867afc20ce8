"""The n-gram language model: hand-computed counts and probabilities, distributions that
sum to 1, the loss as mean cross entropy, bigram beating unigram, and clear errors."""
import math

import numpy
import pytest

from minillm.model.ngram import NGramLM

# bigrams: (0,1) x2, (1,2), (2,0), (1,1); unigrams: 0 x2, 1 x3, 2 x1
IDS = [0, 1, 2, 0, 1, 1]


def test_counts_by_hand():
    lm = NGramLM(3).fit(IDS, vocab_size=3)
    assert [lm.count([v]) for v in range(3)] == [2, 3, 1]
    assert lm.count([0, 1]) == 2 and lm.count([1, 1]) == 1 and lm.count([1, 0]) == 0
    assert lm.count([0, 1, 2]) == 1 and lm.count([0, 1, 1]) == 1 and lm.count([2, 2, 2]) == 0


def test_add_k_by_hand():
    lm = NGramLM(2, "add-k", k=1.0).fit(IDS, vocab_size=3)
    # P(v | h) = (c(h, v) + k) / (c(h) + k V); c(0) = 2, c(1) = 2 (followed by 2 and by 1)
    numpy.testing.assert_allclose(lm.next_token_probs([2, 0]), [1 / 5, 3 / 5, 1 / 5])
    numpy.testing.assert_allclose(lm.next_token_probs([1]), [1 / 5, 2 / 5, 2 / 5])
    unigram = NGramLM(1, "add-k", k=0.5).fit(IDS, vocab_size=3)
    numpy.testing.assert_allclose(unigram.next_token_probs([0, 1]), numpy.array([2.5, 3.5, 1.5]) / 7.5)
    # loss on [0, 1, 1]: -(log P(1|0) + log P(1|1)) / 2
    assert lm.loss([0, 1, 1]) == pytest.approx(-(math.log(3 / 5) + math.log(2 / 5)) / 2)
    assert lm.perplexity([0, 1, 1]) == pytest.approx(math.exp(lm.loss([0, 1, 1])))


def test_interpolated_by_hand():
    lm = NGramLM(2, "interpolated", lam=0.5).fit(IDS, vocab_size=3)
    # P_1(v) = 0.5 c(v)/6 + 0.5/3 ; P_2(v|0) = 0.5 c(0,v)/c(0) + 0.5 P_1(v)
    p1 = 0.5 * numpy.array([2, 3, 1]) / 6 + 0.5 / 3
    numpy.testing.assert_allclose(lm.next_token_probs([]), p1)
    numpy.testing.assert_allclose(lm.next_token_probs([0]), 0.5 * numpy.array([0, 1, 0]) + 0.5 * p1)
    numpy.testing.assert_allclose(lm.next_token_probs([0]), numpy.array([4, 17, 3]) / 24)
    # a context never seen in training falls back to the lower order
    unseen = NGramLM(2, "interpolated", lam=0.5).fit([0, 1, 0, 1], vocab_size=3)
    numpy.testing.assert_allclose(unseen.next_token_probs([2]), unseen.next_token_probs([]))


@pytest.mark.parametrize("smoothing", ["add-k", "interpolated"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_distributions_sum_to_one_and_match_the_loss(smoothing, n):
    rng = numpy.random.default_rng(0)
    train, test = rng.integers(0, 7, 300), rng.integers(0, 9, 40)  # 7, 8 are never seen
    lm = NGramLM(n, smoothing).fit(train, vocab_size=9)
    for t in range(len(test)):
        p = lm.next_token_probs(test[:t])
        assert p.shape == (9,) and abs(p.sum() - 1) < 1e-12 and (p > 0).all()
    assert lm.next_token_probs(numpy.stack([test[:5], test[5:10]])).shape == (2, 9)
    # loss = mean over t = 2..T of -log P(x_t | x_<t), the GPT's shifted cross entropy
    expected = -numpy.mean([math.log(lm.next_token_probs(test[:t])[test[t]]) for t in range(1, len(test))])
    assert lm.loss(test) == pytest.approx(expected, rel=1e-12)
    assert float(lm.token_log_probs(test).sum()) == pytest.approx(-expected * (len(test) - 1), rel=1e-12)


def test_bigram_beats_unigram_on_structured_text():
    rng = numpy.random.default_rng(1)
    # token t is usually followed by t + 1 (mod 10): a bigram model can see it, a unigram cannot
    ids = numpy.cumsum(numpy.where(rng.random(5000) < 0.9, 1, rng.integers(0, 10, 5000))) % 10
    train, held_out = ids[:4000], ids[4000:]
    unigram = NGramLM(1).fit(train, 10).perplexity(held_out)
    bigram = NGramLM(2).fit(train, 10).perplexity(held_out)
    assert unigram > 9 and bigram < 2


def test_errors_are_clear():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        NGramLM(0)
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, smoothing="kneser-ney")
    with pytest.raises(ValueError, match="k must be > 0"):
        NGramLM(2, k=0)
    with pytest.raises(RuntimeError, match=r"fit\(ids, vocab_size\) first"):
        NGramLM(2).next_token_probs([1])
    with pytest.raises(RuntimeError, match="first"):
        NGramLM(2).loss([1, 2])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        NGramLM(2).fit([0, 1, 3], vocab_size=3)
    lm = NGramLM(2).fit(IDS, vocab_size=3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        lm.loss([0, 5])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        lm.next_token_probs([-1])
    with pytest.raises(ValueError, match="integer token ids"):
        lm.loss([0.5, 1.0])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm.loss([1])
