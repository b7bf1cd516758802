"""The training tasks: a loss and a validation accuracy for each kind of feedback (`task_for` picks one).

A training example is a few encoded texts (a pair, a ranked group, or one rated/judged response) plus its target.
All texts of a micro-batch go through the model in one forward pass; the task then splits the flat scores back into
examples. Losses come back per example so the trainer can normalize by the global batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from rewardkit.kinds import pair_outcomes
from rewardkit.losses import (binary_cross_entropy_loss, bradley_terry_loss, center_rewards_penalty,
                              normalize_ratings, plackett_luce_loss, rating_mse_loss)
from rewardkit.models.tokenization import Encoded

if TYPE_CHECKING:
    from rewardkit.kinds import FeedbackKind
    from rewardkit.models.config import TrainRMConfig


@dataclass(slots=True)
class Example:
    """Encoded texts of one record (chosen first for pairs, best first for rankings) and its numeric target."""

    encoded: list[Encoded]
    target: float | None = None  # margin for pairs, rating, or binary label

    @property
    def truncated(self) -> bool:
        return any(t.truncated for t in self.encoded)


def split_scores(scores: torch.Tensor, examples: Sequence[Example]) -> list[torch.Tensor]:
    sizes = [len(e.encoded) for e in examples]
    return list(torch.split(scores, sizes))


@dataclass(frozen=True)
class Task:
    """Loss and accuracy for one shape of feedback; `loss` returns per-example losses [B]."""

    name: str
    loss: Callable[[torch.Tensor, Sequence[Example]], torch.Tensor]
    correct: Callable[[torch.Tensor, Sequence[Example]], torch.Tensor]  # per-example accuracy in [0, 1]


def pair_task(use_margin: bool = True, center_rewards_coefficient: float = 0.0) -> Task:
    def loss(scores, examples):
        chosen, rejected = scores[0::2], scores[1::2]
        margin = None
        if use_margin and any(e.target is not None for e in examples):
            margin = torch.tensor([e.target or 0.0 for e in examples], dtype=scores.dtype, device=scores.device)
        losses = bradley_terry_loss(chosen, rejected, margin, reduction="none")
        if center_rewards_coefficient:
            losses = losses + center_rewards_coefficient * center_rewards_penalty(chosen, rejected, reduction="none")
        return losses

    def correct(scores, examples):
        return pair_outcomes(scores[0::2], scores[1::2])

    return Task("pairs", loss, correct)


def ranking_task() -> Task:
    def padded(scores, examples):
        groups = split_scores(scores, examples)
        width = max(len(g) for g in groups)
        matrix = scores.new_zeros((len(groups), width))
        mask = torch.zeros((len(groups), width), dtype=torch.bool, device=scores.device)
        for row, group in enumerate(groups):
            matrix[row, :len(group)] = group
            mask[row, :len(group)] = True
        return matrix, mask

    def loss(scores, examples):
        matrix, mask = padded(scores, examples)
        return plackett_luce_loss(matrix, mask, reduction="none")

    def correct(scores, examples):
        # fraction of the implied pairs (better, worse) that the scores order right, ties half
        result = []
        for group in split_scores(scores.detach(), examples):
            better, worse = torch.triu_indices(len(group), len(group), offset=1)
            result.append(float(pair_outcomes(group[better], group[worse]).mean()))
        return torch.tensor(result, dtype=torch.float32, device=scores.device)

    return Task("rankings", loss, correct)


def rating_task(mean: float = 0.0, std: float = 1.0, normalize: bool = True) -> Task:
    """MSE on ratings, z-scored with the training statistics `mean` and `std` unless `normalize` is off (then the model
    learns the raw ratings)."""
    spread = std if std > 0 else 1.0  # as normalize_ratings: constant ratings are only centered

    def targets(scores, examples):
        raw = torch.tensor([e.target for e in examples], dtype=scores.dtype, device=scores.device)
        return normalize_ratings(raw, mean, std) if normalize else raw

    def loss(scores, examples):
        return rating_mse_loss(scores, targets(scores, examples), reduction="none")

    def correct(scores, examples):
        # A rating has no right/wrong: count the score as right within half a (training) standard deviation of the
        # rating, which is 0.5 on the z-scored scale and 0.5 * std on the raw one.
        tolerance = 0.5 if normalize else 0.5 * spread
        return ((scores - targets(scores, examples)).abs() < tolerance).float()

    return Task("ratings", loss, correct)


def binary_task() -> Task:
    def labels(scores, examples):
        return torch.tensor([e.target for e in examples], dtype=scores.dtype, device=scores.device)

    def loss(scores, examples):
        return binary_cross_entropy_loss(scores, labels(scores, examples), reduction="none")

    def correct(scores, examples):
        return ((scores > 0).float() == labels(scores, examples)).float()

    return Task("binary", loss, correct)


def _rating_task_for(cfg: TrainRMConfig, train_records: Sequence) -> Task:
    # z-scored with the training ratings' statistics (population std, as normalize_ratings expects)
    ratings = [r.score for r in train_records]
    mean = sum(ratings) / len(ratings)
    std = math.sqrt(sum((x - mean) ** 2 for x in ratings) / len(ratings))
    return rating_task(mean, std, normalize=cfg.normalize_ratings)


# each kind of feedback's task, from train-rm's options and training records
_TASKS: dict[str, Callable[..., Task]] = {
    "pairs": lambda cfg, train_records: pair_task(cfg.use_margin, cfg.center_rewards_coefficient),
    "rankings": lambda cfg, train_records: ranking_task(),
    "ratings": _rating_task_for,
    "binary": lambda cfg, train_records: binary_task(),
}


def task_for(kind: FeedbackKind, cfg: TrainRMConfig, train_records: Sequence) -> Task:
    """The loss and validation accuracy train-rm optimizes for `kind`, with the options of `cfg`."""
    return _TASKS[kind.name](cfg, train_records)
