"""Each loss against values computed by hand."""

import math

import pytest
import torch

from rewardkit.losses import (binary_cross_entropy_loss, bradley_terry_loss, center_rewards_penalty,
                              normalize_ratings, plackett_luce_loss, rating_mse_loss)


def nll_sigmoid(x):  # −log σ(x), by hand
    return math.log(1 + math.exp(-x))


def test_bradley_terry_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    expected = [nll_sigmoid(1.0), math.log(2.0), nll_sigmoid(-2.0)]
    assert torch.allclose(bradley_terry_loss(chosen, rejected, reduction="none"), torch.tensor(expected))
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(sum(expected) / 3)


def test_bradley_terry_with_margin_by_hand():
    chosen, rejected, margin = torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.5])
    expected = [math.log(2.0), nll_sigmoid(2.5)]
    assert torch.allclose(bradley_terry_loss(chosen, rejected, margin, reduction="none"), torch.tensor(expected))


def test_center_rewards_penalty_by_hand():
    assert center_rewards_penalty(torch.tensor([1.0, -2.0]), torch.tensor([2.0, 1.0])).item() == pytest.approx((9 + 1) / 2)


def test_rating_mse_and_normalization_by_hand():
    ratings = torch.tensor([1.0, 3.0, 5.0])
    z = normalize_ratings(ratings, mean=3.0, std=2.0)
    assert z.tolist() == [-1.0, 0.0, 1.0]
    assert rating_mse_loss(torch.tensor([0.0, 0.5, 1.0]), z).item() == pytest.approx((1 + 0.25 + 0) / 3)
    assert normalize_ratings(torch.tensor([4.0]), mean=4.0, std=0.0).item() == 0.0


def test_plackett_luce_by_hand():
    # ranking a > b > c with scores 2, 1, 0:
    # P = e^2/(e^2+e^1+e^0) * e^1/(e^1+e^0); NLL = −log P
    scores = torch.tensor([[2.0, 1.0, 0.0]])
    expected = -(2 - math.log(math.e**2 + math.e + 1)) - (1 - math.log(math.e + 1))
    assert plackett_luce_loss(scores).item() == pytest.approx(expected, rel=1e-6)


def test_plackett_luce_masks_padding_and_reduces_to_bradley_terry_for_two():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.5, -0.5, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    losses = plackett_luce_loss(scores, mask, reduction="none")
    assert losses[1].item() == pytest.approx(bradley_terry_loss(torch.tensor([0.5]), torch.tensor([-0.5])).item())
    assert losses[0].item() == pytest.approx(plackett_luce_loss(scores[:1]).item())


def test_plackett_luce_gradient_is_finite_with_padding():
    scores = torch.tensor([[1.0, 0.0, 5.0]], requires_grad=True)
    plackett_luce_loss(scores, torch.tensor([[1, 1, 0]])).backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[0, 2] == 0


def test_binary_cross_entropy_by_hand():
    scores, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1, 0, 0])
    expected = [math.log(2), -math.log(1 - 1 / (1 + math.exp(-2))), -math.log(1 - 1 / (1 + math.exp(1)))]
    assert torch.allclose(binary_cross_entropy_loss(scores, labels, reduction="none"), torch.tensor(expected))
