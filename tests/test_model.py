"""The GPT: shapes, the lecture's distribution, causality, the whole-model gradient check,
the one-node attention against its composed twin, the KV cache, and clear errors."""
import numpy
import pytest

import minillm
import minillm.engine.optim
from minillm import Tensor
from minillm.engine.gradcheck import gradcheck
from minillm.model import functional as F
from minillm.model.kv_cache import KVCache
from minillm.model.gpt import GPT, GPTConfig

from conftest import rand

TINY = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)


def make(**overrides):
    minillm.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides}))


def ids(B=2, T=8, V=13, seed=0):
    return numpy.random.default_rng(seed).integers(0, V, (B, T))


def test_logits_shape_and_next_token_distribution():
    model = make()
    assert model(ids()).shape == (2, 8, 13)
    assert model([1, 2, 3]).shape == (1, 3, 13)
    p = model.next_token_probs([1, 2, 3])
    assert p.shape == (13,) and abs(float(p.sum()) - 1) < 1e-5 and (p >= 0).all()
    assert model.next_token_probs(ids()).shape == (2, 13)


def test_causality_future_tokens_do_not_change_the_past():
    model = make()
    a, b = ids(), ids()
    b[:, 5:] = (b[:, 5:] + 1) % 13
    la, lb = model(a).numpy(), model(b).numpy()
    numpy.testing.assert_allclose(la[:, :5], lb[:, :5], rtol=1e-6, atol=1e-6)
    assert not numpy.allclose(la[:, 5:], lb[:, 5:])


@pytest.mark.parametrize("one_node", [True, False], ids=["one-node-attention", "composed-attention"])
def test_whole_model_gradcheck_every_parameter(one_node, float64, monkeypatch):
    model = make(n_layer=1, n_embd=4, vocab_size=5, block_size=4, tie_weights=True)
    if not one_node:
        monkeypatch.setattr(F, "causal_self_attention", F.causal_self_attention_composed)
    x = ids(B=2, T=4, V=5)
    params = model.parameters()

    def loss_of(*_params):
        return F.cross_entropy(model(x).reshape(-1, 5), x[:, ::-1].reshape(-1))

    assert gradcheck(loss_of, params, atol=1e-6, rtol=1e-5)


def test_untied_head_gradcheck(float64):
    model = make(n_layer=1, n_embd=4, vocab_size=5, block_size=3, tie_weights=False, bias=False)
    x = ids(B=1, T=3, V=5)
    # wte, wpe; per block ln_1, c_attn, c_proj, ln_2, c_fc, c_proj (no biases); ln_f; lm_head
    assert model.lm_head is not None and len(model.parameters()) == 2 + 6 + 1 + 1
    assert gradcheck(lambda *_: model(x).sum(), model.parameters())


