"""Sampling: the KV-cache decoder against full forward passes, greedy, seeds, top-k/top-p,
temperature, batched left-padded prompts, stop ids, log-probs, and clear errors."""
import numpy
import pytest

import minillm
from minillm.engine import backend
from minillm.model.sampling import (
    CachedDecoder,
    RecomputeDecoder,
    generate,
    sampling_probs,
    sequence_logprobs,
    stream,
)
from minillm.model.gpt import GPT, GPTConfig

TINY = dict(vocab_size=11, block_size=24, n_layer=2, n_head=2, n_embd=16)
PROMPTS = [[1, 2, 3, 4, 5], [7], [9, 3, 2]]


def make(sharpness=1.0, **overrides):
    """A tiny random GPT; sharpness scales the (tied) embedding so the logits are less flat."""
    minillm.manual_seed(0)
    model = GPT(GPTConfig(**{**TINY, **overrides}))
    model.wte.weight.data *= sharpness
    return model


def last_logits(model, row):
    with minillm.no_grad():
        return model([row]).numpy()[0, -1]


def test_cached_decoder_gives_full_forward_logits_at_every_step():
    model = make(sharpness=20)
    rows = [list(r) for r in PROMPTS]
    decoders = [CachedDecoder(model, PROMPTS, 8), RecomputeDecoder(model, PROMPTS, 8)]
    outs = [d.start() for d in decoders]
    for _ in range(8):
        full = numpy.stack([last_logits(model, r) for r in rows])  # the growing sequence, no cache
        for out in outs:
            numpy.testing.assert_allclose(backend.to_numpy(out), full, rtol=1e-4, atol=1e-5)
        tokens = full.argmax(axis=-1)
        for r, t in zip(rows, tokens):
            r.append(int(t))
        outs = [d.step(backend.asarray(tokens)) for d in decoders]


def test_greedy_is_deterministic_and_picks_the_argmax():
    model = make(sharpness=20)
    out = generate(model, PROMPTS[0], 10, temperature=0)
    assert out == generate(model, PROMPTS[0], 10, temperature=0)
    assert out[:5] == PROMPTS[0] and len(out) == 15
    for t in range(5, 15):
        assert out[t] == int(last_logits(model, out[:t]).argmax())
    assert generate(model, PROMPTS[0], 10, temperature=0, use_cache=False) == out


def test_seed_reproduces_and_stream_matches_generate():
    model = make()
    a = generate(model, PROMPTS[0], 12, seed=3)
    assert a == generate(model, PROMPTS[0], 12, seed=3)
    assert a != generate(model, PROMPTS[0], 12, seed=4)
    assert list(stream(model, PROMPTS[0], 12, seed=3)) == a[5:]
    assert generate(model, PROMPTS[0], 12, seed=3, use_cache=False) == a


def test_top_k_1_and_tiny_top_p_equal_greedy():
    model = make(sharpness=5)
    greedy = generate(model, PROMPTS, 8, temperature=0)
    assert generate(model, PROMPTS, 8, temperature=1.5, top_k=1, seed=0) == greedy
    assert generate(model, PROMPTS, 8, temperature=1.5, top_p=1e-6, seed=0) == greedy


def test_top_k_and_top_p_by_hand():
    logits = backend.asarray(numpy.log([[0.5, 0.05, 0.3, 0.15]]))
    p = backend.to_numpy
    numpy.testing.assert_allclose(p(sampling_probs(logits)), [[0.5, 0.05, 0.3, 0.15]], atol=1e-7)
    numpy.testing.assert_allclose(p(sampling_probs(logits, top_k=2)), [[0.625, 0, 0.375, 0]], atol=1e-7)
    # nucleus: 0.5 reaches 0.5 alone; 0.75 needs {0.5, 0.3}; 0.85 needs {0.5, 0.3, 0.15}
    numpy.testing.assert_allclose(p(sampling_probs(logits, top_p=0.5)), [[1, 0, 0, 0]], atol=1e-7)
    numpy.testing.assert_allclose(p(sampling_probs(logits, top_p=0.75)), [[0.625, 0, 0.375, 0]], atol=1e-7)
    assert (p(sampling_probs(logits, top_p=0.85))[0] > 0).tolist() == [True, False, True, True]
    # temperature: p ∝ exp(z / τ) = p^(1/τ)
    sharp = numpy.array([0.5, 0.05, 0.3, 0.15]) ** 2
    numpy.testing.assert_allclose(p(sampling_probs(logits, 0.5))[0], sharp / sharp.sum(), rtol=1e-6)


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_temperature_samples_follow_softmax_z_over_tau(tau):
    model = make(sharpness=30)
    z = last_logits(model, [3]).astype(numpy.float64)
    expected = numpy.exp((z - z.max()) / tau)
    expected /= expected.sum()
    n = 4000
    out = generate(model, [[3]] * n, 1, temperature=tau, seed=0)
    freq = numpy.bincount([row[1] for row in out], minlength=11) / n
    assert numpy.abs(freq - expected).max() < 4 * numpy.sqrt(0.25 / n)  # 4 standard errors


