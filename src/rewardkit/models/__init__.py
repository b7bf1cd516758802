"""Reward models: any HF backbone with a scalar head, one tokenization rule, offline presets, and the trainer."""

from rewardkit.models.presets import resolve_model_path
from rewardkit.models.reward_model import Encoded, RewardModel

__all__ = ["Encoded", "RewardModel", "resolve_model_path"]
