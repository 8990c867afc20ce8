"""The reward model r_θ(x, y): a transformer that reads a prompt and a response and returns one number.

Lecture, Phase 3: given a prompt x and a response y, r_θ(x, y) is a scalar score; trained on
triples (x, y_w, y_l) so that winning responses score higher than losing ones. Here it is the
GPT backbone (embeddings and blocks, no LM head) plus a linear head C -> 1, read at the last
real token of the chat-formatted prompt + response: by then, with causal attention, that
position has seen the whole text, and it is never a padding position.
`token_scores` reads the head at every position: PPO's value model (phases/rl/ppo.py).
Left out: ensembles.
"""
from __future__ import annotations

from minillm.engine import backend
from minillm.model import nn
from minillm.model.gpt import GPT, GPTConfig
from minillm.engine.tensor import Tensor


class RewardModel(nn.Module):
    """r_θ(x, y): token ids of prompt + response (B, T) and their lengths (B,) -> scores (B,)."""

    model_kind = "reward_model"

    def __init__(self, config: GPTConfig):
        self.config = config
        self.transformer = GPT(config)
        self.transformer.lm_head = None  # only the hidden states are read; no vocabulary output
        self.score_head = nn.Linear(config.n_embd, 1)
        self.score_head.weight.data[...] = 0  # every response starts with score 0: no preference yet

    def forward(self, ids, lengths) -> Tensor:
        """Scores read at the last real token of each row.

        Args:
            ids: (B, T) token ids, right-padded.
            lengths: (B,) number of real tokens per row (>= 1); positions from lengths on are padding.
        Returns:
            (B,) scores.
        """
        ids = backend.asarray(ids)
        lengths = backend.as_checkable(lengths)  # checked where it is, then moved
        B, T = ids.shape
        if lengths.shape != (B,) or backend.out_of_range(lengths, 1, T + 1):
            raise ValueError(f"lengths must be (B,) = ({B},) values in [1, {T}], got shape "
                             f"{lengths.shape} with values {backend.to_numpy(lengths).tolist()[:8]}")
        lengths = backend.asarray(lengths)
        hidden = self.transformer.hidden_states(ids)  # (B, T, C)
        last = hidden[backend.xp.arange(B), lengths - 1]  # (B, T, C) -> (B, C): the last real token
        return self.score_head(last).reshape(B)  # (B, 1) -> (B,)

    def token_scores(self, ids) -> Tensor:
        """The score head read at EVERY position: (B, T) ids -> (B, T) scores.

        PPO's value model is a reward model used this way: V(x, y_<t) is the score of the
        state that predicts y_t. Padding positions get scores too; callers mask them.
        """
        ids = backend.asarray(ids)
        B, T = ids.shape
        hidden = self.transformer.hidden_states(ids)  # (B, T, C)
        return self.score_head(hidden).reshape(B, T)  # (B, T, 1) -> (B, T)

    @classmethod
    def from_gpt(cls, gpt: GPT) -> "RewardModel":
        """A reward model whose backbone starts as a copy of a trained GPT (e.g. the SFT model)."""
        model = cls(gpt.config)
        own = dict(model.transformer.named_parameters())
        model.transformer.load_state_dict({name: p.data.copy() for name, p in gpt.named_parameters()
                                           if name in own})
        return model
