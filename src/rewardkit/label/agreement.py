"""Inter-annotator agreement: Krippendorff's alpha, Cohen's kappa and Fleiss' kappa, as pure functions.

- `krippendorff_alpha` takes units (items) each with the values its annotators gave, any number per unit (missing
  judgments are simply absent); units with fewer than two values carry no agreement information and are left out.
  Nominal or interval distance. 1 is perfect agreement, 0 agreement at chance, below 0 systematic disagreement.
- `cohen_kappa` takes two annotators' labels on the same items.
- `fleiss_kappa` takes, per item, how many annotators chose each category (the same number of annotators per item).
Every function returns NaN when the statistic is undefined (e.g. everyone used one single value: no variation to agree
on).

`agreement_units` turns a database's judgments into units as its task says (`rewardkit.label.tasks`): pairwise
choices (A/B/tie) and thumbs are nominal, ratings interval, and a ranking becomes one nominal unit per pair of
responses (which of the two is higher).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from itertools import combinations
from typing import Callable

from rewardkit.label.tasks import task_named

Distance = Callable[[object, object], float]


def _nominal(a, b) -> float:
    return 0.0 if a == b else 1.0


def _interval(a, b) -> float:
    return (float(a) - float(b)) ** 2


DISTANCES: dict[str, Distance] = {"nominal": _nominal, "interval": _interval}


def krippendorff_alpha(units: Sequence[Sequence], level: str = "nominal") -> float:
    """Krippendorff's alpha = 1 - D_observed / D_expected over the pairable values (units with two or more values).

    D_observed averages the distance between values within a unit (each unit's pairs weighted by 1 / (m_u - 1));
    D_expected averages it over all pairs of pairable values, whichever units they come from.
    """
    distance = DISTANCES[level]
    pairable = [list(values) for values in units if len(values) >= 2]
    pooled = [value for values in pairable for value in values]
    n = len(pooled)
    if n < 2:
        return math.nan
    observed = sum(sum(distance(a, b) for i, a in enumerate(values) for j, b in enumerate(values) if i != j)
                   / (len(values) - 1) for values in pairable) / n
    # Expected: group equal values so that the pooled pairs cost O(distinct^2), not O(n^2).
    counts: dict = defaultdict(int)
    for value in pooled:
        counts[value] += 1
    expected = sum(ca * cb * distance(a, b) for a, ca in counts.items() for b, cb in counts.items()) / (n * (n - 1))
    if expected == 0:
        return math.nan
    return 1.0 - observed / expected


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators over the same items: (p_observed - p_chance) / (1 - p_chance)."""
    if len(labels_a) != len(labels_b):
        raise ValueError(f"the two annotators must label the same items: {len(labels_a)} vs {len(labels_b)} labels")
    n = len(labels_a)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(labels_a, labels_b)) / n
    categories = set(labels_a) | set(labels_b)
    chance = sum(list(labels_a).count(c) * list(labels_b).count(c) for c in categories) / (n * n)
    if chance == 1:
        return math.nan
    return (observed - chance) / (1 - chance)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an items x categories table of how many annotators chose each category.

    Every item must have the same number of annotators (at least two).
    """
    if not counts:
        return math.nan
    raters = {sum(row) for row in counts}
    if len(raters) != 1 or next(iter(raters)) < 2:
        raise ValueError(f"every item needs the same number (>= 2) of annotators; got {sorted(raters)}")
    m = next(iter(raters))
    n_items = len(counts)
    per_item = [(sum(c * c for c in row) - m) / (m * (m - 1)) for row in counts]
    observed = sum(per_item) / n_items
    shares = [sum(row[k] for row in counts) / (n_items * m) for k in range(len(counts[0]))]
    chance = sum(p * p for p in shares)
    if chance == 1:
        return math.nan
    return (observed - chance) / (1 - chance)


# ------------------------------------------------------------------------------------------------- from judgments
def agreement_units(task: str, judgments) -> tuple[dict[tuple, dict[str, object]], str]:
    """{unit: {annotator: value}} and the alpha level for `judgments` (store.Judgment rows) of one task."""
    labelling = task_named(task)
    units: dict[tuple, dict[str, object]] = defaultdict(dict)
    for j in judgments:
        for unit, value in labelling.agreement_values(j.value):
            units[(j.item_id, *unit)][j.annotator] = value
    return dict(units), labelling.agreement_level


def agreement_report(task: str, judgments) -> dict:
    """Krippendorff's alpha over all items; Cohen's kappa for each pair of annotators on the items both judged;
    Fleiss' kappa when every multiply-judged item has the same number of judgments (not for ratings, whose alpha is
    interval)."""
    units, level = agreement_units(task, judgments)
    values = [list(by_annotator.values()) for by_annotator in units.values()]
    report = {"level": level, "units": sum(len(v) >= 2 for v in values),
              "krippendorff_alpha": krippendorff_alpha(values, level), "cohen_kappa": {}, "fleiss_kappa": None}
    annotators = sorted({a for by_annotator in units.values() for a in by_annotator})
    for a, b in combinations(annotators, 2):
        shared = [u for u in units.values() if a in u and b in u]
        if shared:
            report["cohen_kappa"][f"{a} / {b}"] = (len(shared), cohen_kappa([u[a] for u in shared],
                                                                            [u[b] for u in shared]))
    multi = [v for v in values if len(v) >= 2]
    if level == "nominal" and multi and len({len(v) for v in multi}) == 1:
        categories = sorted({repr(x) for v in multi for x in v})
        table = [[sum(repr(x) == c for x in v) for c in categories] for v in multi]
        report["fleiss_kappa"] = fleiss_kappa(table)
    return report
