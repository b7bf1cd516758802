"""Serve reward models over HTTP (`rewardkit serve`) and score remotely with `RewardClient`."""

from rewardkit.serve.client import RewardClient

__all__ = ["RewardClient"]
