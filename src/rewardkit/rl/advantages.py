"""Advantage estimators: how much better each sampled token was than expected.

Token-level tensors are [batch, response_tokens] with the response left-aligned and a `mask` that is 1 on response
tokens (the EOS included) and 0 on the padding after it. Sequence-level scores are [batch]; for the group estimators
(GRPO, RLOO) the samples of one prompt are contiguous: rows `g*G .. g*G+G-1` form group `g`.
"""

from __future__ import annotations

import torch

from rewardkit.rl.masked import masked_mean


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go G_t = r_t + γ·G_{t+1}, with G = 0 after the last valid token."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016). Returns (advantages, returns = advantages + values).

    δ_t = r_t + γ·V_{t+1} − V_t with V = 0 past the last valid token (the episode ends at EOS or the length limit);
    A_t = δ_t + γλ·A_{t+1}. λ = 1 gives Monte Carlo returns minus the value; λ = 0 the one-step TD error.
    """
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        valid = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * valid
        advantages[:, t] = advantage
        # Padding positions pass nothing back: the next valid step's value and advantage are reset to 0.
        next_advantage = advantage
        next_value = values[:, t] * valid
    returns = (advantages + values) * mask
    return advantages, returns


def reinforce_advantages(returns: torch.Tensor, mask: torch.Tensor,
                         mean_return: torch.Tensor | None = None) -> torch.Tensor:
    """REINFORCE with the batch's mean return as its baseline: A_t = G_t − mean G (`mean_return` when given: the
    mean over every process's share of the batch). A learned baseline is actor-critic's GAE."""
    baseline = mean_return if mean_return is not None else masked_mean(returns, mask)
    return (returns - baseline) * mask


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    if group_size < 2 or scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size} (need >= 2 per group)")
    return scores.view(-1, group_size)


def group_normalized_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-4,
                                scale: bool = True) -> torch.Tensor:
    """GRPO (Shao et al. 2024): (r − mean_group) / (std_group + eps), std unbiased; `scale=False` only centres
    (Dr. GRPO, which argues the division over-weights groups that are nearly all right or all wrong)."""
    groups = _groups(scores, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def leave_one_out_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024): r_i − mean_{j≠i} r_j within each group, an unbiased baseline."""
    groups = _groups(scores, group_size)
    others_mean = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others_mean).reshape(-1)


def per_token(sequence_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Broadcast one value per sequence to each of its valid tokens."""
    return sequence_values[:, None] * mask
