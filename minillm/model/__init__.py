"""The models: layers, the GPT, its KV cache and sampling, the n-gram baseline, the reward model."""
