"""Loss tasks: the validation accuracy each shape of feedback reports, on hand-computed cases."""

import math

import pytest
import torch

from rewardkit.data.types import PreferencePair, RatedResponse
from rewardkit.kinds import KINDS
from rewardkit.models.config import TrainRMConfig
from rewardkit.models.tasks import Example, ranking_task, rating_task, task_for

PAIR = PreferencePair("p", "good", "bad", margin=2.0)
RATINGS = [RatedResponse("p", f"answer {i}", score) for i, score in enumerate([1.0, 2.0, 3.0, 4.0])]


def test_rating_accuracy_is_within_half_a_training_std_on_either_scale():
    examples = [Example([], 3.0), Example([], 3.0)]
    # training ratings with mean 3 and std 2: half a standard deviation is 0.5 once z-scored, 1 rating point raw
    assert rating_task(3.0, 2.0).correct(torch.tensor([0.4, 0.6]), examples).tolist() == [1.0, 0.0]
    raw = rating_task(3.0, 2.0, normalize=False)
    assert raw.correct(torch.tensor([3.9, 4.1]), examples).tolist() == [1.0, 0.0]


def test_ranking_accuracy_is_the_share_of_implied_pairs_in_order():
    examples = [Example([None] * 3), Example([None] * 2)]
    # best first: 3 > 1 and 3 > 2 right, 1 > 2 wrong; a tie counts half
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 1.0])
    assert ranking_task().correct(scores, examples).tolist() == pytest.approx([2 / 3, 0.5])


def test_ratings_train_on_ratings_z_scored_with_the_training_statistics():
    task = task_for(KINDS["ratings"], TrainRMConfig(feedback="ratings"), RATINGS)
    # ratings 1..4: mean 2.5, population std sqrt(1.25); a score of 0 for the rating 4 misses its z-score
    # (4 - 2.5) / sqrt(1.25) = 1.3416, so the squared error is 1.8
    loss = task.loss(torch.tensor([0.0]), [Example([], 4.0)])
    assert loss.item() == pytest.approx(((4 - 2.5) / math.sqrt(1.25)) ** 2, rel=1e-6)
    raw = task_for(KINDS["ratings"], TrainRMConfig(feedback="ratings", normalize_ratings=False), RATINGS)
    assert raw.loss(torch.tensor([0.0]), [Example([], 4.0)]).item() == pytest.approx(16.0)


def test_pairs_train_with_the_margin_only_when_asked():
    examples = [Example([], 2.0)]
    scores = torch.tensor([1.0, 0.0])  # chosen 1, rejected 0
    with_margin = task_for(KINDS["pairs"], TrainRMConfig(), [PAIR]).loss(scores, examples)
    without = task_for(KINDS["pairs"], TrainRMConfig(use_margin=False), [PAIR]).loss(scores, examples)
    assert with_margin.item() == pytest.approx(-math.log(1 / (1 + math.exp(-(1 - 2)))), rel=1e-6)  # -log σ(1 - 2)
    assert without.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))), rel=1e-6)  # -log σ(1)