def test_one_node_attention_equals_composed_value_and_gradient(float64):
    qkv = rand(2, 7, 12, seed=3)
    out1 = F.causal_self_attention(qkv, 2)
    w = Tensor(numpy.random.default_rng(0).standard_normal(out1.shape))
    (out1 * w).sum().backward()
    g1, qkv.grad = qkv.grad.copy(), None
    out2 = F.causal_self_attention_composed(qkv, 2)
    (out2 * w).sum().backward()
    numpy.testing.assert_allclose(out1.numpy(), out2.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(g1, qkv.grad, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda t: F.causal_self_attention(t, 2), [rand(1, 4, 12, seed=4)])


@pytest.mark.parametrize("dropout, training, expected", [
    (0.0, True, "one-node"), (0.2, False, "one-node"), (0.2, True, "composed")])
def test_attention_runs_the_one_node_form_or_with_dropout_its_composed_twin(monkeypatch, dropout, training, expected):
    calls = []
    for name in ("causal_self_attention", "causal_self_attention_composed"):
        original = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    model = make(n_layer=1, dropout=dropout)
    model.train(training)
    model(ids())
    assert calls == ["causal_self_attention" if expected == "one-node" else "causal_self_attention_composed"]


def test_composed_attention_applies_its_dropout_hook_to_the_weights(float64):
    qkv = rand(1, 4, 6, seed=5)
    plain = F.causal_self_attention_composed(qkv, 1).numpy()
    numpy.testing.assert_allclose(F.causal_self_attention_composed(qkv, 1, dropout=lambda w: w).numpy(), plain)
    zeroed = F.causal_self_attention_composed(qkv, 1, dropout=lambda w: w * 0.0).numpy()
    numpy.testing.assert_array_equal(zeroed, numpy.zeros_like(plain))


def test_kv_cache_gives_the_same_logits_at_every_step():
    model = make()
    x = ids()
    full = model(x).numpy()
    cache = KVCache.for_model(model, batch=2, max_len=8)
    with minillm.no_grad():
        steps = [model(x[:, :3], cache=cache).numpy()]  # a prompt, then one token at a time
        steps += [model(x[:, t:t + 1], cache=cache).numpy() for t in range(3, 8)]
    numpy.testing.assert_allclose(numpy.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        model(x[:, :1], cache=cache)


def test_gpt2_initialisation_scales_residual_projections():
    model = make(n_layer=8, n_embd=64, n_head=4, vocab_size=300, block_size=64)
    std = float(model.h[0].attn.c_proj.weight.numpy().std())
    assert abs(std - 0.02 / numpy.sqrt(16)) < 0.001
    assert abs(float(model.h[0].mlp.c_fc.weight.numpy().std()) - 0.02) < 0.002
    assert float(numpy.abs(model.h[0].mlp.c_fc.bias.numpy()).max()) == 0.0


def test_parameter_and_flop_counts():
    c = GPTConfig(**TINY)
    model = make()
    C, L, V, T = c.n_embd, c.n_layer, c.vocab_size, c.block_size
    per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    expected = V * C + T * C + L * per_block + 2 * C
    assert model.num_parameters() == expected
    assert model.num_parameters(non_embedding=True) == expected - T * C
    assert model.flops_per_token() == 6 * (expected - T * C) + 12 * L * C * T


def test_tiny_model_overfits_one_batch():
    model = make(n_embd=16)
    x = ids(B=4, T=8, seed=1)
    opt = minillm.engine.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 13), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_resize_token_embeddings_keeps_old_rows():
    model = make()
    before = model.wte.weight.numpy().copy()
    model.resize_token_embeddings(16)
    after = model.wte.weight.numpy()
    numpy.testing.assert_array_equal(after[:13], before)
    assert after.shape == (16, 8) and model.config.vocab_size == 16
    assert model([15, 14]).shape == (1, 2, 16)


def test_bad_inputs_name_the_limit():
    model = make()
    with pytest.raises(ValueError, match="block_size .* is 8"):
        model(numpy.zeros((1, 9), dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 13\)"):
        model([[1, 13]])
    with pytest.raises(ValueError, match="integers"):
        model(numpy.zeros((1, 2)))
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)


def test_left_padded_batch_in_one_pass_matches_each_prompt_alone():
    """Padding is masked as a key; a padding query attends only to itself, so no NaN leaks."""
    model = make(block_size=16)
    key_mask = numpy.ones((2, 8), bool)
    key_mask[0, :2] = False  # row 0: two padding positions, then the prompt [3, 4, 5]
    cache = KVCache.for_model(model, 2, 8, key_mask=key_mask)
    with minillm.no_grad():
        out = model(numpy.array([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]]), cache=cache,
                    positions=numpy.array([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])).numpy()
    assert not numpy.isnan(out).any()
    numpy.testing.assert_allclose(out[0, 2:], model([3, 4, 5]).numpy()[0], rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(out[1], model([1, 2, 3, 4, 5]).numpy()[0], rtol=1e-5, atol=1e-6)


def test_a_float32_training_step_makes_no_float64_array(monkeypatch):
    from minillm.engine import optim, tensor
    made = []
    original = tensor.apply

    def recording(fn_cls, *inputs, **kwargs):
        out = original(fn_cls, *inputs, **kwargs)
        made.append((fn_cls.__name__, out.data.dtype))
        return out
    monkeypatch.setattr(tensor, "apply", recording)
    monkeypatch.setattr(F, "apply", recording)
    model = make(n_layer=2)
    opt = optim.AdamW(model.parameters())
    x = ids(T=9)
    F.cross_entropy(model(x[:, :-1]).reshape(-1, 13), x[:, 1:].reshape(-1)).backward()
    optim.clip_grad_norm(model.parameters(), 1.0)
    opt.step()
    assert len(made) > 20 and not [name for name, dtype in made if dtype != numpy.float32]
    arrays = [p.data for p in model.parameters()] + [p.grad for p in model.parameters()]
    arrays += [s[k] for s in opt.state for k in ("m", "v")]
    assert {a.dtype for a in arrays} == {numpy.dtype(numpy.float32)}
