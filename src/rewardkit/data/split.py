"""A deterministic train/validation split that keeps records with the same prompt on the same side."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from rewardkit.data.convert import prompt_key
from rewardkit.errors import RewardkitError

R = TypeVar("R")


def train_val_split(records: Sequence[R], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[R], list[R]]:
    """(train, validation) lists of the records, each keeping the input order.

    Records are grouped by their exact prompt (records without a prompt, e.g. reviews labelled by sentiment, are
    grouped by their own text), so that pairs (or ratings, rankings) about the same prompt never sit on
    both sides: a model must not be validated on a prompt it was trained on. Groups are ordered by a hash of
    (seed, prompt), which is a seeded permutation that does not depend on file order or on which other records are
    loaded; validation takes groups in that order as long as they fit in round(val_fraction * n) records (at least
    one record when val_fraction > 0), skipping groups too large to fit.
    """
    if not 0 <= val_fraction < 1:
        raise RewardkitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(split_group_key(record), []).append(index)
    target = max(1, round(val_fraction * len(records))) if val_fraction > 0 else 0
    if target and len(groups) < 2:
        raise RewardkitError(f"cannot split {len(records)} record(s) sharing {len(groups)} prompt(s) into train and "
                             f"validation without putting one prompt on both sides")
    ordered = sorted(groups, key=lambda key: (_seeded_hash(seed, key), key))
    in_validation = set()
    taken = 0
    for key in ordered:
        if taken + len(groups[key]) <= target:
            in_validation.update(groups[key])
            taken += len(groups[key])
    if target and not in_validation:  # every group is larger than the target: take the first, but keep a train side
        in_validation.update(groups[ordered[0]])
    train = [record for index, record in enumerate(records) if index not in in_validation]
    validation = [record for index, record in enumerate(records) if index in in_validation]
    return train, validation


def split_group_key(record) -> str:
    if record.prompt:
        return prompt_key(record.prompt)
    text = getattr(record, "response", None) or getattr(record, "chosen", None) or "".join(record.responses)
    return "\x00" + text  # cannot collide with a non-empty prompt's key


def _seeded_hash(seed: int, key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=str(seed).encode()).digest()
