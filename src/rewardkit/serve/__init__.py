"""Serve reward models over HTTP (`rewardkit serve`) and score remotely with `RewardClient`."""

from rewardkit.rewards.serve_client import RewardClient

__all__ = ["RewardClient"]
