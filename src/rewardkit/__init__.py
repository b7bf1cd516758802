"""rewardkit: the reward-modeling loop of LLM alignment, from feedback files to served reward models."""

from rewardkit.errors import RewardkitError

__version__ = "0.1.0"
__all__ = ["RewardkitError", "__version__"]
