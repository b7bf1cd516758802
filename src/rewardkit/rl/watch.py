"""The reward-hacking watch: signs that the policy is exploiting the proxy reward rather than getting better.

Logged every step: proxy reward, KL to the reference, response length, entropy, and (optionally) a gold reward from a
second reward function on the same samples. Two warnings:
- the gold reward falls while the proxy rises: over the last `window` gold-scored steps against the `window` before,
  the proxy mean rose and the gold mean fell, each by more than `z` standard errors (a two-sample z-test, so noise
  alone rarely triggers it) — the overoptimization of Gao et al. (2022);
- the response length drifts: the mean length of the last `window` steps is more than `length_drift` times (or less
  than 1/`length_drift` of) the mean of the first `window` steps — length is the classic exploit of reward models.
A warning is raised when its condition starts to hold, not again while it keeps holding.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field


def _mean_and_var(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, var


def window_shift(values: list[float], window: int) -> tuple[float, float]:
    """(change of the mean, its standard error) between the last `window` values and the `window` before them."""
    before, after = values[-2 * window:-window], values[-window:]
    (mean_before, var_before), (mean_after, var_after) = _mean_and_var(before), _mean_and_var(after)
    return mean_after - mean_before, math.sqrt(var_before / window + var_after / window)


@dataclass
class RewardHackingWatch:
    window: int = 10
    length_drift: float = 2.0
    z: float = 2.0
    history: dict[str, list[float]] = field(default_factory=lambda: {"proxy": [], "gold": [], "length": []})
    active: dict[str, bool] = field(default_factory=lambda: {"gold_falls": False, "length_drift": False})
    warnings: list[dict] = field(default_factory=list)

    def update(self, step: int, proxy: float, length: float, gold: float | None = None) -> list[str]:
        """Record one step; return the warnings that start at this step."""
        self.history["proxy"].append(float(proxy))
        self.history["length"].append(float(length))
        self.history["gold"].append(None if gold is None else float(gold))
        new = []
        for kind, message in (("gold_falls", self._gold_falls()), ("length_drift", self._length_drift())):
            if message and not self.active[kind]:
                new.append(message)
                self.warnings.append({"step": step, "kind": kind, "message": message})
            self.active[kind] = message is not None
        return new

    def _gold_falls(self) -> str | None:
        # Only the steps where the gold reward was scored (it may be scored every few steps).
        pairs = [(p, g) for p, g in zip(self.history["proxy"], self.history["gold"]) if g is not None]
        w = self.window
        if len(pairs) < 2 * w:
            return None
        proxy, gold = [p for p, _ in pairs], [g for _, g in pairs]
        proxy_change, proxy_se = window_shift(proxy, w)
        gold_change, gold_se = window_shift(gold, w)
        if proxy_change > self.z * proxy_se and gold_change < -self.z * gold_se:
            return (f"gold reward falls while the proxy rises (last {w} steps vs the {w} before: proxy "
                    f"{proxy_change:+.3f}, gold {gold_change:+.3f}): the policy may be exploiting the proxy")
        return None

    def _length_drift(self) -> str | None:
        lengths, w = self.history["length"], self.window
        if len(lengths) < 2 * w:
            return None
        start, _ = _mean_and_var(lengths[:w])
        now, _ = _mean_and_var(lengths[-w:])
        ratio = now / max(start, 1e-9)
        if ratio > self.length_drift or ratio < 1 / self.length_drift:
            return (f"response length drifted from {start:.1f} to {now:.1f} tokens (x{ratio:.2f}) since the start: "
                    "check whether the reward favours length")
        return None

    def state_dict(self) -> dict:
        return {"history": self.history, "active": self.active, "warnings": self.warnings}

    def load_state_dict(self, state: dict) -> None:
        state = copy.deepcopy(state)  # a watch restored from another one's state must not share its lists with it
        self.history, self.active, self.warnings = state["history"], state["active"], state["warnings"]
