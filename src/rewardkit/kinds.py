"""The kinds of feedback, one object each: everything that differs between pairs, rankings, ratings and binary.

A kind says how its records become texts to score, which training task (loss and validation metric) it trains with,
how eval-rm summarizes and compares its scores, and how the report shows them (table columns, figures, sentences).
`train-rm`, `eval-rm` and the report look a kind up here (`kind_named`, `kind_of`) instead of branching on it, so a
new kind of feedback is one new class in this file plus the functions it points to in each layer. Labelling's part
(the form, the judgment values, the export) is `rewardkit.label.tasks`, a table keyed by these kinds: it is a web app
on top of everything, so it points here and this module does not point up into it.

Each method imports the layer it delegates to when called: reading data or `rewardkit --help` must not import torch
(the training task) or matplotlib (the report), and the layers below never import this module back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.data.types import BinaryFeedback, FeedbackRecord, PreferencePair, RankedGroup, RatedResponse
from rewardkit.errors import RewardkitError

if TYPE_CHECKING:
    import numpy as np

    from rewardkit.eval.command import EvalConfig
    from rewardkit.eval.scoring import ScoredDataset
    from rewardkit.models.config import TrainRMConfig
    from rewardkit.models.tasks import Task
    from rewardkit.pages import Block, Figure


class FeedbackKind:
    """What one kind of feedback means to every command. Subclasses fill in each part."""

    name: ClassVar[str]  # the one name used everywhere: --feedback, eval-rm's JSON, the report
    aliases: ClassVar[tuple[str, ...]] = ()  # older or natural spellings accepted on input
    record_type: ClassVar[type]
    unit: ClassVar[str]  # what one example is called in progress and summaries
    title: ClassVar[str]  # the heading of this kind's table in reports
    # other --feedback values under which train-rm reads this kind's files (and so splits what it read, not these)
    train_rm_reads_as: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------------------------------------ data
    def load(self, paths: Any, cfg: TrainRMConfig) -> list:
        """Records of this kind from train-rm's data paths, with its column mapping and bad-record policies."""
        from rewardkit.data import load_records
        from rewardkit.data.fields import parse_column_mapping

        return load_records(paths, kind=self.name, columns=parse_column_mapping(cfg.columns),
                            on_bad_record=cfg.on_bad_record, on_identical=cfg.on_identical)

    def texts(self, record: FeedbackRecord) -> tuple[list[str], float | None]:
        """The responses a record asks to score, in the order its loss expects, and its numeric target."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- training
    def task(self, cfg: TrainRMConfig, train_records: list) -> Task:
        """The loss and validation accuracy train-rm optimizes for this kind."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- eval-rm
    def arrange(self, values: np.ndarray, records: list) -> Any:
        """Per-text values (rewards or lengths, in `texts` order, along the last axis) laid out as this kind's metrics
        take them."""
        return values

    def flat(self, arranged: Any) -> np.ndarray:
        """Every text's value of an `arrange`d layout, as one array (in any order)."""
        return arranged

    def disagreement(self, member_values: np.ndarray, records: list) -> np.ndarray | None:
        """Per record, how much an ensemble's members disagree ([K, texts] rewards), or None where not defined."""
        return None

    def targets(self, records: list) -> np.ndarray | None:
        """The human labels eval-rm compares single-response scores with (None when the order is the label)."""
        return None

    def summarize(self, data: ScoredDataset, model: int, temperature: float, cfg: EvalConfig) -> dict:
        raise NotImplementedError

    def compare(self, data: ScoredDataset, cfg: EvalConfig) -> dict:
        """Model 1 against model 2 on the same records (paired bootstrap)."""
        raise NotImplementedError

    def calibration_scores(self, scores: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(preferred, other) rewards for fitting a temperature, or None when this kind has no pairs to fit on."""
        return None

    # ----------------------------------------------------------------------------------------------- report
    def columns(self) -> list[str]:
        raise NotImplementedError

    def cells(self, figures: dict) -> list[str]:
        raise NotImplementedError

    def figures(self, data: ScoredDataset, entry: dict, model_names: list[str], temperatures: list[float],
                n_bins: int) -> list[Figure]:
        raise NotImplementedError

    def sentences(self, name: str, entry: dict, model_names: list[str]) -> list[Block]:
        """Plain sentences for the report's summary (only pairs say more than their table)."""
        return []

    def __repr__(self) -> str:
        return f"<feedback kind {self.name}>"


class Pairs(FeedbackKind):
    name, aliases, record_type, unit, title = "pairs", ("pairwise",), PreferencePair, "pairs", "pairwise data"

    def texts(self, record):
        return [record.chosen, record.rejected], record.margin

    def task(self, cfg, train_records):
        from rewardkit.models import tasks

        return tasks.pair_task(cfg.use_margin, cfg.center_rewards_coefficient)

    def arrange(self, values, records):
        return values[..., 0::2], values[..., 1::2]  # (chosen, rejected)

    def flat(self, arranged):
        import numpy as np

        return np.concatenate(arranged)

    def disagreement(self, member_values, records):
        chosen, rejected = self.arrange(member_values, records)
        return (chosen - rejected).std(axis=0)  # of the members' margins: what decides the pair

    def summarize(self, data, model, temperature, cfg):
        from rewardkit.eval import metrics

        disagreement = data.disagreement[model] if data.disagreement else None
        return metrics.summarize_pairs(*data.scores[model], *data.lengths, temperature=temperature,
                                       n_bins=cfg.calibration_bins, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed,
                                       disagreement=disagreement)

    def compare(self, data, cfg):
        from rewardkit.eval import metrics

        return metrics.compare_pairs(*data.scores[0], *data.scores[1], n_resamples=cfg.bootstrap_resamples,
                                     seed=cfg.seed)

    def calibration_scores(self, scores):
        return scores

    def columns(self):
        from rewardkit.eval import presentation

        return presentation.PAIR_COLUMNS

    def cells(self, figures):
        from rewardkit.eval import presentation

        return presentation.pair_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        from rewardkit.eval import presentation

        return presentation.pair_figures(data, entry, model_names, temperatures, n_bins)

    def sentences(self, name, entry, model_names):
        from rewardkit.eval import presentation

        return presentation.pair_sentences(name, entry, model_names)


class Rankings(FeedbackKind):
    name, aliases, record_type, unit, title = "rankings", (), RankedGroup, "groups", "ranked groups"
    train_rm_reads_as = ("pairs",)  # the pairs each ranking implies: train-rm's default --feedback

    def texts(self, record):
        return list(record.responses), None  # best first

    def task(self, cfg, train_records):
        from rewardkit.models import tasks

        return tasks.ranking_task()

    def arrange(self, values, records):
        bounds, start = [], 0
        for record in records:
            bounds.append((start, start + len(record.responses)))
            start += len(record.responses)
        return [values[..., a:b] for a, b in bounds]  # one array per group, best first

    def flat(self, arranged):
        import numpy as np

        return np.concatenate(arranged) if arranged else np.empty(0)

    def summarize(self, data, model, temperature, cfg):
        from rewardkit.eval import metrics

        return metrics.summarize_rankings(data.scores[model], data.lengths, n_resamples=cfg.bootstrap_resamples,
                                          seed=cfg.seed)

    def compare(self, data, cfg):
        from rewardkit.eval import metrics

        return metrics.compare_rankings(*data.scores, n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def columns(self):
        from rewardkit.eval import presentation

        return presentation.RANKING_COLUMNS

    def cells(self, figures):
        from rewardkit.eval import presentation

        return presentation.ranking_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        from rewardkit.eval import presentation

        return presentation.ranking_figures(data, entry, model_names, temperatures, n_bins)


class Ratings(FeedbackKind):
    name, aliases, record_type, unit, title = "ratings", (), RatedResponse, "ratings", "ratings"

    def texts(self, record):
        return [record.response], float(record.score)

    def task(self, cfg, train_records):
        import math

        from rewardkit.models import tasks

        # z-scored with the training ratings' statistics (population std, as normalize_ratings expects)
        ratings = [r.score for r in train_records]
        mean = sum(ratings) / len(ratings)
        std = math.sqrt(sum((x - mean) ** 2 for x in ratings) / len(ratings))
        return tasks.rating_task(mean, std, normalize=cfg.normalize_ratings)

    def targets(self, records):
        import numpy as np

        return np.array([r.score for r in records], dtype=np.float64)

    def summarize(self, data, model, temperature, cfg):
        from rewardkit.eval import metrics

        return metrics.summarize_ratings(data.scores[model], data.targets, data.lengths,
                                         n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def compare(self, data, cfg):
        from rewardkit.eval import metrics

        return metrics.compare_ratings(*data.scores, data.targets, n_resamples=cfg.bootstrap_resamples,
                                       seed=cfg.seed)

    def columns(self):
        from rewardkit.eval import presentation

        return presentation.RATING_COLUMNS

    def cells(self, figures):
        from rewardkit.eval import presentation

        return presentation.rating_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        from rewardkit.eval import presentation

        return presentation.rating_figures(data, entry, model_names, temperatures, n_bins)


class Binary(FeedbackKind):
    name, aliases, record_type, unit, title = "binary", (), BinaryFeedback, "examples", "thumbs up/down"

    def texts(self, record):
        return [record.response], float(record.label)

    def task(self, cfg, train_records):
        from rewardkit.models import tasks

        return tasks.binary_task()

    def targets(self, records):
        import numpy as np

        return np.array([r.label for r in records], dtype=np.float64)

    def summarize(self, data, model, temperature, cfg):
        from rewardkit.eval import metrics

        return metrics.summarize_binary(data.scores[model], data.targets, data.lengths,
                                        threshold=cfg.binary_threshold, n_resamples=cfg.bootstrap_resamples,
                                        seed=cfg.seed)

    def compare(self, data, cfg):
        from rewardkit.eval import metrics

        return metrics.compare_binary(*data.scores, data.targets, threshold=cfg.binary_threshold,
                                      n_resamples=cfg.bootstrap_resamples, seed=cfg.seed)

    def columns(self):
        from rewardkit.eval import presentation

        return presentation.BINARY_COLUMNS

    def cells(self, figures):
        from rewardkit.eval import presentation

        return presentation.binary_cells(figures)

    def figures(self, data, entry, model_names, temperatures, n_bins):
        from rewardkit.eval import presentation

        return presentation.binary_figures(data, entry, model_names, temperatures, n_bins)


KINDS: dict[str, FeedbackKind] = {kind.name: kind for kind in (Pairs(), Rankings(), Ratings(), Binary())}
# every accepted spelling (`--feedback pairwise` still works), for option choices
KIND_SPELLINGS: tuple[str, ...] = tuple(KINDS) + tuple(alias for kind in KINDS.values() for alias in kind.aliases)
_BY_SPELLING = {spelling: kind for kind in KINDS.values() for spelling in (kind.name, *kind.aliases)}
_BY_RECORD_TYPE = {kind.record_type: kind for kind in KINDS.values()}


def kind_named(name: str) -> FeedbackKind:
    """The kind called `name` or one of its aliases."""
    try:
        return _BY_SPELLING[name]
    except KeyError:
        raise RewardkitError(f"unknown kind of feedback {name!r}; expected one of {', '.join(KINDS)}") from None


def kind_of(record: FeedbackRecord) -> FeedbackKind:
    """The kind a loaded record belongs to."""
    return _BY_RECORD_TYPE[type(record)]
