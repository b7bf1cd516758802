"""Advantages, losses, KL estimators and controllers against values computed by hand (in the comments)."""

import math

import pytest
import torch

from rewardkit.rl.advantages import (discounted_returns, gae, group_normalized_advantages, leave_one_out_advantages,
                                     per_token, reinforce_advantages)
from rewardkit.rl.kl import K3_MAX, AdaptiveKLController, FixedKLController, kl_estimate, kl_k1, kl_k2, kl_k3
from rewardkit.rl.losses import (aggregate, clipped_surrogate_loss, entropy_from_logits, policy_gradient_loss,
                                 value_loss)
from rewardkit.rl.masked import masked_mean, masked_var, masked_whiten

# Two responses: three tokens, and two tokens followed by padding (whose reward and value must be ignored).
REWARDS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
VALUES = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def close(actual, expected, tol=1e-5):
    expected = torch.as_tensor(expected, dtype=torch.float32)
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float32), expected, atol=tol)


def test_masked_statistics_ignore_padding():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert close(masked_mean(values, mask), 2.0)
    assert close(masked_var(values, mask), 1.0)                # (1 + 0 + 1) / (3 - 1)
    assert close(masked_var(values, mask, unbiased=False), 2 / 3)
    assert close(masked_whiten(values, mask), [-1.0, 0.0, 1.0, 100.0])
    assert close(masked_whiten(values, mask, shift_mean=False), [1.0, 2.0, 3.0, 100.0])  # std 1: unchanged
    # scale only: std 2 halves every valid value, signs and zeros kept (0.1/0.2/0.3 centred would flip a sign)
    assert close(masked_whiten(torch.tensor([-2.0, 0.0, 2.0, 7.0]), mask, shift_mean=False), [-1.0, 0.0, 1.0, 7.0])
    assert close(masked_whiten(torch.tensor([2.0, 4.0, 6.0, 7.0]), mask, shift_mean=False), [1.0, 2.0, 3.0, 7.0])
    assert close(masked_mean(torch.ones(2, 2), torch.tensor([[1.0, 1.0], [0.0, 0.0]]), dim=1), [1.0, 0.0])


def test_discounted_returns():
    # row 0: G2 = 1, G1 = 0.9, G0 = 0.81; row 1: G1 = 2, G0 = 1.8, the padded reward 5 never counts.
    assert close(discounted_returns(REWARDS, MASK, gamma=0.9), [[0.81, 0.9, 1.0], [1.8, 2.0, 0.0]])


def test_gae_by_hand():
    # γ = 0.9, λ = 0.5, γλ = 0.45.
    # row 0: δ2 = 1 - 0.5 = 0.5; δ1 = 0.9·0.5 - 0.5 = -0.05; δ0 = -0.05
    #        A2 = 0.5; A1 = -0.05 + 0.45·0.5 = 0.175; A0 = -0.05 + 0.45·0.175 = 0.02875
    # row 1: δ1 = 2 + 0 - 1 = 1 (V after the last token is 0, not the padding's 9); δ0 = 0.9·1 - 1 = -0.1
    #        A1 = 1; A0 = -0.1 + 0.45·1 = 0.35
    advantages, returns = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.5)
    assert close(advantages, [[0.02875, 0.175, 0.5], [0.35, 1.0, 0.0]])
    assert close(returns, [[0.52875, 0.675, 1.0], [1.35, 2.0, 0.0]])


def test_gae_limits():
    # λ = 1: Monte Carlo return minus value; λ = 0: one-step TD error.
    advantages, _ = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=1.0)
    assert close(advantages, (discounted_returns(REWARDS, MASK, 0.9) - VALUES) * MASK)
    advantages, _ = gae(REWARDS, VALUES, MASK, gamma=0.9, lam=0.0)
    assert close(advantages, [[-0.05, -0.05, 0.5], [-0.1, 1.0, 0.0]])


