"""A rewardkit reward as a TRL `GRPOTrainer` reward function.

    from rewardkit.integrations.trl import reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=reward_func("rewards.yaml"), train_dataset=dataset, ...)

TRL (1.16, `GRPOTrainer._calculate_rewards`) calls each reward function as
`f(prompts=..., completions=..., completion_ids=..., **columns)`, where `columns` holds every other column of the
dataset (one value per completion) plus `trainer_state`, `log_extra` and `log_metric`. Prompts and completions are
text, or, for a conversational dataset, lists of {role, content} messages; the response scored is the completion's
text (its last assistant message). TRL logs each function under its `__name__` (`rewards/NAME/mean`); this one also
logs every component of a composite reward through `log_metric` (`rewards/NAME/COMPONENT`, the raw values' mean).

A reward that compares to references (bleu, rouge, token_similarity...) reads them from a dataset column: the
`reference_column` given, else the first of `reference`, `references`, `solution`, `ground_truth`, `answer` the
dataset has. A reward that reads other record fields (code_tests' `tests`, a custom reward's `fields`) reads them
from the dataset columns of those names.
"""

from __future__ import annotations

from typing import Any, Sequence

from rewardkit.errors import RewardkitError
from rewardkit.integrations.common import SharedReward, as_prompt, as_response, shared_reward

REFERENCE_COLUMNS = ("reference", "references", "solution", "ground_truth", "answer")


class TRLReward:
    """`f(prompts, completions, completion_ids=None, **kwargs) -> list[float]`; see the module docstring."""

    def __init__(self, reward: SharedReward, name: str, reference_column: str | None):
        self.reward = reward
        self.__name__ = name
        self.reference_column = reference_column

    def _references(self, columns: dict[str, Any], count: int) -> list | None:
        if not self.reward.needs_reference:
            return None
        candidates = [self.reference_column] if self.reference_column else REFERENCE_COLUMNS
        column = next((c for c in candidates if c in columns), None)
        if column is None:
            data_columns = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))
            raise RewardkitError(f"reward {self.reward.source} compares to references, but the dataset has no "
                                 f"{' or '.join(candidates)} column (its columns: {', '.join(data_columns) or 'none'})"
                                 f"; pass reference_column=")
        values = list(columns[column])
        if len(values) != count:
            raise RewardkitError(f"column {column!r} has {len(values)} values for {count} completions")
        return values

    def _fields(self, columns: dict[str, Any], count: int) -> list[dict] | None:
        names = self.reward.needs_fields
        if not names:
            return None
        missing = [name for name in names if name not in columns]
        if missing:
            data_columns = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))
            raise RewardkitError(f"reward {self.reward.source} reads each record's {', '.join(missing)}, but the "
                                 f"dataset has no such column (its columns: {', '.join(data_columns) or 'none'})")
        values = {name: list(columns[name]) for name in names}
        for name, column in values.items():
            if len(column) != count:
                raise RewardkitError(f"column {name!r} has {len(column)} values for {count} completions")
        return [{name: values[name][j] for name in names} for j in range(count)]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                 **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        scored = self.reward.score([as_prompt(p) for p in prompts], [as_response(c) for c in completions],
                                   self._references(kwargs, len(completions)), self._fields(kwargs, len(completions)))
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and scored.scores:
            for component, values in scored.components.items():
                log_metric(f"rewards/{self.__name__}/{component}", sum(values) / len(values))
        return scored.scores


def reward_func(source: Any, name: str = "rewardkit", reference_column: str | None = None) -> TRLReward:
    """A GRPOTrainer `reward_funcs` entry scoring with `source`: a reward spec, a reward model (preset or folder), a
    `rewardkit serve` URL, or a built reward (see `rewardkit.integrations.common`). `name` is what TRL logs it
    under."""
    return TRLReward(shared_reward(source), name, reference_column)
