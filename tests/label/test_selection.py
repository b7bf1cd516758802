"""Active selection strategies and the queue they make, against hand-computed orders."""

from __future__ import annotations

import numpy as np
import pytest

from rewardkit.errors import RewardkitError
from rewardkit.label.selection import (bald_priority, disagreement_priority, margin_priority, resolve_strategy,
                                      selection_order)


def test_margin_puts_near_ties_first():
    scores = [np.array([[1.0, 0.0]]), np.array([[0.2, 0.1]]), np.array([[-3.0, 0.5]])]
    assert margin_priority(scores).tolist() == pytest.approx([-1.0, -0.1, -3.5])
    assert [i for i, _ in selection_order(margin_priority(scores), 3)] == [1, 0, 2]


def test_margin_averages_an_ensemble_and_takes_the_closest_pair_of_a_group():
    # two models: differences 1-0 = 1 and 0.5-0 = 0.5 -> mean 0.75; a group of three: closest pair |2.0 - 2.1|
    assert margin_priority([np.array([[1.0, 0.0], [0.5, 0.0]])]).tolist() == pytest.approx([-0.75])
    assert margin_priority([np.array([[2.0, 0.0, 2.1]])]).tolist() == pytest.approx([-0.1])
    # one response (thumbs): its distance to 0
    assert margin_priority([np.array([[-0.3], [0.1]])]).tolist() == pytest.approx([-0.1])


def test_disagreement_is_the_spread_of_differences_across_models():
    # item 0: differences 1 and -1 -> std 1; item 1: 0.5 and 0.5 -> std 0
    scores = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.5], [2.0, 1.5]])]
    assert disagreement_priority(scores).tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(RewardkitError, match="two or more reward models"):
        disagreement_priority([np.array([[1.0, 0.0]])])


def test_bald_is_the_information_a_label_gives_about_the_model():
    # item 0: differences +2 and -2: p = sigmoid(±2) = 0.8808, 0.1192; H(mean 0.5) = ln 2 = 0.693147;
    #   H(0.8808) = H(0.1192) = 0.8808 * 0.126928 + 0.1192 * 2.126928 = 0.365334; BALD = 0.327813
    # item 1: both models call it a coin flip (difference 0): H(0.5) - H(0.5) = 0, though its margin is the smallest
    # item 2: a group of three, pairs (0,1): +2/-2 as item 0, (0,2) and (1,2): agreement -> the largest, 0.327813
    scores = [np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 1.0], [3.0, 3.0]]),
              np.array([[2.0, 0.0, 9.0], [0.0, 2.0, 9.0]])]
    assert bald_priority(scores).tolist() == pytest.approx([0.327813, 0.0, 0.327813], abs=1e-6)
    # one response (thumbs): p = sigmoid(reward); rewards 0 and 0 -> 0, rewards ±2 -> 0.327813
    assert bald_priority([np.array([[0.0], [0.0]]), np.array([[2.0], [-2.0]])]).tolist() == \
        pytest.approx([0.0, 0.327813], abs=1e-6)
    # margin (the mean difference) cannot tell the contested item from the coin flip: both are near-ties to it
    assert margin_priority(scores)[:2].tolist() == [0.0, 0.0]
    with pytest.raises(RewardkitError, match="two or more reward models"):
        bald_priority([np.array([[1.0, 0.0]])])


def test_mix_spreads_a_uniform_random_sample_through_the_active_queue():
    priorities = [float(p) for p in range(10)]  # item 9 most uncertain
    queue = selection_order(priorities, 10, random_fraction=0.2, seed=3)
    random_positions = [pos for pos, (_, how) in enumerate(queue) if how == "random"]
    assert random_positions == [0, 5]  # ceil((k+1) * 2/10) steps up at k = 0 and k = 5
    drawn = [i for i, how in queue if how == "random"]
    active = [i for i, how in queue if how == "active"]
    assert sorted(drawn + active) == list(range(10))
    assert active == sorted(set(range(10)) - set(drawn), reverse=True)  # highest priority first
    assert drawn == __import__("random").Random(3).sample(range(10), 2)  # the seed's uniform draw
    assert selection_order(priorities, 10, 0.2, seed=3) == queue  # deterministic


def test_file_and_random_orders():
    assert selection_order(None, 4) == [(0, "file"), (1, "file"), (2, "file"), (3, "file")]
    shuffled = selection_order(None, 4, random_fraction=1.0, seed=0)
    assert sorted(i for i, _ in shuffled) == [0, 1, 2, 3] and {h for _, h in shuffled} == {"random"}
    with pytest.raises(RewardkitError, match="between 0 and 1"):
        selection_order(None, 4, random_fraction=1.5)


def test_custom_strategy_by_import_path():
    assert resolve_strategy("tests.label.test_selection:longest_first") is longest_first
    assert resolve_strategy("margin") is margin_priority and resolve_strategy("file") is None
    with pytest.raises(RewardkitError, match="--order must be one of"):
        resolve_strategy("smallest")


def longest_first(scores):
    return np.array([s.shape[1] for s in scores], dtype=float)
