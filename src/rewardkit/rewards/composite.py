"""The composite reward: a weighted sum of components, each normalized (none | running | rank | rank_centered) and
optionally clipped, with an optional clip of the total. It is itself a `RewardFunction`.

    total = clip_total( Σ_k w_k · clip_k( normalize_k( R_k(x, y) ) ) )

Normalizations:
- `running`: (v − mean) / std with a running mean and population std over every response scored so far (Welford/Chan
  merge per batch, state kept across calls); the current batch is included before normalizing. While the std is ~0
  (first batch of one, or constant scores) values are only centered. `CompositeReward.state_dict()` holds these
  statistics, so that a resumed RL run normalizes as the uninterrupted one would. In a multi-process RL run the
  statistics are fitted on every process's responses (`share_batches`), so N processes normalize as one would.
- `rank`: the average rank within the batch mapped to [0, 1] (ties share their mean rank; a batch of one gives 0.5);
  `rank_centered`: the same minus 0.5, in [−0.5, 0.5].
After each call, `last_components` holds every component's raw values, `last_contributions` its weighted,
normalized, clipped term, and `last_total` the total, for logging.

Components that wait on something outside the process (`calls_out`: a server, a sandboxed subprocess) run in threads
alongside the others, so that a batch takes as long as its slowest component rather than the sum of them; the others
run one after another in the calling thread (a model is never called from two threads at once).

Dense rewards shape the composite's total as a potential. The normalization statistics are updated on the whole
responses only and then applied frozen to every prefix (a prefix's rank is its place among the batch's whole
responses), so the per-token rewards sum to the sparse total.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from rewardkit.device import on_host
from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, RewardFunction

NORMALIZATIONS = ("none", "running", "rank", "rank_centered")


class RunningMeanStd:
    """Mean and population variance over all values seen, merged batch by batch (Chan et al.'s parallel Welford)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: torch.Tensor) -> None:
        values = values.double()
        if values.numel():
            batch_mean = float(values.mean())
            self.merge(values.numel(), batch_mean, float(((values - batch_mean) ** 2).sum()))

    def merge(self, count: int, mean: float, m2: float) -> None:
        """Fold in the statistics of `count` other values: their mean and sum of squared deviations from it."""
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta ** 2 * self.count * count / total
        self.count = total

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        scale = self.std if self.std > 1e-6 else 1.0
        return (values - self.mean) / scale


def rank_normalize(values: torch.Tensor, among: torch.Tensor | None = None) -> torch.Tensor:
    """(average 1-based rank − 1) / (n − 1) of each value among `among` (default: the values themselves), in [0, 1].

    A value absent from `among` lands between its neighbours' ranks; a batch of one gives 0.5.
    """
    among = values if among is None else among
    n = among.numel()
    if n <= 1:
        return torch.full_like(values, 0.5, dtype=torch.float32)
    below = (among.unsqueeze(0) < values.unsqueeze(1)).sum(1).float()
    equal = (among.unsqueeze(0) == values.unsqueeze(1)).sum(1).float()
    return ((below + 0.5 * equal - 0.5) / (n - 1)).clamp(0.0, 1.0)


class Normalizer:
    """One component's normalization: `fit_apply` on a batch of whole responses (updates the state), `apply` with
    the state frozen (for prefixes in dense mode)."""

    def __init__(self, method: str = "none"):
        if method not in NORMALIZATIONS:
            raise RewardkitError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")
        self.method = method
        self.running = RunningMeanStd()
        with on_host():  # a reward's bookkeeping is on the CPU, as rewards are
            self.rank_reference = torch.empty(0)

    def fit_apply(self, values: torch.Tensor) -> torch.Tensor:
        if self.method == "running":
            self.running.update(values)
        elif self.method.startswith("rank"):
            self.rank_reference = values.clone()
        return self.apply(values)

    def state_dict(self) -> dict:
        """What carries over from one batch to the next: the running statistics (a rank reference lasts one call)."""
        return {"running": self.running.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.running.load_state_dict(state["running"])

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return values
        if self.method == "running":
            return self.running.normalize(values).float()
        ranks = rank_normalize(values, self.rank_reference)
        return ranks - 0.5 if self.method == "rank_centered" else ranks


def clip_values(values: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    return values if bounds is None else values.clamp(bounds[0], bounds[1])


@dataclass
class Component:
    """A reward function with its name in logs, weight, normalization and clip bounds."""

    reward: RewardFunction
    name: str
    weight: float = 1.0
    normalize: str = "none"
    clip: tuple[float, float] | None = None

    def __post_init__(self):
        self.normalizer = Normalizer(self.normalize)


class CompositeReward(RewardFunction):
    """Weighted sum of normalized, clipped components; see the module docstring."""

    name = "composite"

    def __init__(self, components: list[Component], clip: tuple[float, float] | None = None, mode: str = "sparse",
                 shaping: str = "token", step_separator: str = "\n"):
        if not components:
            raise RewardkitError("a composite reward needs at least one component")
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise RewardkitError(f"component names must be unique, got {names}")
        if mode not in ("sparse", "dense") or shaping not in ("token", "step"):
            raise RewardkitError(f"mode must be sparse|dense and shaping token|step, got {mode!r}, {shaping!r}")
        self.components, self.clip = components, clip
        self.mode, self.shaping, self.step_separator = mode, shaping, step_separator
        self.needs_reference = any(c.reward.needs_reference for c in components)
        self.needs_fields = tuple(dict.fromkeys(f for c in components for f in c.reward.needs_fields))
        self.calls_out = any(c.reward.calls_out for c in components)
        self.last_components: dict[str, torch.Tensor] = {}
        self.last_contributions: dict[str, torch.Tensor] = {}
        with on_host():
            self.last_total = torch.empty(0)
        self.last_token_contributions: dict[str, list[torch.Tensor]] = {}
        self._prefix_contributions: dict[str, torch.Tensor] = {}
        self._gather = None  # every process's values of a batch, when normalizers fit on the whole batch

    def share_batches(self, gather) -> None:
        self._gather = gather
        for component in self.components:
            component.reward.share_batches(gather)

    def state_dict(self) -> dict:
        """Each component's normalizer state, by component name."""
        return {c.name: c.normalizer.state_dict() for c in self.components}

    def load_state_dict(self, state: dict) -> None:
        names = [c.name for c in self.components]
        if sorted(state) != sorted(names):
            raise RewardkitError(f"the saved reward state has components {sorted(state)}, this reward "
                                 f"{sorted(names)}: was the reward spec changed?")
        for component in self.components:
            component.normalizer.load_state_dict(state[component.name])

    def _raw(self, index: int, component: Component, values: torch.Tensor) -> torch.Tensor:
        if torch.isnan(values).any():  # components validate their own output; nested ones may still pass NaN on
            j = int(torch.isnan(values).nonzero()[0])
            raise RewardkitError(f"reward component {index + 1} ({component.name}) returned NaN for response {j}")
        return values

    def _combine(self, raw: dict[str, torch.Tensor], fit_rows: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """Total and per-component terms; `fit_rows` (whole responses) update the normalizers first."""
        contributions = {}
        for component in self.components:
            values = raw[component.name]
            if fit_rows is not None:
                fitted = values[fit_rows]
                component.normalizer.fit_apply(self._gather(fitted) if self._gather is not None else fitted)
            normalized = component.normalizer.apply(values)
            contributions[component.name] = component.weight * clip_values(normalized, component.clip)
        total = clip_values(torch.stack(list(contributions.values())).sum(0), self.clip)
        return total, contributions

    def _remember(self, raw, contributions, total, rows: torch.Tensor) -> None:
        self.last_components = {k: v[rows] for k, v in raw.items()}
        self.last_contributions = {k: v[rows] for k, v in contributions.items()}
        self.last_total = total[rows]

    def check_fields(self, fields) -> None:
        for index, component in enumerate(self.components):
            if component.reward.needs_fields:
                _named(component, index, lambda: component.reward.check_fields(fields))

    def _each_component(self, call) -> dict[str, torch.Tensor]:
        """`call(component)` for every component, those that call out in threads alongside the others; raw values by
        name, in component order. The first component (by index) that fails raises, named."""
        outbound = [i for i, c in enumerate(self.components) if c.reward.calls_out]
        if len(self.components) == 1 or not outbound:
            outbound = []
        results: dict[int, object] = {}
        pool = ThreadPoolExecutor(max_workers=len(outbound)) if outbound else None
        try:
            futures = {i: pool.submit(_named, self.components[i], i, lambda c=self.components[i]: call(c))
                       for i in outbound}
            for index, component in enumerate(self.components):
                if index not in futures:
                    try:
                        results[index] = _named(component, index, lambda: call(component))
                    except Exception as exc:  # noqa: BLE001 - re-raised below, in component order
                        results[index] = exc
            for index, future in futures.items():
                try:
                    results[index] = future.result()
                except Exception as exc:  # noqa: BLE001
                    results[index] = exc
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        raw = {}
        for index, component in enumerate(self.components):
            if isinstance(results[index], Exception):
                raise results[index]
            raw[component.name] = self._raw(index, component, results[index])
        return raw

    def _score(self, prompts, responses, references, finished, fields=None):
        raw = self._each_component(lambda c: c.reward(prompts, responses, references, finished=finished,
                                                      fields=fields))
        with on_host():
            every = torch.arange(len(responses))
        total, contributions = self._combine(raw, every)
        self._remember(raw, contributions, total, every)
        return total

    def _potentials(self, prompts, texts, references, finished, complete, fields=None):
        raw = self._each_component(lambda c: c.reward._potentials(
            prompts, texts, references, finished, complete, **({"fields": fields} if c.reward.needs_fields else {})))
        whole = complete.nonzero().reshape(-1)
        total, contributions = self._combine(raw, whole)
        self._remember(raw, contributions, total, whole)
        self._prefix_contributions = contributions
        return total

    def per_token(self, prompts, responses, references=None, **alignment) -> list[torch.Tensor]:
        """As `RewardFunction.per_token`; also fills `last_token_contributions` (each component's weighted term shaped
        on its own; they add up to the total's per-token rewards unless a total clip is active)."""
        plan, potentials = self._prefix_potentials(prompts, responses, references, **alignment)
        self.last_token_contributions = {k: plan.shape(v) for k, v in self._prefix_contributions.items()}
        return plan.shape(potentials)


def _named(component: Component, index: int, call):
    """Run one component, prefixing any user error with the component's 1-based index and name (an error about one
    response keeps naming that response)."""
    try:
        return call()
    except ResponseError as exc:
        raise ResponseError(f"reward component {index + 1} ({component.name}): {exc}", exc.index) from None
    except RewardkitError as exc:
        raise RewardkitError(f"reward component {index + 1} ({component.name}): {exc}") from None
