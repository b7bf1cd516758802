"""Composite: weighted sum, normalization (running, rank) and clipping on hand-made batches; NaN names the component."""

import numpy as np
import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction
from rewardkit.rewards.composite import Component, CompositeReward, RunningMeanStd, rank_normalize
from rewardkit.rewards.custom import CustomReward


class Fixed(RewardFunction):
    """Returns preset values, one batch after another."""

    def __init__(self, *batches):
        self.batches = list(batches)

    def _score(self, prompts, responses, references, finished):
        return torch.tensor(self.batches.pop(0), dtype=torch.float32)


def batch(n):
    return [""] * n, ["r"] * n


def test_running_mean_std_merges_batches_like_one_pass():
    stats = RunningMeanStd()
    stats.update(torch.tensor([1.0, 2.0, 3.0]))
    assert (stats.mean, stats.std) == pytest.approx((2.0, np.sqrt(2 / 3)))
    stats.update(torch.tensor([4.0, 5.0]))
    assert (stats.mean, stats.std) == pytest.approx((3.0, np.sqrt(2.0)))  # population std of 1..5


def test_running_normalization_keeps_state_across_calls():
    reward = CompositeReward([Component(Fixed([1, 2, 3], [4, 5]), "a", normalize="running")])
    first = reward(*batch(3))
    assert first.tolist() == pytest.approx([-1 / np.sqrt(2 / 3), 0.0, 1 / np.sqrt(2 / 3)])
    second = reward(*batch(2))
    assert second.tolist() == pytest.approx([(4 - 3) / np.sqrt(2), (5 - 3) / np.sqrt(2)])


def test_a_restored_composite_normalizes_the_next_batch_as_the_original():
    reward = CompositeReward([Component(Fixed([1, 2, 3]), "a", normalize="running"),
                              Component(Fixed([0, 0, 0]), "b", normalize="rank")])
    reward(*batch(3))
    restored = CompositeReward([Component(Fixed([4, 5]), "a", normalize="running"),
                                Component(Fixed([1, 0]), "b", normalize="rank")])
    restored.load_state_dict(reward.state_dict())
    # a fresh composite would normalize [4, 5] by themselves (to -1, 1); the restored one by 1..5's mean 3, std √2
    assert restored(*batch(2)).tolist() == pytest.approx([(4 - 3) / np.sqrt(2) + 1.0, (5 - 3) / np.sqrt(2)])
    with pytest.raises(RewardkitError, match="reward spec changed"):
        CompositeReward([Component(Fixed([1]), "c", normalize="running")]).load_state_dict(reward.state_dict())


def test_shared_batches_normalize_with_every_process_scores():
    # this process scored [1, 2]; the other process scored [3, 4, 5] of the same batch
    other = torch.tensor([3.0, 4.0, 5.0])
    reward = CompositeReward([Component(Fixed([1.0, 2.0], [1.0, 2.0]), "a", normalize="running"),
                              Component(Fixed([1.0, 2.0], [1.0, 2.0]), "b", normalize="rank")])
    reward.share_batches(lambda values: torch.cat([values, other]))
    # running: mean 3 and population std √2 of 1..5; rank: 1 and 2 are the 1st and 2nd of five, (rank − 1) / 4
    assert reward(*batch(2)).tolist() == pytest.approx([(1 - 3) / np.sqrt(2) + 0.0, (2 - 3) / np.sqrt(2) + 0.25])
    running = reward.state_dict()["a"]["running"]
    assert (running["count"], running["mean"], running["m2"]) == pytest.approx((5, 3.0, 10.0))  # as one pass over 1..5
    reward.share_batches(None)
    reward(*batch(2))  # on its own again: only its two values join the statistics
    assert reward.state_dict()["a"]["running"]["count"] == 7


def test_running_normalization_only_centers_while_std_is_zero():
    reward = CompositeReward([Component(Fixed([7.0]), "a", normalize="running")])
    assert reward(*batch(1)).tolist() == [0.0]


def test_rank_normalization_with_ties():
    values = torch.tensor([3.0, 1.0, 2.0, 2.0])
    # average 1-based ranks 4, 1, 2.5, 2.5 -> (rank - 1) / 3
    assert rank_normalize(values).tolist() == pytest.approx([1.0, 0.0, 0.5, 0.5])
    reward = CompositeReward([Component(Fixed([3, 1, 2, 2]), "a", normalize="rank_centered")])
    assert reward(*batch(4)).tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    assert rank_normalize(torch.tensor([5.0])).tolist() == [0.5]


def test_rank_of_values_outside_the_reference_batch():
    among = torch.tensor([1.0, 2.0, 3.0])
    assert rank_normalize(torch.tensor([0.0, 1.5, 2.0, 9.0]), among).tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])


def test_weighted_sum_with_component_and_total_clipping():
    components = [Component(Fixed([-2.0, 0.5, 3.0]), "a", weight=2.0, clip=(-1.0, 1.0)),
                  Component(Fixed([1.0, 1.0, 1.0]), "b", weight=-0.5)]
    reward = CompositeReward(components, clip=(-1.5, 1.5))
    # a: clip -> [-1, 0.5, 1], x2 -> [-2, 1, 2]; b: -0.5; sum [-2.5, 0.5, 1.5]; total clip -> [-1.5, 0.5, 1.5]
    assert reward(*batch(3)).tolist() == pytest.approx([-1.5, 0.5, 1.5])
    assert reward.last_components["a"].tolist() == pytest.approx([-2.0, 0.5, 3.0])  # raw values kept
    assert reward.last_contributions["a"].tolist() == pytest.approx([-2.0, 1.0, 2.0])
    assert reward.last_contributions["b"].tolist() == pytest.approx([-0.5, -0.5, -0.5])
    assert reward.last_total.tolist() == pytest.approx([-1.5, 0.5, 1.5])


def test_nan_from_a_component_names_it():
    components = [Component(Fixed([0.0, 0.0]), "ok"),
                  Component(CustomReward("tests.rewards.helpers:nan_for_second"), "custom")]
    with pytest.raises(RewardkitError, match=r"component 2 \(custom\).*nan for response 1"):
        CompositeReward(components)(*batch(2))


def test_composite_nests_as_a_reward_function():
    inner = CompositeReward([Component(Fixed([1.0, 2.0]), "x", weight=3.0)])
    outer = CompositeReward([Component(inner, "inner", weight=0.5), Component(Fixed([1.0, 1.0]), "y")])
    assert outer(*batch(2)).tolist() == pytest.approx([2.5, 4.0])
