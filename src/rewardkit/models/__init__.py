"""Reward models: any HF backbone with a scalar head, one tokenization rule, offline presets, and the trainer.

Names are imported lazily: `rewardkit train-rm --help` imports `rewardkit.models.config`, which must not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Encoded": "reward_model", "RewardModel": "reward_model", "resolve_model_path": "presets"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewardkit.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rewardkit.models.{_EXPORTS[name]}"), name)
