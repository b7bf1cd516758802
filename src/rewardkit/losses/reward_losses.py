"""Losses for each shape of feedback. Each returns per-example losses [B] (`reduction="none"`) or their mean, so a
trainer can sum over a micro-batch and divide by the global batch size: gradient accumulation then leaves the loss
scale unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"unknown reduction {reduction!r}")


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       reduction: str = "mean") -> torch.Tensor:
    """−log σ(r_chosen − r_rejected − margin): chosen must beat rejected by at least `margin` (Llama 2's variant)."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    return _reduce(-F.logsigmoid(diff), reduction)


def center_rewards_penalty(chosen: torch.Tensor, rejected: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """(r_chosen + r_rejected)²: keeps rewards centred on zero, since the Bradley–Terry loss only sees differences
    (Eisenstein et al., 2023). Multiply by a small coefficient (e.g. 0.01)."""
    return _reduce((chosen + rejected) ** 2, reduction)


def normalize_ratings(ratings: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Z-score ratings with statistics of the training set, so Likert 1–5 and 0–100 scales train alike."""
    return (ratings - mean) / (std if std > 0 else 1.0)


def rating_mse_loss(scores: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error between predicted rewards and (optionally normalized) ratings."""
    return _reduce((scores - targets) ** 2, reduction)


def plackett_luce_loss(scores: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood of a best-first ranking under Plackett–Luce.

    `scores` is [B, K] in ranked order (column 0 best); `mask` [B, K] marks real entries, so groups of different sizes
    share a batch (padding must come after the real entries). With K = 2 this is the Bradley–Terry loss.
    """
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.bool()
    masked = scores.masked_fill(~mask, float("-inf"))
    # log Σ_{j≥k} exp(s_j): a reversed cumulative logsumexp over the still-unplaced items.
    tail_logsumexp = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    per_position = torch.where(mask, tail_logsumexp - scores, torch.zeros_like(scores))
    # the last item of each group is chosen with probability 1; it contributes 0 (logsumexp of itself minus itself)
    return _reduce(per_position.sum(-1), reduction)


def binary_cross_entropy_loss(scores: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Thumbs up/down: the reward is the logit of P(up)."""
    return _reduce(F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype), reduction="none"), reduction)


def pearson_correlation(x: torch.Tensor, y: torch.Tensor, x_std_floor: float = 0.0,
                        eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two 1-D tensors, cov(x, y) / (std(x) · std(y)), with std(x) floored at `x_std_floor`
    (0 when either is constant: nothing to correlate)."""
    x, y = x - x.mean(), y - y.mean()
    root_n = x.numel() ** 0.5
    # norms, not sqrt(mean of squares): their gradient at a constant input is 0, not NaN
    std_x = (x.norm() / root_n).clamp(min=max(x_std_floor, eps))
    std_y = (y.norm() / root_n).clamp(min=eps)
    return (x * y).mean() / (std_x * std_y)


def floored_length_correlation(rewards: torch.Tensor, lengths: torch.Tensor, reward_scale: float = 1.0) -> torch.Tensor:
    """The correlation of rewards with lengths, with the rewards' standard deviation floored at `reward_scale`:
    cov(r, L) / (max(std(r), reward_scale) · std(L)).

    Pearson's correlation ignores the rewards' scale, so its gradient grows as 1/std(r): at the start of training,
    when a fresh head gives nearly equal rewards, it would swamp the preference loss (and gradient clipping would then
    shrink that loss's share further). With the floor the term is a covariance with standardized lengths until the
    rewards spread to `reward_scale`, and Pearson's correlation after."""
    return pearson_correlation(rewards, lengths.to(rewards.dtype), x_std_floor=reward_scale)


def length_decorrelation_loss(rewards: torch.Tensor, lengths: torch.Tensor,
                              length_rewards: torch.Tensor | None = None, reward_scale: float = 1.0) -> torch.Tensor:
    """|ρ(r, length)| − ρ(r_length, length), over the responses of a batch (ODIN, Chen et al. 2024), with ρ the
    correlation of `floored_length_correlation` (rewards' spread floored at `reward_scale`).

    The first term stops the reward from tracking response length. With a length head (`length_rewards`), the second
    pushes that head to carry the length signal instead, so the Bradley–Terry loss on r + r_length can still explain
    the labels that length explains, without the reward itself becoming a length meter. Without a length head the
    loss is the first term alone: a length regularizer on one reward."""
    loss = floored_length_correlation(rewards, lengths, reward_scale).abs()
    if length_rewards is not None:
        # no floor here: the length head needs only the direction of length, its scale is the preference loss's call
        # (a floor would push its rewards to spread by `reward_scale` even where length predicts no label, and the
        # reward head would then learn to cancel them)
        loss = loss - pearson_correlation(length_rewards, lengths.to(length_rewards.dtype))
    return loss


def head_orthogonality_loss(quality_weight: torch.Tensor, length_weight: torch.Tensor) -> torch.Tensor:
    """|cos(w_quality, w_length)|: the two heads read different directions of the same features (ODIN's orthogonality
    term, on normalized weights so that it does not simply shrink them)."""
    return F.cosine_similarity(quality_weight.flatten(), length_weight.flatten(), dim=0).abs()