def test_reinforce_baseline_is_the_batch_mean_return():
    returns = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # batch mean of valid returns = 5/3
    assert close(reinforce_advantages(returns, mask), [[-2 / 3, -2 / 3], [4 / 3, 0.0]])


def test_group_normalized_advantages():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 0.0])
    # group [1,2,3]: mean 2, std 1 -> [-1, 0, 1]
    # group [4,0,0]: mean 4/3, unbiased std sqrt((64/9 + 16/9 + 16/9)/2) = sqrt(16/3) = 2.3094
    s = math.sqrt(16 / 3)
    expected = [-1.0, 0.0, 1.0, (8 / 3) / s, (-4 / 3) / s, (-4 / 3) / s]
    assert close(group_normalized_advantages(scores, 3, eps=0.0), expected)
    assert close(group_normalized_advantages(scores, 3, scale=False), [-1, 0, 1, 8 / 3, -4 / 3, -4 / 3])
    # A group where every sample scored the same carries no signal (and no NaN).
    assert close(group_normalized_advantages(torch.tensor([2.0, 2.0]), 2), [0.0, 0.0])
    with pytest.raises(ValueError):
        group_normalized_advantages(scores, 4)


def test_leave_one_out_advantages():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 0.0])
    # 1 - (2+3)/2 = -1.5; 2 - (1+3)/2 = 0; 3 - (1+2)/2 = 1.5; 4 - 0 = 4; 0 - (4+0)/2 = -2 (twice)
    assert close(leave_one_out_advantages(scores, 3), [-1.5, 0.0, 1.5, 4.0, -2.0, -2.0])
    assert close(per_token(torch.tensor([2.0, -1.0]), MASK), [[2, 2, 2], [-1, -1, 0]])


def test_aggregations():
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert close(aggregate(losses, mask, "token_mean"), 10 / 4)
    assert close(aggregate(losses, mask, "sequence_mean"), (2.0 + 4.0) / 2)
    with pytest.raises(ValueError):
        aggregate(losses, mask, "sum")


def test_policy_gradient_loss_and_gradient():
    logprobs = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    advantages = torch.tensor([[2.0, -1.0]])
    loss = policy_gradient_loss(logprobs, advantages, torch.ones(1, 2))
    # -(2·log 0.5 - 1·log 0.25)/2 = -(-1.3863 + 1.3863)/2 = 0
    assert close(loss, 0.0)
    loss.backward()
    assert close(logprobs.grad, [[-1.0, 0.5]])  # -A / n_tokens


def test_clipped_surrogate_by_hand():
    old = torch.log(torch.tensor([[0.4, 0.4]]))
    logprobs = torch.log(torch.tensor([[0.6, 0.3]])).requires_grad_()  # ratios 1.5 and 0.75
    mask = torch.ones(1, 2)
    out = clipped_surrogate_loss(logprobs, old, torch.tensor([[1.0, 1.0]]), mask, clip_eps=0.2)
    # A > 0: max(-1.5, -1.2) = -1.2 (clipped), max(-0.75, -0.8) = -0.75 -> mean -0.975
    assert close(out.loss, -0.975)
    assert close(out.clip_fraction, 0.5)
    out.loss.backward()
    # the clipped token gets no gradient; the other gets -A·ratio/2 = -0.375
    assert close(logprobs.grad, [[0.0, -0.375]])
    out = clipped_surrogate_loss(logprobs, old, torch.tensor([[-1.0, -1.0]]), mask, clip_eps=0.2)
    # A < 0: max(1.5, 1.2) = 1.5, max(0.75, 0.8) = 0.8 (clipped) -> mean 1.15
    assert close(out.loss, 1.15)
    assert close(out.clip_fraction, 0.5)
    # approx KL (k3 of KL(old ‖ new), tokens drawn from old): mean over tokens of (ρ - 1 - log ρ)
    expected_kl = ((1.5 - 1 - math.log(1.5)) + (0.75 - 1 - math.log(0.75))) / 2
    assert close(out.approx_kl, expected_kl)