def test_batched_left_padded_prompts_match_each_prompt_alone():
    model = make(sharpness=20)
    batch, logprobs = generate(model, PROMPTS, 9, temperature=0, return_logprobs=True)
    for prompt, row, lps in zip(PROMPTS, batch, logprobs):
        alone, alone_lps = generate(model, prompt, 9, temperature=0, return_logprobs=True)
        assert row == alone
        numpy.testing.assert_allclose(lps, alone_lps, rtol=1e-4, atol=1e-5)


def test_stop_ids_end_each_row_after_its_stop_token():
    model = make(sharpness=20)
    free = generate(model, PROMPTS, 10, temperature=0)
    stop = free[0][7]  # the third new token of row 0
    out = generate(model, PROMPTS, 10, temperature=0, stop_ids=[stop])
    for full, row, prompt in zip(free, out, PROMPTS):
        new = full[len(prompt):]
        expect = new[:new.index(stop) + 1] if stop in new else new
        assert row == prompt + expect
    assert out[0][-1] == stop and len(out[0]) <= 8
    assert list(stream(model, PROMPTS[0], 10, temperature=0, stop_ids=[stop]))[-1] == stop


def test_returned_logprobs_equal_one_full_forward_pass():
    model = make(sharpness=5)
    ids, logprobs = generate(model, PROMPTS, 8, seed=1, top_k=5, temperature=1.3,
                             return_logprobs=True)
    responses = [row[len(p):] for row, p in zip(ids, PROMPTS)]
    scored = sequence_logprobs(model, PROMPTS, responses)
    for lp, ref in zip(logprobs, scored):
        assert len(lp) == len(ref) == 8
        numpy.testing.assert_allclose(lp, ref, rtol=1e-4, atol=1e-5)
    # log π is the temperature-1 log-softmax of the raw logits
    z = last_logits(model, PROMPTS[1]).astype(numpy.float64)
    ref = z[ids[1][1]] - numpy.log(numpy.exp(z).sum())
    assert abs(logprobs[1][0] - ref) < 1e-5
    assert sequence_logprobs(model, [1, 2], []) == []


def test_zero_new_tokens_returns_the_prompt():
    model = make()
    assert generate(model, [1, 2], 0) == [1, 2]
    assert generate(model, [[1, 2], [3]], 0, return_logprobs=True) == ([[1, 2], [3]], [[], []])


def test_bad_inputs_say_what_is_wrong():
    model = make()
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, [], 3)
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, [[1], []], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [1], -1)
    for top_p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"top_p must lie in \(0, 1\]"):
            generate(model, [1], 3, top_p=top_p)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, [1], 3, temperature=-0.5)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, [1], 3, top_k=0)
    with pytest.raises(ValueError, match="block_size is 24: ask for at most 19"):
        generate(model, [[1, 2, 3, 4, 5], [1]], 20)
    with pytest.raises(ValueError, match="block_size"):
        sequence_logprobs(model, [1] * 20, [2] * 5)
    with pytest.raises(ValueError, match="one prompt"):
        list(stream(model, [[1], [2]], 3))
    with pytest.raises(ValueError, match="integers"):
        generate(model, [1.5, 2.0], 3)
