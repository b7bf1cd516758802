"""Loss tasks: the validation accuracy each shape of feedback reports, on hand-computed cases."""

import pytest
import torch

from rewardkit.models.tasks import Example, ranking_task, rating_task


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
