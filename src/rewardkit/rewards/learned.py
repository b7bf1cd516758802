"""Learned rewards: a rewardkit reward model or any HF sequence-classification folder (one class, through
`RewardModel`), and a remote scoring server (`POST /score {"items": [{"prompt", "response"}]}` → `{"scores": [...]}`)."""

from __future__ import annotations

from typing import Any

import torch

from rewardkit.device import Placement, component_placement
from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction, at_least_one


class LearnedReward(RewardFunction):
    """Scores from a `RewardModel` (preset, rewardkit folder or any HF sequence-classification folder) or a saved
    ensemble (its members' mean).

    With `calibrated: true` the score is divided by the model's saved calibration temperature. `conservative: λ` (an
    ensemble only) scores mean − λ·std over its members, so that a policy gains nothing from responses the members
    disagree on (Coste et al. 2023). `device` and `precision` follow the rule of `rewardkit.device`; left at auto in a
    spec, they take the command's own choice.
    """

    name = "reward_model"

    def __init__(self, path: str, max_length: int | None = None, batch_size: int = 32, calibrated: bool = False,
                 conservative: float = 0.0, device: str = "auto", precision: str = "auto", *,
                 placement: Placement | None = None):
        from rewardkit.models.ensemble import load_reward_model

        if max_length is not None:
            at_least_one(max_length, "max_length")
        placement = component_placement(device, precision, placement)
        self._use(load_reward_model(path, max_length=max_length, placement=placement), batch_size, calibrated,
                  conservative)

    @classmethod
    def from_model(cls, model: Any, batch_size: int = 32, calibrated: bool = False,
                   conservative: float = 0.0) -> "LearnedReward":
        """Wrap an already loaded `RewardModel` or `RewardEnsemble` (library callers and tests; the commands build
        rewards from specs)."""
        reward = cls.__new__(cls)
        reward._use(model, batch_size, calibrated, conservative)
        return reward

    def _use(self, model: Any, batch_size: int, calibrated: bool, conservative: float) -> None:
        if conservative < 0:
            raise RewardkitError(f"conservative must be >= 0, got {conservative}")
        if conservative and not getattr(model, "is_ensemble", False):
            raise RewardkitError("conservative needs an ensemble (train-rm --ensemble K): a single model has no "
                                 "disagreement to subtract")
        self.model, self.batch_size, self.calibrated = model, at_least_one(batch_size, "batch_size"), calibrated
        self.conservative = float(conservative)
        self.last_spread: torch.Tensor | None = None  # an ensemble's std over members, per response of the last call

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def _score(self, prompts, responses, references, finished):
        if getattr(self.model, "is_ensemble", False):
            scores, self.last_spread = self.model.score_with_spread(prompts, responses, batch_size=self.batch_size)
            scores = scores - self.conservative * self.last_spread
        else:
            scores = self.model.score(prompts, responses, batch_size=self.batch_size)
        return scores / self.model.temperature if self.calibrated else scores


class RemoteReward(RewardFunction):
    """Scores from a `rewardkit serve` server at `url` (its base URL or .../score), through
    `rewardkit.rewards.serve_client.RewardClient`: chunked under the server's limits, transient failures retried `retries`
    times with backoff, bearer token from $REWARDKIT_API_TOKEN when set."""

    name = "remote"

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 3):
        from rewardkit.rewards.serve_client import RewardClient

        if not url.startswith(("http://", "https://")):
            raise RewardkitError(f"url must start with http:// or https://, got {url!r}")
        self.client = RewardClient(url, timeout=timeout, retries=retries)

    def _score(self, prompts, responses, references, finished):
        return self.client.score(prompts, responses)
