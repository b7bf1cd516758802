"""train_val_split: deterministic from the seed, independent of record order, no prompt on both sides."""

from __future__ import annotations

import random

import pytest

from rewardkit.data import PreferencePair, train_val_split
from rewardkit.errors import RewardkitError


def pairs(n_prompts=200, per_prompt=(1, 3), seed=1):
    rng = random.Random(seed)
    return [PreferencePair(f"prompt {i}", f"good {i}.{j}", f"bad {i}.{j}")
            for i in range(n_prompts) for j in range(rng.randint(*per_prompt))]


def as_keys(records):
    return sorted((r.prompt, r.chosen) for r in records)


def test_sizes_and_no_prompt_on_both_sides():
    records = pairs()
    train, val = train_val_split(records, val_fraction=0.1, seed=0)
    assert len(train) + len(val) == len(records)
    assert abs(len(val) - round(0.1 * len(records))) <= 2
    assert not {r.prompt for r in train} & {r.prompt for r in val}
    assert as_keys(train + val) == as_keys(records)


def test_deterministic_and_seed_dependent():
    records = pairs()
    first = train_val_split(records, seed=0)
    assert train_val_split(records, seed=0) == first
    assert as_keys(train_val_split(records, seed=1)[1]) != as_keys(first[1])


def test_independent_of_record_order_and_keeps_input_order():
    records = pairs()
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    _, val = train_val_split(records, seed=3)
    _, val_shuffled = train_val_split(shuffled, seed=3)
    assert as_keys(val) == as_keys(val_shuffled)
    assert val == [r for r in records if r in val]


def test_conversation_prompts_group_too():
    convo = [{"role": "user", "content": "hi"}]
    records = [PreferencePair(list(convo), f"a{i}", f"b{i}") for i in range(5)] + pairs(20, (1, 1))
    train, val = train_val_split(records, val_fraction=0.2, seed=0)
    assert sum(r.prompt == convo for r in train) in (0, 5)


def test_edge_fractions():
    records = pairs(10, (1, 1))
    assert train_val_split(records, val_fraction=0.0) == (records, [])
    assert len(train_val_split(records, val_fraction=0.01)[1]) == 1  # at least one validation record
    with pytest.raises(RewardkitError, match="val_fraction must be in"):
        train_val_split(records, val_fraction=1.0)
    same = [PreferencePair("p", f"a{i}", f"b{i}") for i in range(4)]
    with pytest.raises(RewardkitError, match="sharing 1 prompt"):
        train_val_split(same)


def test_records_without_prompt_split_one_by_one_independent_of_order():
    from rewardkit.data import BinaryFeedback

    records = [BinaryFeedback("", f"review {i}", i % 2) for i in range(50)]
    train, val = train_val_split(records, 0.2, seed=0)
    assert len(val) == 10 and len(train) == 40
    _, val_reversed = train_val_split(records[::-1], 0.2, seed=0)
    assert sorted(r.response for r in val) == sorted(r.response for r in val_reversed)
