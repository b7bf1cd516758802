"""Statistics over the valid tokens of a padded batch: responses have different lengths, so every mean, variance and
whitening over a [batch, tokens] tensor must ignore the padding (`mask` is 1 on response tokens, 0 elsewhere)."""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `values` where `mask` is 1 (over all elements, or along `dim`)."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `values` where `mask` is 1; an all-masked row gives 0 rather than NaN."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the valid elements (Bessel-corrected by default, like `torch.var`)."""
    mean = masked_mean(values, mask)
    squares = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        squares = squares * count / (count - 1).clamp(min=1)
    return squares


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """Scale the valid elements to unit variance (and zero mean unless `shift_mean=False`); padding stays as is.

    `shift_mean=False` keeps the sign of rewards meaningful (a value function then still sees their level).
    """
    mean = masked_mean(values, mask)
    whitened = (values - mean) * torch.rsqrt(masked_var(values, mask) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, values)
