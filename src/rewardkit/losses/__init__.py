"""Reward-model losses as pure functions of scores and targets (no models, no trainers)."""

from rewardkit.losses.reward_losses import (
    binary_cross_entropy_loss,
    bradley_terry_loss,
    center_rewards_penalty,
    head_orthogonality_loss,
    floored_length_correlation,
    length_decorrelation_loss,
    normalize_ratings,
    pearson_correlation,
    plackett_luce_loss,
    rating_mse_loss,
)

__all__ = [
    "binary_cross_entropy_loss", "bradley_terry_loss", "center_rewards_penalty", "head_orthogonality_loss",
    "floored_length_correlation", "length_decorrelation_loss", "normalize_ratings", "pearson_correlation",
    "plackett_luce_loss", "rating_mse_loss",
]
