"""Server-side reward normalization (`rewardkit serve --normalize`), for frameworks that do not normalize a remote
reward (OpenRLHF skips its reward normalization when the reward comes from --reward.remote_url, OpenRLHF#822).

- `fixed`: r' = (r − mean) / std with a given mean and std: `--normalize-mean`/`--normalize-std`, or the reward
  statistics saved with the model (`rewardkit.json` `reward_stats`, written by `train-rm` on its validation data and
  by `eval-rm --save-reward-stats`).
- `running`: mean and population std over every score served so far (a parallel Welford merge per request, the
  request's own scores included, as the reward spec's `normalize: running` does). For the first `warmup` scores the
  std is too noisy to divide by, so scores are only centered: r' = r − mean; from then on r' = (r − mean) / std.
  The statistics start afresh when the server starts.

The server applies the normalizer to each request's scores once they are scored, under a lock, so concurrent
requests (and threads of a library caller) fold into the statistics one at a time. An ensemble's disagreement (the
std over its members) is divided by the same scale as its request's scores, and not shifted: it is in the units of
the served scores (the std of the members' normalized scores).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Sequence

from rewardkit.errors import RewardkitError
from rewardkit.rewards.composite import RunningMeanStd
from rewardkit.serve.config import NORMALIZE_METHODS

# A std below this is treated as zero (constant scores): values are then only centered.
MIN_STD = 1e-6


class ScoreNormalizer:
    """Maps raw scores to normalized ones; see the module docstring. `describe()` is what /health shows."""

    def __init__(self, method: str = "none", mean: float | None = None, std: float | None = None, warmup: int = 0,
                 source: str | None = None):
        if method not in NORMALIZE_METHODS:
            raise RewardkitError(f"--normalize must be one of {', '.join(NORMALIZE_METHODS)}, got {method!r}")
        if method == "fixed":
            if mean is None or std is None or not math.isfinite(mean) or not (math.isfinite(std) and std > 0):
                raise RewardkitError(f"--normalize fixed needs a finite mean and a positive std, got mean {mean}, "
                                     f"std {std}")
        self.method, self.mean, self.std, self.warmup, self.source = method, mean, std, int(warmup), source
        self.running = RunningMeanStd()
        self._lock = threading.Lock()

    def __call__(self, scores: Sequence[float],
                 spreads: Sequence[float] | None = None) -> tuple[list[float], list[float] | None]:
        """The normalized scores and, when given, an ensemble's spreads (std over members) in the same units: divided
        by the scale the scores were divided by (a std is not shifted), so they stay comparable to the served scores."""
        shift, scale = self._shift_and_scale(scores)
        return [(s - shift) / scale for s in scores], None if spreads is None else [d / scale for d in spreads]

    def _shift_and_scale(self, scores: Sequence[float]) -> tuple[float, float]:
        """What to subtract from and divide these scores by; `running` first folds them into its statistics."""
        if self.method == "none":
            return 0.0, 1.0
        if self.method == "fixed":
            return self.mean, self.std
        with self._lock:
            count = len(scores)
            if count:
                mean = math.fsum(scores) / count
                self.running.merge(count, mean, math.fsum((s - mean) ** 2 for s in scores))
            mean, std = self.running.mean, self.running.std
            return mean, std if self.running.count >= self.warmup and std > MIN_STD else 1.0

    def describe(self) -> dict[str, Any]:
        if self.method == "none":
            return {"method": "none"}
        if self.method == "fixed":
            return {"method": "fixed", "mean": self.mean, "std": self.std, "source": self.source}
        with self._lock:
            return {"method": "running", "warmup": self.warmup, "count": self.running.count,
                    "mean": self.running.mean, "std": self.running.std,
                    "warmed_up": self.running.count >= self.warmup}


def normalizer_for(method: str, mean: float | None, std: float | None, warmup: int,
                   saved_stats: dict | None, model_name: str | None) -> ScoreNormalizer:
    """The normalizer `rewardkit serve`'s options ask for; `fixed` without a mean and std takes the model's saved
    `reward_stats` (an error naming how to save them when it has none)."""
    if method != "fixed":
        return ScoreNormalizer(method, warmup=warmup)
    if mean is not None and std is not None:
        return ScoreNormalizer("fixed", mean, std, source="--normalize-mean/--normalize-std")
    if not saved_stats:
        raise RewardkitError(f"--normalize fixed: model {model_name} has no saved reward statistics (rewardkit.json "
                             f"reward_stats); give --normalize-mean and --normalize-std, or save them with "
                             f"`rewardkit eval-rm {model_name} DATA --save-reward-stats`")
    data = saved_stats.get("data")
    return ScoreNormalizer("fixed", float(saved_stats["mean"]), float(saved_stats["std"]),
                           source=f"{model_name} rewardkit.json ({saved_stats.get('count')} scores"
                                  f"{' of ' + data if data else ''})")
