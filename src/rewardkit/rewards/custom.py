"""A reward from any Python callable named by import path `package.module:function`.

It is called as `fn(prompts, responses, references, **kwargs)` with lists (references is None when the input has
none) and must return one finite number per response (list, NumPy array or tensor). With `fields: [name, ...]` it is
also passed `fields=`: one mapping per response of those fields of its record (what `score` and `rl` read from the
input file, e.g. a test list or a target), and a record without one of them is an error naming it.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from rewardkit.errors import RewardkitError
from rewardkit.rewards.base import ResponseError, RewardFunction


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

    def __init__(self, function: str, kwargs: dict | None = None, fields: list[str] | None = None):
        if kwargs is not None and not isinstance(kwargs, dict):
            raise RewardkitError(f"kwargs must be a mapping of the function's keyword arguments, got {kwargs!r}")
        if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) and f for f in fields)):
            raise RewardkitError(f"fields must be a list of record field names, got {fields!r}")
        self.path, self.function, self.kwargs = function, import_callable(function), dict(kwargs or {})
        self.needs_fields = tuple(fields or ())

    def check_fields(self, fields) -> None:
        for name in self.needs_fields:
            if fields.get(name) is None:
                raise RewardkitError(f"custom reward {self.path} reads the record's {name!r} field, and this record "
                                     "has none")

    def _score(self, prompts, responses, references, finished, fields=None):
        # The result is validated (length, finiteness) by RewardFunction.__call__, which names this component.
        extra = {}
        if self.needs_fields:
            for j, row in enumerate(fields or [{}] * len(responses)):
                for name in self.needs_fields:
                    if row.get(name) is None:
                        raise ResponseError(f"custom reward {self.path} reads each record's {name!r} field; response "
                                            f"{j} has none", j)
            extra["fields"] = [{name: row[name] for name in self.needs_fields} for row in fields]
        return self.function(prompts, responses, references, **self.kwargs, **extra)
