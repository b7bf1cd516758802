"""Evaluation metrics for reward models: pure numpy functions over scores, no model and no torch import.

Every function accepts lists, numpy arrays or torch tensors (anything `numpy.asarray` understands after `.detach()`),
returns plain Python floats (or small dataclasses of floats), and is unit-tested against hand-computed values.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float_array(values: Any) -> np.ndarray:
    """A 1-D float64 numpy array from a list, numpy array or torch tensor (detached, moved to CPU)."""
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _paired(chosen: Any, rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    chosen, rejected = as_float_array(chosen), as_float_array(rejected)
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected must have the same length, got {chosen.size} and {rejected.size}")
    return chosen, rejected


def pair_outcomes(chosen_scores: Any, rejected_scores: Any) -> np.ndarray:
    """Per-pair credit: 1 if chosen scores higher, 0.5 on an exact tie, 0 otherwise."""
    chosen, rejected = _paired(chosen_scores, rejected_scores)
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))


def pairwise_accuracy(chosen_scores: Any, rejected_scores: Any) -> float:
    """Fraction of pairs where the chosen response scores higher; ties (equal scores) count as half.

    A model that gives every response the same score gets 0.5, not 0 or 1. NaN for zero pairs.
    """
    outcomes = pair_outcomes(chosen_scores, rejected_scores)
    return float(outcomes.mean()) if outcomes.size else float("nan")
