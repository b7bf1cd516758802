"""Policy optimization against rewards: REINFORCE, actor-critic, PPO, GRPO and RLOO in one loop.

Pure functions (each unit-tested against hand-computed values):
- `rewardkit.rl.masked`: masked_sum / masked_mean / masked_var / masked_moments / masked_whiten over padded
  [batch, tokens] tensors (masked_moments also over every process's share of a batch);
- `rewardkit.rl.advantages`: discounted_returns, gae, reinforce_advantages, group_normalized_advantages (GRPO),
  leave_one_out_advantages (RLOO), per_token;
- `rewardkit.rl.losses`: policy_gradient_loss, clipped_surrogate_loss (PPO), value_loss (optionally clipped),
  entropy_from_logits, aggregate (token_mean | sequence_mean);
- `rewardkit.rl.kl`: kl_k1 / kl_k2 / kl_k3, kl_estimate, FixedKLController, AdaptiveKLController (Ziegler et al.).
The loop: `rewardkit.rl.rollout` (sampling with a KV cache, EOS masks, log-probs), `rewardkit.rl.critic` (value head or
separate critic), `rewardkit.rl.trainer.RLTrainer` (on a `Placement`'s device and precision),
`rewardkit.rl.distributed` (several processes taking the update of one: torchrun / accelerate launch),
`rewardkit.rl.watch.RewardHackingWatch`, and the command `rewardkit rl` (`rewardkit.rl.command`: RLConfig, run_rl) with
its report (`rewardkit.rl.report`).

Names are imported lazily so that `rewardkit --help` (which reads RLConfig) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RLConfig": "rewardkit.rl.config", "run_rl": "rewardkit.rl.command",
    "RLTrainer": "rewardkit.rl.trainer", "ALGORITHMS": "rewardkit.rl.trainer",
    "RewardHackingWatch": "rewardkit.rl.watch",
    "masked_mean": "rewardkit.rl.masked", "masked_var": "rewardkit.rl.masked", "masked_whiten": "rewardkit.rl.masked",
    "masked_moments": "rewardkit.rl.masked",
    "discounted_returns": "rewardkit.rl.advantages", "gae": "rewardkit.rl.advantages",
    "reinforce_advantages": "rewardkit.rl.advantages",
    "group_normalized_advantages": "rewardkit.rl.advantages", "leave_one_out_advantages": "rewardkit.rl.advantages",
    "policy_gradient_loss": "rewardkit.rl.losses", "clipped_surrogate_loss": "rewardkit.rl.losses",
    "value_loss": "rewardkit.rl.losses", "entropy_from_logits": "rewardkit.rl.losses",
    "kl_estimate": "rewardkit.rl.kl", "AdaptiveKLController": "rewardkit.rl.kl", "FixedKLController": "rewardkit.rl.kl",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rewardkit.rl' has no attribute {name!r}")
