"""KL divergence to the reference model, estimated from the sampled tokens, and the controllers of its coefficient β.

With r = π_ref(a)/π(a) for a token a sampled from π (Schulman, "Approximating KL divergence", 2020):
- k1 = log π − log π_ref: unbiased, high variance, can be negative per token;
- k2 = ½·(log π − log π_ref)²: biased, low variance, always ≥ 0; its gradient is the KL's gradient (good in a loss);
- k3 = r − log r − 1: unbiased and always ≥ 0, low variance (GRPO's choice in the loss); capped at K3_MAX.
As a loss term (rather than a reward penalty), k1's gradient is zero in expectation: use k2 or k3 there.
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return logprobs - ref_logprobs


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logprobs - ref_logprobs) ** 2


# k3's exp(log π_ref − log π) overflows (to inf in fp32 from a log-ratio of ~89, and its gradient to nan) on a token
# the policy found very unlikely and the reference did not. As in verl's low_var_kl, the log-ratio is clipped to ±20
# (exp stays finite) and a token's k3 capped at K3_MAX nats.
K3_MAX = 10.0


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    log_ratio = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(log_ratio) - log_ratio - 1).clamp(max=K3_MAX)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL(π ‖ π_ref) estimate by name ("k1", "k2" or "k3")."""
    functions = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
    if estimator not in functions:
        raise ValueError(f"unknown KL estimator {estimator!r} (known: {', '.join(KL_ESTIMATORS)})")
    return functions[estimator](logprobs, ref_logprobs)


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): steer the measured KL toward `target` with a proportional controller,
    β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n_steps/horizon), where n_steps is the number of samples in the update
    and `horizon` how many samples it should take to correct a given relative error."""

    def __init__(self, coef: float, target: float, horizon: float = 10000):
        if target <= 0 or horizon <= 0:
            raise ValueError("the KL target and horizon must be positive")
        super().__init__(coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
