"""Policy and value losses over the valid tokens of sampled responses (all inputs [batch, tokens] with a `mask`).

`aggregation` decides how token losses become one number: "token_mean" averages over every valid token of the batch
(long responses weigh more, as in DAPO), "sequence_mean" averages within each response first, then over responses
(every response weighs the same, as in the original GRPO).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rewardkit.rl.masked import masked_mean

AGGREGATIONS = ("token_mean", "sequence_mean")


def aggregate(token_losses: torch.Tensor, mask: torch.Tensor, aggregation: str = "token_mean") -> torch.Tensor:
    if aggregation == "token_mean":
        return masked_mean(token_losses, mask)
    if aggregation == "sequence_mean":
        return masked_mean(token_losses, mask, dim=1).mean()
    raise ValueError(f"unknown aggregation {aggregation!r} (known: {', '.join(AGGREGATIONS)})")


def policy_gradient_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                         aggregation: str = "token_mean") -> torch.Tensor:
    """REINFORCE: −A·log π(a). Its gradient is the score-function estimate; advantages are constants."""
    return aggregate(-advantages.detach() * logprobs, mask, aggregation)


class SurrogateLoss(NamedTuple):
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of valid tokens whose ratio left [1 − ε, 1 + ε] in the direction that clips
    approx_kl: torch.Tensor      # k3 estimate of KL(old ‖ new): how far this epoch moved the policy
    # Both are aggregated like the loss, so that they add up over forward chunks and processes as the loss does.


def clipped_surrogate_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                           mask: torch.Tensor, clip_eps: float = 0.2,
                           aggregation: str = "token_mean") -> SurrogateLoss:
    """PPO (Schulman et al. 2017): −min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) with ρ = π/π_old.

    The pessimistic minimum removes any incentive to move ρ outside the trust region; at ρ = 1 (first epoch) the
    gradient equals the policy gradient's.
    """
    advantages = advantages.detach()
    log_ratio = logprobs - old_logprobs.detach()
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, aggregation)
    with torch.no_grad():
        clip_fraction = aggregate((clipped > unclipped).float(), mask, aggregation)
        # the tokens were sampled from the old policy: k3 of KL(old ‖ new) is ρ - 1 - log ρ with ρ = new / old
        approx_kl = aggregate(ratio - 1 - log_ratio, mask, aggregation)
    return SurrogateLoss(loss, clip_fraction, approx_kl)


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               old_values: torch.Tensor | None = None, clip_eps: float | None = None,
               aggregation: str = "token_mean") -> torch.Tensor:
    """½·(V − R)²; with `old_values` and `clip_eps`, PPO's clipped form ½·max((V − R)², (clip(V) − R)²) where
    clip(V) = V_old + clamp(V − V_old, −ε, ε), so the critic cannot jump far from the values the advantages used."""
    returns = returns.detach()
    losses = (values - returns) ** 2
    if clip_eps is not None and old_values is not None:
        old_values = old_values.detach()
        clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
        losses = torch.maximum(losses, (clipped_values - returns) ** 2)
    return 0.5 * aggregate(losses, mask, aggregation)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution over the last axis, logsumexp(z) − Σ softmax(z)·z, in fp32.

    A logit masked to −inf (by a logits processor: a minimum length, banned words) is raised to the lowest finite
    float first: its term is then 0·(−3.4e38) = 0 instead of 0·(−inf) = nan. (Σ −p·log p from the probabilities would
    give the same value, but an infinite gradient wherever a probability underflows to 0.)"""
    logits = logits.float().clamp(min=torch.finfo(torch.float32).min)
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
