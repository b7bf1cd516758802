"""Value functions for actor-critic and PPO: V_t estimates the return from the state before response token t.

Two kinds, one interface (`values(rollout, policy_hidden) -> [B, T]`):
- `ValueHead`: a linear head on the policy's own last hidden state (no second forward pass, shares features);
- `TokenCritic`: a separate decoder model with a scalar head applied at every position, e.g. initialised from a
  reward model, whose score of a prefix is a natural first guess of the return. It reads the policy's token ids, so it
  must share the policy's tokenizer.
Both keep their head in fp32 even under autocast: the values feed GAE and the value loss, which need fp32's precision.
"""

from __future__ import annotations

import torch
from torch import nn

from rewardkit.errors import RewardkitError
from rewardkit.rl.rollout import Rollout


class ValueHead(nn.Module):
    uses_policy_hidden = True

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        # Start from V = 0 everywhere: a neutral guess that cannot bias the first advantages.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def values(self, rollout: Rollout, policy_hidden: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(policy_hidden.device.type, enabled=False):
            return self.linear(policy_hidden.float()).squeeze(-1)


class TokenCritic(nn.Module):
    uses_policy_hidden = False

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(getattr(model, "score", None), nn.Linear):
            raise RewardkitError("a critic needs a decoder reward model (a linear `score` head read at every token); "
                                 "encoder models such as BERT pool one token and cannot give per-token values")
        self.model = model

    @classmethod
    def from_pretrained(cls, path: str, policy_tokenizer) -> "TokenCritic":
        """A critic from a reward-model folder (rewardkit or any HF sequence-classification model, num_labels=1)."""
        from transformers import AutoConfig, AutoTokenizer

        from rewardkit.models.presets import resolve_model_path
        from rewardkit.models.checkpoint import load_with_reward_head

        path = resolve_model_path(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            config = AutoConfig.from_pretrained(path, num_labels=1)
            model = load_with_reward_head(path, config, use_safetensors=True)
        except OSError as exc:
            raise RewardkitError(f"cannot load critic {path!r}: {str(exc).splitlines()[0]}")
        if tokenizer.get_vocab() != policy_tokenizer.get_vocab():
            raise RewardkitError(f"critic {path}: its tokenizer differs from the policy's; the critic reads the "
                                 "policy's tokens, so it must share its tokenizer (or use the value head)")
        return cls(model)

    def values(self, rollout: Rollout, policy_hidden: torch.Tensor | None = None) -> torch.Tensor:
        input_ids = torch.cat([rollout.query_ids, rollout.response_ids], dim=1)
        attention_mask = torch.cat([rollout.query_mask.long(), rollout.response_mask.long()], dim=1)
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                       use_cache=False).last_hidden_state
        n_response = rollout.response_ids.shape[1]
        with torch.autocast(hidden.device.type, enabled=False):
            return self.model.score(hidden[:, -(n_response + 1):-1].float()).squeeze(-1)
