"""The memory formulas against the arrays minillm really allocates, and against hand arithmetic."""
import numpy as np
import pytest

import minillm
from minillm.engine.optim import AdamW
from minillm.errors import UserError
from minillm.model.gpt import GPT, GPTConfig
from minillm.model.kv_cache import KVCache
from minillm.model.memory import kv_cache_bytes, memory_budget
from minillm.phases.losses import sequence_cross_entropy


@pytest.fixture
def model():
    minillm.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=16, block_size=12))


def _bytes(arrays) -> int:
    return sum(int(a.nbytes) for a in arrays)


def test_weights_gradients_and_moments_match_a_real_adamw_step(model):
    params = model.parameters()
    opt = AdamW(params, lr=1e-3)
    x = np.arange(24).reshape(2, 12) % 50
    sequence_cross_entropy(model(x), (x + 1) % 50).backward()
    opt.step()
    cfg = model.config
    budget = memory_budget(model.num_parameters(), cfg.n_layer, cfg.n_embd, cfg.block_size, mode="finetuning",
                           bytes_per_value=params[0].data.itemsize)
    assert budget.weights == _bytes(p.data for p in params)
    assert budget.gradients == _bytes(p.grad for p in params)
    assert budget.adamw_moments == _bytes(s[k] for s in opt.state for k in ("m", "v"))
    assert budget.master_weights == 0 and budget.kv_cache == 0      # float32 throughout: no master copy
    assert budget.total == 16 * model.num_parameters()


def test_kv_cache_matches_the_buffers_generation_allocates(model):
    cfg = model.config
    cache = KVCache.for_model(model, batch=3, max_len=cfg.block_size)
    measured = _bytes(cache.keys) + _bytes(cache.values)
    itemsize = cache.keys[0].itemsize
    assert kv_cache_bytes(cfg.n_layer, cfg.n_embd, cfg.block_size, batch=3, bytes_per_value=itemsize) == measured
    budget = memory_budget(model.num_parameters(), cfg.n_layer, cfg.n_embd, cfg.block_size, batch=3,
                           bytes_per_value=itemsize)
    assert budget.kv_cache == measured and budget.gradients == budget.adamw_moments == 0


def test_gpt3_by_hand():
    # GPT-3 175B: 96 layers, width 12288, 2048 positions, float16 weights
    inference = memory_budget(175e9, 96, 12288, 2048, mode="inference", bytes_per_value=2)
    assert inference.weights == 350e9
    assert inference.kv_cache == 2 * 96 * 12288 * 2048 * 2 == 9_663_676_416
    mixed = memory_budget(175e9, 96, 12288, 2048, mode="finetuning", bytes_per_value=2)
    assert (mixed.weights, mixed.gradients, mixed.adamw_moments, mixed.master_weights) == (350e9, 350e9, 1400e9, 700e9)
    assert mixed.total == 16 * 175e9 == memory_budget(175e9, 96, 12288, 2048, "finetuning").total
    assert list(mixed.parts()) == ["weights", "gradients", "AdamW moments", "master weights", "KV cache"]


@pytest.mark.parametrize("kwargs, named", [(dict(mode="training"), "mode"), (dict(batch=0), "batch"),
                                           (dict(bytes_per_value=-2), "bytes_per_value"),
                                           (dict(n_params=0), "n_params")])
def test_bad_input_is_named(kwargs, named):
    args = dict(n_params=1000, n_layer=2, n_embd=16, context=8)
    with pytest.raises(UserError, match=named):
        memory_budget(**{**args, **kwargs})
