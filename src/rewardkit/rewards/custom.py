"""A reward from any Python callable named by import path `package.module:function`.

It is called as `fn(prompts, responses, references, **kwargs)` with lists (references is None when the input has
none) and must return one finite number per response (list, NumPy array or tensor).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import RewardFunction


def import_callable(path: str) -> Callable:
    """Resolve `package.module:function` (dots after the colon reach attributes: `module:Class.method`)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise RewardkitError(f"function must look like package.module:function, got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RewardkitError(f"cannot import {module_name!r} for {path!r}: {exc}")
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise RewardkitError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise RewardkitError(f"{path!r} is not callable")
    return target


class CustomReward(RewardFunction):
    name = "custom"

    def __init__(self, function: str, kwargs: dict | None = None):
        if kwargs is not None and not isinstance(kwargs, dict):
            raise RewardkitError(f"kwargs must be a mapping of the function's keyword arguments, got {kwargs!r}")
        self.path, self.function, self.kwargs = function, import_callable(function), dict(kwargs or {})

    def _score(self, prompts, responses, references, finished):
        # The result is validated (length, finiteness) by RewardFunction.__call__, which names this component.
        return self.function(prompts, responses, references, **self.kwargs)
