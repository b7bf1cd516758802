"""Each loss against values computed by hand."""

import math

import pytest
import torch

from rewardkit.losses import (binary_cross_entropy_loss, bradley_terry_loss, center_rewards_penalty,
                              head_orthogonality_loss, floored_length_correlation, length_decorrelation_loss,
                              normalize_ratings, pearson_correlation, plackett_luce_loss, rating_mse_loss)


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


# rewards 1, 2, 3 on responses of 10, 20 and 40 tokens. Centered: r − 2 = (−1, 0, 1), L − 70/3 = (−40, −10, 50)/3,
# so Σ xy = 90/3 = 30, |x| = √2, |y| = √(4200/9) = √(1400/3).
REWARDS, LENGTHS = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10, 20, 40])
NORMS = math.sqrt(2) * math.sqrt(1400 / 3)


def test_pearson_correlation_by_hand():
    assert pearson_correlation(REWARDS, LENGTHS.float()).item() == pytest.approx(30 / NORMS, rel=1e-6)
    assert pearson_correlation(torch.ones(3), LENGTHS.float()).item() == 0.0  # a constant has no correlation


def test_length_correlation_is_pearson_once_rewards_spread_and_a_covariance_before():
    # rewards 3, 6, 9 (std √6 > 1): Pearson's correlation, 30 / NORMS
    assert floored_length_correlation(3 * REWARDS, LENGTHS).item() == pytest.approx(30 / NORMS, rel=1e-6)
    # rewards 1, 2, 3 (std √(2/3) < 1, floored to 1): cov = 30 / 3 = 10 over std(L) = √(1400/9)
    assert floored_length_correlation(REWARDS, LENGTHS).item() == pytest.approx(10 / math.sqrt(1400 / 9), rel=1e-6)
    assert floored_length_correlation(REWARDS, LENGTHS, reward_scale=0.1).item() == pytest.approx(30 / NORMS, rel=1e-6)
    # the floor bounds the gradient while rewards are nearly equal (a fresh head): Pearson's would be ~1/std
    tiny = (1e-4 * REWARDS).requires_grad_(True)
    floored_length_correlation(tiny, LENGTHS).backward()
    assert tiny.grad.abs().max() < 1


def test_length_decorrelation_loss_by_hand():
    # one reward: |ρ(r, L)| alone
    assert length_decorrelation_loss(3 * REWARDS, LENGTHS).item() == pytest.approx(30 / NORMS, rel=1e-6)
    assert length_decorrelation_loss(-3 * REWARDS, LENGTHS).item() == pytest.approx(30 / NORMS, rel=1e-6)
    # ODIN's two heads: length rewards 3, 1, 2, centered (1, −1, 0): Σ xy = (−40 + 10) / 3 = −10, Pearson's
    # ρ = −10 / NORMS (no floor for the length head), so the loss is |ρ(r, L)| − ρ(r_L, L) = 30 / NORMS + 10 / NORMS
    loss = length_decorrelation_loss(3 * REWARDS, LENGTHS, torch.tensor([3.0, 1.0, 2.0]))
    assert loss.item() == pytest.approx(40 / NORMS, rel=1e-6)
    # a length head that is the length itself and a reward uncorrelated with it: the minimum, −1
    assert length_decorrelation_loss(torch.tensor([1.0, -2.0, 1.0]), torch.tensor([1, 2, 3]),
                                     torch.tensor([1.0, 2.0, 3.0])).item() == pytest.approx(-1.0, abs=1e-6)


def test_length_decorrelation_loss_gradient_moves_reward_away_from_length():
    rewards = REWARDS.clone().requires_grad_(True)
    length_decorrelation_loss(rewards, LENGTHS).backward()
    stepped = REWARDS - 0.1 * rewards.grad
    assert abs(pearson_correlation(stepped, LENGTHS.float())) < abs(pearson_correlation(REWARDS, LENGTHS.float()))


def test_head_orthogonality_loss_by_hand():
    # cos((1, 0, 1), (1, 1, 0)) = 1 / (√2 √2) = 0.5; the sign does not matter, and scaling a head changes nothing
    assert head_orthogonality_loss(torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]])).item() == \
        pytest.approx(0.5)
    assert head_orthogonality_loss(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([-3.0, -3.0, 0.0])).item() == \
        pytest.approx(0.5)
    assert head_orthogonality_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])).item() == pytest.approx(0.0)
