"""Evaluation metrics for reward models: pure numpy functions over scores, no model and no torch import.

Every function accepts lists, numpy arrays or torch tensors (anything `numpy.asarray` understands after `.detach()`),
returns plain Python floats (or small dataclasses of floats and arrays), and is unit-tested against hand-computed
values. Conventions shared by all of them:

- Ties count as half. Equal rewards for chosen and rejected earn 0.5 credit, in accuracy, in the length baseline
  (equal lengths), in top-1 accuracy (a best response tied with k-1 others earns 1/k) and in ROC AUC.
- Length is the response's length in characters (no tokenizer needed, comparable across models).
- Correlations are NaN when one side is constant (undefined); callers report them as null.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardkit import kinds
from rewardkit.runs import json_ready


def as_float_array(values: Any) -> np.ndarray:
    """A 1-D float64 numpy array from a list, numpy array or torch tensor (detached, moved to CPU)."""
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _paired(chosen: Any, rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    chosen, rejected = as_float_array(chosen), as_float_array(rejected)
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected must have the same length, got {chosen.size} and {rejected.size}")
    return chosen, rejected


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def sigmoid(x: Any) -> np.ndarray:
    """Numerically stable logistic function."""
    x = as_float_array(x)
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


# ----------------------------------------------------------------------------------------------------------- pairwise

def pair_outcomes(chosen_scores: Any, rejected_scores: Any) -> np.ndarray:
    """Per-pair credit: 1 if chosen scores higher, 0.5 on an exact tie, 0 otherwise."""
    return kinds.pair_outcomes(*_paired(chosen_scores, rejected_scores))


def pairwise_accuracy(chosen_scores: Any, rejected_scores: Any) -> float:
    """Fraction of pairs where the chosen response scores higher; ties (equal scores) count as half.

    A model that gives every response the same score gets 0.5, not 0 or 1. NaN for zero pairs.
    """
    return _mean(pair_outcomes(chosen_scores, rejected_scores))


def mean_margin(chosen_scores: Any, rejected_scores: Any) -> float:
    """Mean of r_chosen − r_rejected (in the model's reward units)."""
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    return _mean(chosen - rejected)


def response_lengths(texts: Sequence[str]) -> np.ndarray:
    """Length of each response in characters."""
    return np.fromiter((len(t) for t in texts), dtype=np.float64, count=len(texts))


def length_baseline_accuracy(chosen_lengths: Any, rejected_lengths: Any) -> float:
    """Accuracy of "the longer response wins" on the same pairs (equal lengths count half).

    It is pairwise accuracy with length as the score; a reward model should beat it.
    """
    return pairwise_accuracy(chosen_lengths, rejected_lengths)


def length_debiased_mask(chosen_lengths: Any, rejected_lengths: Any) -> np.ndarray:
    """Pairs where "longer wins" is wrong: the chosen response is strictly shorter than the rejected one.

    Equal-length pairs are excluded: the baseline is neither right nor wrong there (it earns its half by a tie).
    """
    chosen, rejected = _paired(chosen_lengths, rejected_lengths)
    return chosen < rejected


def length_debiased_accuracy(chosen_scores: Any, rejected_scores: Any,
                             chosen_lengths: Any, rejected_lengths: Any) -> float:
    """Accuracy on the pairs where the length baseline is wrong (chosen strictly shorter than rejected).

    A model that only rewards length scores 0 here, one that ignores length scores about its plain accuracy. NaN if
    there is no such pair. Ties in the scores count as half, as everywhere.
    """
    mask = length_debiased_mask(chosen_lengths, rejected_lengths)
    return _mean(pair_outcomes(chosen_scores, rejected_scores)[mask])


def longer_preferred_rate(chosen_scores: Any, rejected_scores: Any, chosen_lengths: Any,
                          rejected_lengths: Any) -> float:
    """How often the model gives the longer response of a pair the higher reward (ties half; equal lengths skipped).

    Compare with the length baseline, which is how often people preferred the longer one.
    """
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    chosen_lengths, rejected_lengths = _paired(chosen_lengths, rejected_lengths)
    chosen_longer = chosen_lengths > rejected_lengths
    unequal = chosen_lengths != rejected_lengths
    longer = np.where(chosen_longer, chosen, rejected)[unequal]
    shorter = np.where(chosen_longer, rejected, chosen)[unequal]
    return pairwise_accuracy(longer, shorter)


# ------------------------------------------------------------------------------------------------------- correlations

def average_ranks(values: Any) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (as scipy.stats.rankdata's 'average')."""
    values = as_float_array(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values; every member of a run gets the run's mean rank.
    run_starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    run_ends = np.r_[run_starts[1:], values.size]
    run_ranks = (run_starts + run_ends + 1) / 2.0  # mean of the 1-based ranks start+1..end
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(run_ranks, run_ends - run_starts)
    return ranks


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation; NaN when fewer than 2 points or either side is constant."""
    x, y = _paired(x, y)
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denominator) if denominator > 0 else float("nan")


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (Pearson on average ranks, so ties are handled as scipy does)."""
    x, y = _paired(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def length_spearman(scores: Any, lengths: Any) -> float:
    """Spearman correlation between reward and response length in characters.

    Spearman rather than Pearson because lengths are heavy-tailed (a few very long answers would dominate Pearson) and
    the question is monotone: do longer answers get higher rewards? Callers pool chosen and rejected responses.
    """
    return spearman(scores, lengths)


# -------------------------------------------------------------------------------------------------------- calibration

def preference_probabilities(chosen_scores: Any, rejected_scores: Any, temperature: float = 1.0) -> np.ndarray:
    """p = σ((r_chosen − r_rejected) / T): the model's probability that the chosen response is preferred."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    return sigmoid((chosen - rejected) / temperature)


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Binned calibration data over symmetrized pairs (see `reliability_diagram`).

    `bin_edges` has n_bins+1 entries; the other arrays have one entry per bin. Empty bins have count 0 and NaN
    confidence/frequency.
    """

    bin_edges: np.ndarray
    counts: np.ndarray           # points per bin (2 per pair in total)
    mean_confidence: np.ndarray  # mean predicted probability in the bin
    frequency: np.ndarray        # observed frequency of the event in the bin

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of |frequency − confidence| over the bins."""
        filled = self.counts > 0
        total = self.counts.sum()
        if total == 0:
            return float("nan")
        gaps = np.abs(self.frequency[filled] - self.mean_confidence[filled])
        return float((self.counts[filled] * gaps).sum() / total)


def reliability_diagram(chosen_scores: Any, rejected_scores: Any, temperature: float = 1.0,
                        n_bins: int = 10) -> ReliabilityDiagram:
    """Calibration of p = σ((r_c − r_r)/T) with equal-width bins on [0, 1], on symmetrized pairs.

    In a preference pair the event "chosen is preferred" is always true, so the raw (p, 1) points cannot show
    over-confidence. The standard fix is to present each pair in both orders, as a random presentation order would:
    every pair contributes (p, 1) for "chosen first" and (1 − p, 0) for "rejected first". The diagram is then
    point-symmetric around (0.5, 0.5), and the ECE equals the usual top-label ECE of the model's preferred side
    (confidence max(p, 1 − p), correct when it picks the chosen one). A tie (p = 0.5) is perfectly calibrated.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    p = preference_probabilities(chosen_scores, rejected_scores, temperature)
    confidence = np.concatenate([p, 1.0 - p])
    event = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)  # right edge 1.0 goes into the last bin
    counts = np.bincount(bins, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        frequency = np.bincount(bins, weights=event, minlength=n_bins) / counts
    return ReliabilityDiagram(np.linspace(0.0, 1.0, n_bins + 1), counts, mean_confidence, frequency)


def expected_calibration_error(chosen_scores: Any, rejected_scores: Any, temperature: float = 1.0,
                               n_bins: int = 10) -> float:
    """ECE of σ((r_c − r_r)/T) over symmetrized pairs with `n_bins` equal-width bins (see `reliability_diagram`)."""
    return reliability_diagram(chosen_scores, rejected_scores, temperature, n_bins).ece


def fit_temperature(chosen_scores: Any, rejected_scores: Any, max_ratio: float = 1e4) -> float:
    """The temperature T > 0 minimizing the preference NLL, i.e. the one that calibrates σ((r_c − r_r)/T).

    The NLL is convex in β = 1/T, so its derivative −mean(m·σ(−β m)) is increasing in β and bisection on its sign
    (over log β) finds the minimum exactly. T is kept within [s/max_ratio, s·max_ratio] where s = mean |margin|:
    perfectly separated pairs would push T to 0, and a model no better than chance would push it to infinity (all
    probabilities 0.5); both end at the nearest bound.
    """
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    margins = chosen - rejected
    scale = float(np.abs(margins).mean()) if margins.size else 0.0
    if scale == 0.0:
        return 1.0  # no margins (or all ties): every temperature gives p = 0.5, keep the identity

    def slope(log_beta: float) -> float:
        return float(-(margins * sigmoid(-np.exp(log_beta) * margins)).mean())

    lo, hi = np.log(1.0 / (scale * max_ratio)), np.log(max_ratio / scale)
    if slope(lo) >= 0:
        return float(np.exp(-lo))
    if slope(hi) <= 0:
        return float(np.exp(-hi))
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0:
            lo = mid
        else:
            hi = mid
    return float(np.exp(-0.5 * (lo + hi)))


# ------------------------------------------------------------------------------------------------------------ rankings

def kendall_tau_b(x: Any, y: Any) -> float:
    """Kendall's τ-b (as scipy.stats.kendalltau's default): ties in either variable shrink the denominator.

    NaN when fewer than 2 items or one side is entirely tied.
    """
    x, y = _paired(x, y)
    upper = np.triu_indices(x.size, k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    denominator = np.sqrt((sx * sx).sum() * (sy * sy).sum())
    return float((sx * sy).sum() / denominator) if denominator > 0 else float("nan")


def ranking_top1_credit(scores_best_first: Any) -> float:
    """1 if the human-best response (index 0) gets the highest reward; 1/k if it shares the top with k−1 others."""
    scores = as_float_array(scores_best_first)
    top = scores.max()
    return float(scores[0] == top) / float((scores == top).sum())


def ranking_kendall_tau(scores_best_first: Any) -> float:
    """τ-b between the human ranking (index 0 is best) and the rewards of one group.

    A group where every response gets the same reward carries no ordering information and counts as τ = 0 (the same
    "ties are half" convention as accuracy) rather than being dropped.
    """
    scores = as_float_array(scores_best_first)
    human_quality = -np.arange(scores.size, dtype=np.float64)  # best first → highest quality first
    tau = kendall_tau_b(scores, human_quality)
    return 0.0 if np.isnan(tau) else tau


# ---------------------------------------------------------------------------------------------------- binary feedback

def binary_predictions(scores: Any, threshold: float = 0.0) -> np.ndarray:
    """Thumbs-up predictions: reward above `threshold` on the logit scale (σ(r) > 0.5 for the default 0)."""
    return (as_float_array(scores) > threshold).astype(np.float64)


def binary_correct(scores: Any, labels: Any, threshold: float = 0.0) -> np.ndarray:
    """Per response, 1.0 where its prediction (reward > threshold) matches its 0/1 label, else 0.0: their mean is
    the accuracy."""
    predictions, labels = _paired(binary_predictions(scores, threshold), labels)
    return (predictions == labels).astype(np.float64)


def binary_f1(scores: Any, labels: Any, threshold: float = 0.0) -> float:
    """F1 of the thumbs-up class (label 1) at the threshold: 2·TP / (2·TP + FP + FN); 0 if there is no positive."""
    predictions, labels = _paired(binary_predictions(scores, threshold), labels)
    tp = float((predictions * labels).sum())
    fp_fn = float((predictions != labels).sum())
    return 2 * tp / (2 * tp + fp_fn) if tp + fp_fn > 0 else 0.0


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: P(reward of a random positive > of a random negative), ties counted half.

    Computed with the Mann–Whitney rank-sum on average ranks (ties get shared ranks, which is the half credit).
    NaN when only one class is present. Threshold-free, so it is meaningful for pairwise-trained models whose reward
    offset is arbitrary.
    """
    scores, labels = _paired(scores, labels)
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = average_ranks(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) from (0, 0) to (1, 1), one point per distinct score (cutting
    between tied scores would depend on their order), so the area under the curve is `roc_auc`."""
    scores, labels = _paired(scores, labels)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True] if len(ranked) else np.zeros(0, dtype=bool)
    positives = np.cumsum(labels[order] == 1)[last_of_tie] / max(int((labels == 1).sum()), 1)
    negatives = np.cumsum(labels[order] == 0)[last_of_tie] / max(int((labels == 0).sum()), 1)
    return np.r_[0.0, negatives], np.r_[0.0, positives]


def pairwise_concordance(scores: Any, gold: Any) -> float:
    """Pairwise accuracy over every pair of items whose gold values differ: the fraction the scores order the same
    way as the gold, a tie in the scores counting half (as in `pairwise_accuracy`). With 0/1 gold it is `roc_auc`.

    It judges n items on all n(n−1)/2 pairs instead of n/2 disjoint ones, so a comparison of two models on the same
    items is far less noisy. NaN when no two gold values differ. It builds n × n matrices: for up to a few thousand
    items.
    """
    scores, gold = _paired(scores, gold)
    gold_higher = gold[:, None] > gold[None, :]  # each decided pair once, oriented so the gold prefers the row item
    decided = int(gold_higher.sum())
    if decided == 0:
        return float("nan")
    difference = (scores[:, None] - scores[None, :])[gold_higher]
    return float(((difference > 0).sum() + 0.5 * (difference == 0).sum()) / decided)


# ---------------------------------------------------------------------------------------------- intervals, comparison

def _resampled_indices(n: int, n_resamples: int, seed: int):
    """Chunks of bootstrap index rows (with replacement), seeded: 10,000 items × 1,000 resamples stay small."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_resamples - start), n))


def _percentile_interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    estimates = estimates[np.isfinite(estimates)]
    if estimates.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    lo, hi = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(values: Any, confidence: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-item values (per-pair outcomes, per-group τ, ...).

    Items are resampled with replacement `n_resamples` times from a seeded generator (same seed → same interval).
    (NaN, NaN) for no items.
    """
    values = as_float_array(values)
    if values.size == 0:
        return float("nan"), float("nan")
    means = [values[rows].mean(axis=1) for rows in _resampled_indices(values.size, n_resamples, seed)]
    return _percentile_interval(np.concatenate(means), confidence)


def bootstrap_statistic_ci(statistic: Callable[[np.ndarray], float], n: int, confidence: float = 0.95,
                           n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for any statistic of n items; `statistic` receives the resampled item indices.

    For statistics that are not means (correlations, ROC AUC). Resamples where the statistic is undefined (NaN, e.g.
    a constant resample) are left out. With the same seed it draws the same resamples as `bootstrap_ci`.
    """
    if n == 0:
        return float("nan"), float("nan")
    estimates = [statistic(row) for rows in _resampled_indices(n, n_resamples, seed) for row in rows]
    return _percentile_interval(np.asarray(estimates, dtype=np.float64), confidence)


@dataclass(frozen=True)
class PairedDifference:
    """A metric of model A minus model B on the same items, with a paired bootstrap interval."""

    difference: float
    ci95: tuple[float, float]

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or below 0 (the difference is unlikely to be noise)."""
        lo, hi = self.ci95
        return bool(lo > 0 or hi < 0)

    def as_dict(self) -> dict[str, Any]:
        return {"difference": self.difference, "ci95": list(self.ci95), "excludes_zero": self.excludes_zero}


def paired_mean_difference(values_a: Any, values_b: Any, n_resamples: int = 1000, seed: int = 0) -> PairedDifference:
    """Compare two models' per-item values (e.g. per-pair outcomes from `pair_outcomes`) on the same items.

    The bootstrap resamples items, not models: both models are judged on the same resampled items, so the interval
    reflects only where they disagree (much tighter than two independent intervals).
    """
    a, b = _paired(values_a, values_b)
    difference = a - b
    return PairedDifference(_mean(difference), bootstrap_ci(difference, n_resamples=n_resamples, seed=seed))


def paired_statistic_difference(statistic_a: Callable[[np.ndarray], float],
                                statistic_b: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000,
                                seed: int = 0) -> PairedDifference:
    """Paired bootstrap of statistic_a − statistic_b, each a function of the (resampled) item indices."""
    def difference(indices: np.ndarray) -> float:
        return statistic_a(indices) - statistic_b(indices)

    everything = np.arange(n)
    return PairedDifference(difference(everything) if n else float("nan"),
                            bootstrap_statistic_ci(difference, n, n_resamples=n_resamples, seed=seed))


# ---------------------------------------------------------------------------------------------------------- summaries
# One function per kind of feedback gathers every figure `eval-rm` reports for a set of records, as JSON-ready values
# (NaN → None); one `compare_*` per kind gives the paired differences of two models on the same records.

def disagreement_figures(disagreement: Any, outcomes: Any) -> dict[str, Any]:
    """Whether an ensemble's disagreement on an item (the std over members) flags the items it gets wrong.

    `outcomes` are per-item credits (1 right, 0 wrong, 0.5 tie). `disagreement_auc` is the chance that a wrong item
    shows more disagreement than a right one (ties half; 0.5: disagreement tells nothing). `accuracy_agreed` and
    `accuracy_disagreed` are the accuracies on the half of the items with the least and with the most disagreement
    (an odd middle item goes to the second half).
    """
    disagreement, outcomes = _paired(disagreement, outcomes)
    decided = outcomes != 0.5
    order = np.argsort(disagreement, kind="stable")
    agreed, disagreed = order[:order.size // 2], order[order.size // 2:]
    return {"mean_disagreement": _mean(disagreement),
            "disagreement_auc": roc_auc(disagreement[decided], (outcomes[decided] == 0).astype(np.float64)),
            "accuracy_agreed": _mean(outcomes[agreed]), "accuracy_disagreed": _mean(outcomes[disagreed])}


def summarize_pairs(chosen_scores: Any, rejected_scores: Any, chosen_lengths: Any, rejected_lengths: Any,
                    temperature: float = 1.0, n_bins: int = 10, n_resamples: int = 1000,
                    seed: int = 0, disagreement: Any = None) -> dict[str, Any]:
    """Pairwise figures. `temperature` is the model's current calibration temperature (ECE is of the model as it
    will be used); `temperature` in the result is the one fitted on these pairs, `calibrated_ece` the ECE with it
    (in-sample, so optimistic). For an ensemble, `disagreement` (per pair, the std of the members' reward margins)
    adds `disagreement_figures`."""
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    chosen_lengths, rejected_lengths = _paired(chosen_lengths, rejected_lengths)
    outcomes = pair_outcomes(chosen, rejected)
    debiased = length_debiased_mask(chosen_lengths, rejected_lengths)
    fitted = fit_temperature(chosen, rejected)
    return json_ready({
        "n": int(chosen.size),
        "accuracy": _mean(outcomes),
        "ci95": list(bootstrap_ci(outcomes, n_resamples=n_resamples, seed=seed)),
        "length_baseline": length_baseline_accuracy(chosen_lengths, rejected_lengths),
        "debiased_accuracy": length_debiased_accuracy(chosen, rejected, chosen_lengths, rejected_lengths),
        "debiased_n": int(debiased.sum()),
        "prefers_longer": longer_preferred_rate(chosen, rejected, chosen_lengths, rejected_lengths),
        "length_correlation": length_spearman(np.concatenate([chosen, rejected]),
                                                 np.concatenate([chosen_lengths, rejected_lengths])),
        "ece": expected_calibration_error(chosen, rejected, temperature, n_bins),
        "mean_margin": mean_margin(chosen, rejected),
        "temperature": fitted,
        "calibrated_ece": expected_calibration_error(chosen, rejected, fitted, n_bins),
        **(disagreement_figures(disagreement, outcomes) if disagreement is not None else {}),
    })


def compare_pairs(chosen_a: Any, rejected_a: Any, chosen_b: Any, rejected_b: Any, n_resamples: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """Accuracy of model A minus model B on the same pairs, with its paired bootstrap interval."""
    difference = paired_mean_difference(pair_outcomes(chosen_a, rejected_a), pair_outcomes(chosen_b, rejected_b),
                                        n_resamples=n_resamples, seed=seed)
    return json_ready({"accuracy": difference.as_dict()})


def summarize_rankings(groups: Sequence[Any], group_lengths: Sequence[Any], n_resamples: int = 1000,
                       seed: int = 0) -> dict[str, Any]:
    """Ranking figures over groups of rewards listed best first (groups of fewer than 2 responses are skipped).

    `chance_top1` is what picking at random would get (mean 1/k); the length baselines rank by length instead of
    reward.
    """
    kept = [(as_float_array(g), as_float_array(lengths)) for g, lengths in zip(groups, group_lengths)
            if len(g) >= 2]
    top1 = np.array([ranking_top1_credit(g) for g, _ in kept])
    taus = np.array([ranking_kendall_tau(g) for g, _ in kept])
    scores = np.concatenate([g for g, _ in kept]) if kept else np.empty(0)
    lengths = np.concatenate([lengths for _, lengths in kept]) if kept else np.empty(0)
    return json_ready({
        "n": len(kept),
        "n_responses": int(scores.size),
        "top1_accuracy": _mean(top1),
        "ci95": list(bootstrap_ci(top1, n_resamples=n_resamples, seed=seed)),
        "chance_top1": _mean(np.array([1.0 / g.size for g, _ in kept])),
        "length_baseline_top1": _mean(np.array([ranking_top1_credit(lengths) for _, lengths in kept])),
        "mean_kendall_tau": _mean(taus),
        "kendall_tau_ci95": list(bootstrap_ci(taus, n_resamples=n_resamples, seed=seed)),
        "length_baseline_kendall_tau": _mean(np.array([ranking_kendall_tau(lengths) for _, lengths in kept])),
        "length_correlation": length_spearman(scores, lengths),
    })


def compare_rankings(groups_a: Sequence[Any], groups_b: Sequence[Any], n_resamples: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Top-1 accuracy and mean Kendall τ of model A minus model B on the same groups (paired over groups)."""
    kept = [(as_float_array(a), as_float_array(b)) for a, b in zip(groups_a, groups_b) if len(a) >= 2]
    top1 = [np.array([ranking_top1_credit(g[side]) for g in kept]) for side in (0, 1)]
    taus = [np.array([ranking_kendall_tau(g[side]) for g in kept]) for side in (0, 1)]
    return json_ready({
        "top1_accuracy": paired_mean_difference(*top1, n_resamples=n_resamples, seed=seed).as_dict(),
        "mean_kendall_tau": paired_mean_difference(*taus, n_resamples=n_resamples, seed=seed).as_dict(),
    })


def summarize_ratings(scores: Any, ratings: Any, lengths: Any, n_resamples: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Agreement of rewards with absolute ratings; `length_baseline_spearman` is how well length alone agrees."""
    scores, ratings = _paired(scores, ratings)
    return json_ready({
        "n": int(scores.size),
        "pearson": pearson(scores, ratings),
        "spearman": spearman(scores, ratings),
        "ci95": list(bootstrap_statistic_ci(lambda idx: spearman(scores[idx], ratings[idx]), scores.size,
                                            n_resamples=n_resamples, seed=seed)),
        "length_baseline_spearman": spearman(lengths, ratings),
        "length_correlation": length_spearman(scores, lengths),
    })


def compare_ratings(scores_a: Any, scores_b: Any, ratings: Any, n_resamples: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
    """Spearman correlation with the ratings, model A minus model B, paired bootstrap over rated responses."""
    scores_a, scores_b, ratings = as_float_array(scores_a), as_float_array(scores_b), as_float_array(ratings)
    difference = paired_statistic_difference(lambda idx: spearman(scores_a[idx], ratings[idx]),
                                             lambda idx: spearman(scores_b[idx], ratings[idx]), ratings.size,
                                             n_resamples=n_resamples, seed=seed)
    return json_ready({"spearman": difference.as_dict()})


def summarize_binary(scores: Any, labels: Any, lengths: Any, threshold: float = 0.0, n_resamples: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Thumbs up/down figures: accuracy and F1 at `threshold` on the reward (σ(r) > 0.5 for 0), and ROC AUC, which
    needs no threshold; `length_baseline_auc` is the AUC of length alone."""
    scores, labels = _paired(scores, labels)
    correct = binary_correct(scores, labels, threshold)
    return json_ready({
        "n": int(scores.size),
        "positive_rate": _mean(labels),
        "threshold": float(threshold),
        "accuracy": _mean(correct),
        "ci95": list(bootstrap_ci(correct, n_resamples=n_resamples, seed=seed)),
        "f1": binary_f1(scores, labels, threshold),
        "roc_auc": roc_auc(scores, labels),
        "roc_auc_ci95": list(bootstrap_statistic_ci(lambda idx: roc_auc(scores[idx], labels[idx]), scores.size,
                                                    n_resamples=n_resamples, seed=seed)),
        "length_baseline_auc": roc_auc(lengths, labels),
        "length_correlation": length_spearman(scores, lengths),
    })


def compare_binary(scores_a: Any, scores_b: Any, labels: Any, threshold: float = 0.0, n_resamples: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """Accuracy and ROC AUC of model A minus model B on the same responses (paired bootstrap)."""
    scores_a, scores_b, labels = as_float_array(scores_a), as_float_array(scores_b), as_float_array(labels)
    correct = [binary_correct(s, labels, threshold) for s in (scores_a, scores_b)]
    auc = paired_statistic_difference(lambda idx: roc_auc(scores_a[idx], labels[idx]),
                                      lambda idx: roc_auc(scores_b[idx], labels[idx]), labels.size,
                                      n_resamples=n_resamples, seed=seed)
    return json_ready({
        "accuracy": paired_mean_difference(*correct, n_resamples=n_resamples, seed=seed).as_dict(),
        "roc_auc": auc.as_dict(),
    })