def test_approx_kl_estimates_kl_of_old_to_new_without_bias():
    old, new = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.4, 0.3])
    tokens = torch.multinomial(old, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    out = clipped_surrogate_loss(new.log()[tokens][None], old.log()[tokens][None], torch.zeros(1, len(tokens)),
                                 torch.ones(1, len(tokens)), clip_eps=0.2)
    exact = float((old * (old / new).log()).sum())  # 0.3446
    assert abs(float(out.approx_kl) - exact) < 0.01


def test_value_loss_clipped_and_not():
    values = torch.tensor([[1.0, 2.0]])
    old = torch.tensor([[0.5, 2.5]])
    returns = torch.tensor([[2.0, 2.0]])
    mask = torch.ones(1, 2)
    assert close(value_loss(values, returns, mask), 0.5 * (1.0 + 0.0) / 2)
    # clipped values 0.7 and 2.3: max(1, 1.69) = 1.69, max(0, 0.09) = 0.09 -> 0.5 · 0.89
    assert close(value_loss(values, returns, mask, old_values=old, clip_eps=0.2), 0.445)


def test_entropy_from_logits():
    assert close(entropy_from_logits(torch.zeros(3, 2)), [math.log(2)] * 3)
    logits = torch.log(torch.tensor([0.5, 0.25, 0.25])) + 7.0  # a shift changes nothing
    assert close(entropy_from_logits(logits), 0.5 * math.log(2) + 0.5 * math.log(4))
    # tokens a logits processor masked to -inf count 0 (not nan)
    masked = torch.tensor([[0.0, -math.inf], [0.0, 0.0], [-math.inf, 0.0]])
    assert close(entropy_from_logits(masked), [0.0, math.log(2), 0.0])
    assert close(entropy_from_logits(torch.tensor([0.0, 0.0, -math.inf])), math.log(2))
    # a probability that underflows to 0 leaves the gradient finite
    logits = torch.tensor([0.0, -200.0, 1.0, -math.inf], requires_grad=True)
    entropy_from_logits(logits).backward()
    assert torch.isfinite(logits.grad).all()


def test_kl_estimators():
    logp, ref = torch.log(torch.tensor(0.5)), torch.log(torch.tensor(0.25))
    assert close(kl_k1(logp, ref), math.log(2))
    assert close(kl_k2(logp, ref), 0.5 * math.log(2) ** 2)
    assert close(kl_k3(logp, ref), 0.5 + math.log(2) - 1)  # r = 0.5: r - log r - 1
    assert close(kl_estimate(logp, logp, "k3"), 0.0)
    # a token the policy found e^-100 likely where the reference did not: capped, not inf (nor its gradient nan)
    far = torch.tensor(-100.0, requires_grad=True)
    capped = kl_k3(far, torch.tensor(0.0))
    capped.backward()
    assert float(capped.detach()) == K3_MAX and float(far.grad) == 0.0
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k4")


def test_kl_estimators_are_unbiased_where_claimed():
    # Sample from p, estimate KL(p ‖ q) exactly known for two categorical distributions.
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = float((p * (p / q).log()).sum())
    samples = torch.multinomial(p, 200000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[samples], q.log()[samples]
    assert abs(float(kl_k1(logp, logq).mean()) - true_kl) < 0.01
    assert abs(float(kl_k3(logp, logq).mean()) - true_kl) < 0.01
    assert float(kl_k3(logp, logq).min()) >= 0


def test_adaptive_kl_controller():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # KL 12: error = clip(12/6 - 1) = 0.2 -> β = 0.1 · (1 + 0.2 · 256/10000) = 0.100512
    assert close(controller.update(12.0, 256), 0.100512, tol=1e-9)
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert close(controller.update(3.0, 256), 0.099488, tol=1e-9)      # error -0.5 clipped to -0.2
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert close(controller.update(6.6, 256), 0.100256, tol=1e-9)      # error 0.1 within the clip
    restored = AdaptiveKLController(1.0, target=6.0)
    restored.load_state_dict(controller.state_dict())
    assert restored.value == controller.value
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05
