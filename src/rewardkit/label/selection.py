"""Active selection: in which order items are offered for labelling, from what current reward models think of them.

A strategy is a pure function `strategy(scores) -> priorities`: `scores` holds one array per item, shaped
[models, responses] (the reward each model gives each of the item's responses), and the result one number per item;
the highest priority is labelled first. Built in:
- `margin`: the items a model is least sure about first: the smallest |reward difference| between two of the item's
  responses (for an item with one response, its distance to 0, where a thumbs model flips), averaged over models.
- `disagreement`: the items an ensemble disagrees on most first: the spread (standard deviation) across models of the
  reward differences between the item's responses (of the reward itself for one response). Needs two or more models.
- `bald`: the items whose label would tell most about which model is right first (BALD, Houlsby et al. 2011): with
  each model's Bradley-Terry probability p = sigmoid(difference), the entropy of the mean p minus the mean entropy.
  Unlike `margin` it skips items that every model calls a coin flip (a near-tie that a label cannot settle), and
  unlike `disagreement` it does not favour items whose differences are merely large. Needs two or more models.
Any `package.module:function` with the same signature works too (`--order`).

`selection_order` turns priorities into a queue, optionally mixing in a uniformly random sample of the items: a
fraction `random_fraction` of them, drawn from the whole pool before the active order is applied (so that they are an
unbiased sample, usable for evaluation), spread evenly through the queue and marked `random`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from itertools import combinations

import numpy as np

from rewardkit.errors import RewardkitError

Strategy = Callable[[Sequence[np.ndarray]], np.ndarray]


def _differences(scores: np.ndarray) -> np.ndarray:
    """[models, pairs] reward differences between every two responses; for one response, the reward itself."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"an item's scores must be shaped [models, responses], got {scores.shape}")
    if scores.shape[1] == 1:
        return scores
    pairs = list(combinations(range(scores.shape[1]), 2))
    return np.stack([scores[:, i] - scores[:, j] for i, j in pairs], axis=1)


def margin_priority(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Minus the smallest |mean reward difference| of each item: near-ties come first."""
    return np.array([-float(np.abs(_differences(s).mean(axis=0)).min()) for s in scores])


def _ensemble_differences(scores: np.ndarray, order: str) -> np.ndarray:
    """`_differences` of an item scored by two or more models, which the ensemble orders need."""
    differences = _differences(scores)
    if differences.shape[0] < 2:
        raise RewardkitError(f"--order {order} needs two or more reward models (an ensemble)")
    return differences


def disagreement_priority(scores: Sequence[np.ndarray]) -> np.ndarray:
    """The largest standard deviation across models of an item's reward differences: contested items come first."""
    priorities = []
    for s in scores:
        differences = _ensemble_differences(s, "disagreement")
        priorities.append(float(differences.std(axis=0).max()))
    return np.array(priorities)


def _entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in nats (0 at p = 0 or 1)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def bald_priority(scores: Sequence[np.ndarray]) -> np.ndarray:
    """The largest mutual information, over an item's response pairs, between its label and the model: H(mean p) -
    mean H(p), with p = sigmoid(reward difference) per model (for one response, sigmoid(reward))."""
    priorities = []
    for s in scores:
        differences = _ensemble_differences(s, "bald")
        p = 1.0 / (1.0 + np.exp(-differences))
        priorities.append(float((_entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0)).max()))
    return np.array(priorities)


STRATEGIES: dict[str, Strategy] = {"margin": margin_priority, "disagreement": disagreement_priority,
                                   "bald": bald_priority}
ORDERS = ("file", "random", *STRATEGIES)


def selection_order(priorities: Sequence[float] | None, n: int, random_fraction: float = 0.0,
                    seed: int = 0) -> list[tuple[int, str]]:
    """The queue as (item index, how it was chosen), first to label first.

    `priorities` None keeps the input order ("file"), unless `random_fraction` is 1 ("random"). Otherwise items go
    highest priority first (ties in input order), and round(random_fraction * n) items, drawn uniformly at random
    from all n with `seed`, take evenly spaced places in the queue (the first at position 0 when any).
    """
    if not 0.0 <= random_fraction <= 1.0:
        raise RewardkitError(f"--random-fraction must be between 0 and 1, got {random_fraction}")
    if priorities is not None and len(priorities) != n:
        raise ValueError(f"{len(priorities)} priorities for {n} items")
    if priorities is not None and any(math.isnan(p) for p in priorities):
        raise RewardkitError("the selection strategy returned NaN priorities")
    rng = random.Random(seed)
    n_random = round(random_fraction * n)
    drawn = rng.sample(range(n), n_random)
    chosen = set(drawn)
    if priorities is None:
        rest = [i for i in range(n) if i not in chosen]
        how = "file"
    else:
        rest = sorted((i for i in range(n) if i not in chosen), key=lambda i: (-priorities[i], i))
        how = "active"
    queue: list[tuple[int, str]] = []
    drawn_iter, rest_iter = iter(drawn), iter(rest)
    for position in range(n):
        # position k gets a random item when the running quota ceil((k + 1) * f) steps up
        take_random = -(-(position + 1) * n_random // n) > -(-position * n_random // n)
        queue.append((next(drawn_iter), "random") if take_random else (next(rest_iter), how))
    return queue


def resolve_strategy(order: str) -> Strategy | None:
    """The priority function an --order names: a built-in, or package.module:function; None for file and random."""
    if order in ("file", "random"):
        return None
    if order in STRATEGIES:
        return STRATEGIES[order]
    if ":" in order:
        from rewardkit.rewards.custom import import_callable

        return import_callable(order)
    raise RewardkitError(f"--order must be one of {', '.join(ORDERS)} or package.module:function, got {order!r}")
