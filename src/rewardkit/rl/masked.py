"""Statistics over the valid tokens of a padded batch: responses have different lengths, so every mean, variance and
whitening over a [batch, tokens] tensor must ignore the padding (`mask` is 1 on response tokens, 0 elsewhere).

When several processes each hold a share of the batch, `masked_moments` takes an `all_sum` (a sum over the processes)
and returns the moments of the whole batch, which `masked_whiten` accepts in place of its own."""

from __future__ import annotations

from typing import Callable

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


def masked_moments(values: torch.Tensor, mask: torch.Tensor,
                   all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, Bessel-corrected variance) of the valid elements. With `all_sum` (a sum of a tensor over the processes
    that each hold a share of the batch) they are the moments of the whole batch. Two passes, the mean first and then
    the squared deviations from it, as in `masked_var`: one process and several agree to rounding."""
    all_sum = all_sum or (lambda t: t)
    count, total = all_sum(torch.stack([mask.sum(), masked_sum(values, mask)]).float()).unbind()
    mean = total / count.clamp(min=1)
    squares = all_sum(masked_sum((values - mean) ** 2, mask).float())
    return mean, squares / (count - 1).clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Scale the valid elements to unit variance, and shift them to zero mean unless `shift_mean=False`; padding stays
    as is.

    `shift_mean=False` only scales: a value's sign and a zero stay as they are (advantages that a group baseline has
    already centred, where a shift would give samples that scored like the rest of their group a nonzero advantage).
    Unlike TRL's `whiten(shift_mean=False)`, which adds the mean back after centring, this divides by the std only.
    `moments` (mean, variance), e.g. those of `masked_moments` over every process's share, replace the local ones.
    """
    mean, var = moments if moments is not None else masked_moments(values, mask)
    whitened = (values - mean if shift_mean else values) * torch.rsqrt(var + eps)
    return torch.where(mask.bool(), whitened, values)
