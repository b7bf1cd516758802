"""What eval-rm does with each kind of feedback: how a kind's per-text rewards are laid out, summarized, compared and
shown. One view per kind in `rewardkit.kinds` (`view_of`), so eval-rm and its report look a kind's part up here
instead of branching on it; the kind itself (`rewardkit.kinds`) only describes the data and knows nothing of eval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rewardkit.eval import metrics, presentation
from rewardkit.kinds import FeedbackKind

if TYPE_CHECKING:
    from rewardkit.eval.scoring import ScoredDataset
    from rewardkit.pages import Block, Figure


class KindView:
    """eval-rm's part of one kind of feedback. Subclasses fill in each part. `cfg` is eval-rm's `EvalConfig` (its
    bootstrap, calibration and threshold options)."""

    def layout(self, values: np.ndarray, records: list) -> Any:
        """Per-text values (rewards or lengths, in the kind's `texts` order, along the last axis) laid out as this
        kind's metrics take them."""
        return values

    def all_values(self, laid_out: Any) -> np.ndarray:
        """Every text's value of a `layout`, as one array (in any order)."""
        return laid_out

    def disagreement(self, member_values: np.ndarray, records: list) -> np.ndarray | None:
        """Per record, how much an ensemble's members disagree ([K, texts] rewards), or None where not defined."""
        return None

    def targets(self, records: list) -> np.ndarray | None:
        """The human labels eval-rm compares single-response scores with (None when the order is the label)."""
        return None

    def summarize(self, data: ScoredDataset, model: int, temperature: float, cfg: Any) -> dict:
        raise NotImplementedError

    def compare(self, data: ScoredDataset, cfg: Any) -> dict:
        """Model 1 against model 2 on the same records (paired bootstrap)."""
        raise NotImplementedError

    def calibration_scores(self, scores: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(preferred, other) rewards for fitting a temperature, or None when this kind has no pairs to fit on."""
        return None

    # report
    columns: list[str]

    def cells(self, figures: dict) -> list[str]:
        raise NotImplementedError

    def figures(self, data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                n_bins: int) -> list[Figure]:
        raise NotImplementedError

    def sentences(self, name: str, entry: dict, model_names: list[str]) -> list[Block]:
        """Plain sentences for the report's summary (only pairs say more than their table)."""
        return []


class PairsView(KindView):
    columns = presentation.PAIR_COLUMNS

    def layout(self, values, records):
        return values[..., 0::2], values[..., 1::2]  # (chosen, rejected)

    def all_values(self, laid_out):
        return np.concatenate(laid_out)

    def disagreement(self, member_values, records):
        chosen, rejected = self.layout(member_values, records)
        return (chosen - rejected).std(axis=0)  # of the members' margins: what decides the pair

    def summarize(self, data, model, temperature, cfg):
        disagreement = data.disagreement[model] if data.disagreement else None
        return metrics.summarize_pairs(*data.scores[model], *data.lengths, temperature=temperature,
                                       n_bins=cfg.calibration_bins, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                                       disagreement=disagreement)

    def compare(self, data, cfg):
        return metrics.compare_pairs(*data.scores[0], *data.scores[1], n_resamples=cfg.bootstrap_resamples,
                                     seed=cfg.seed)

    def calibration_scores(self, scores):
        return scores

    def cells(self, figures):
        return presentation.pair_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        return presentation.pair_figures(data, entry, model_names, temperatures, n_bins)

    def sentences(self, name, entry, model_names):
        return presentation.pair_sentences(name, entry, model_names)


class RankingsView(KindView):
    columns = presentation.RANKING_COLUMNS

    def layout(self, values, records):
        bounds, start = [], 0
        for record in records:
            bounds.append((start, start + len(record.responses)))
            start += len(record.responses)
        return [values[..., a:b] for a, b in bounds]  # one array per group, best first

    def all_values(self, laid_out):
        return np.concatenate(laid_out) if laid_out else np.empty(0)

    def summarize(self, data, model, temperature, cfg):
        return metrics.summarize_rankings(data.scores[model], data.lengths, n_resamples=cfg.bootstrap_resamples,
                                          seed=cfg.seed)

    def compare(self, data, cfg):
        return metrics.compare_rankings(*data.scores, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def cells(self, figures):
        return presentation.ranking_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        return presentation.ranking_figures(data, entry, model_names, temperatures, n_bins)


class RatingsView(KindView):
    columns = presentation.RATING_COLUMNS

    def targets(self, records):
        return np.array([r.score for r in records], dtype=np.float64)

    def summarize(self, data, model, temperature, cfg):
        return metrics.summarize_ratings(data.scores[model], data.targets, data.lengths,
                                         n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def compare(self, data, cfg):
        return metrics.compare_ratings(*data.scores, data.targets, n_resamples=cfg.bootstrap_resamples,
                                       seed=cfg.seed)

    def cells(self, figures):
        return presentation.rating_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        return presentation.rating_figures(data, entry, model_names, temperatures, n_bins)


class BinaryView(KindView):
    columns = presentation.BINARY_COLUMNS

    def targets(self, records):
        return np.array([r.label for r in records], dtype=np.float64)

    def summarize(self, data, model, temperature, cfg):
        return metrics.summarize_binary(data.scores[model], data.targets, data.lengths,
                                        threshold=cfg.binary_threshold, n_resamples=cfg.bootstrap_resamples,
                                        seed=cfg.seed)

    def compare(self, data, cfg):
        return metrics.compare_binary(*data.scores, data.targets, threshold=cfg.binary_threshold,
                                      n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def cells(self, figures):
        return presentation.binary_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        return presentation.binary_figures(data, entry, model_names, temperatures, n_bins)


VIEWS: dict[str, KindView] = {"pairs": PairsView(), "rankings": RankingsView(), "ratings": RatingsView(),
                              "binary": BinaryView()}


def view_of(kind: FeedbackKind) -> KindView:
    """eval-rm's view of `kind`."""
    return VIEWS[kind.name]
