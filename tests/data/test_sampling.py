"""Selecting training records: the cap per prompt, length balance, mixture weights and the prompt-level split, each
against counts worked out by hand."""

from __future__ import annotations

import random

import pytest

from rewardkit.data import PreferencePair, RatedResponse, train_val_split
from rewardkit.data.sampling import (Selection, SourceWeight, balance, cap_per_prompt, length_classes,
                                     parse_mixture, parse_weight, split_and_select, take)
from rewardkit.errors import RewardkitError


def pair(prompt: str, chosen_len: int, rejected_len: int, tag: str = "") -> PreferencePair:
    """A pair whose chosen and rejected responses have the given lengths in characters (and in words: 'x ' each)."""
    return PreferencePair(prompt, ("c" + tag).ljust(chosen_len, "c"), ("r" + tag).ljust(rejected_len, "r"))


def by_prompt(records) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.prompt] = counts.get(r.prompt, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------------ cap per prompt

def test_cap_per_prompt_counts_and_order():
    # prompt a: 5 pairs, b: 2, c: 1; cap 2 -> 2 + 2 + 1 = 5 kept, 3 dropped (all from a)
    records = [pair("a", 10, 5, str(i)) for i in range(5)] + [pair("b", 10, 5, str(i)) for i in range(2)] + \
        [pair("c", 10, 5)]
    random.Random(0).shuffle(records)
    kept = cap_per_prompt(records, 2, seed=0)
    assert by_prompt(kept) == {"a": 2, "b": 2, "c": 1}
    assert kept == [r for r in records if any(r is k for k in kept)]  # input order kept
    assert cap_per_prompt(records, 2, seed=0) == kept  # seeded
    assert cap_per_prompt(records, 5, seed=0) == records  # nothing over the cap: all kept
    picks = {tuple(r.chosen for r in cap_per_prompt(records, 2, seed=s) if r.prompt == "a") for s in range(10)}
    assert len(picks) > 1  # the choice depends on the seed


def test_cap_per_prompt_does_not_depend_on_file_order():
    records = [pair(f"p{i % 7}", 10, 5, str(i)) for i in range(60)]
    reordered = records[::-1]
    assert {r.chosen for r in cap_per_prompt(records, 3, 4)} == {r.chosen for r in cap_per_prompt(reordered, 3, 4)}


# ------------------------------------------------------------------------------------------------ length balance

def test_length_classes_and_balance_counts():
    # 6 chosen longer, 2 chosen shorter, 1 tie -> keep 2 + 2 + the tie = 5 of 9; 4 chosen-longer pairs dropped
    records = [pair(f"l{i}", 20, 10) for i in range(6)] + [pair("s0", 5, 10), pair("s1", 3, 9), pair("t", 7, 7)]
    shorter, longer, equal = length_classes(records)
    assert (len(shorter), len(longer), len(equal)) == (2, 6, 1)
    kept_shorter, kept_longer = balance(shorter, longer, seed=0)
    assert kept_shorter == shorter and len(kept_longer) == 2
    assert kept_longer == [r for r in longer if r in kept_longer]
    assert balance(shorter, longer, seed=0) == (kept_shorter, kept_longer)


def test_length_classes_use_the_given_length_function():
    # by characters the chosen is longer; by words ("tokens") it is shorter
    records = [PreferencePair("p", "aaaaaaaaaaaaaaaaaaaa", "b b b")]
    assert [len(c) for c in length_classes(records)] == [0, 1, 0]
    words = lambda texts: [len(t.split()) for t in texts]
    assert [len(c) for c in length_classes(records, words)] == [1, 0, 0]


def test_balance_refuses_other_kinds_of_feedback():
    with pytest.raises(RewardkitError, match="balances pairs"):
        length_classes([RatedResponse("p", "r", 1.0)])


# ------------------------------------------------------------------------------------------------ mixture weights

def test_parse_weight_spellings_and_errors():
    assert parse_weight("0.3") == SourceWeight(share=0.3)
    assert parse_weight(2) == SourceWeight(share=2.0)
    assert parse_weight("n=6000") == SourceWeight(count=6000)
    for bad, message in (("abc", "neither a weight"), ("0", "above 0"), ("-1", "above 0"), ("nan", "finite"),
                         ("n=1.5", "whole number"), ("n=0", "at least 1")):
        with pytest.raises(RewardkitError, match=message):
            parse_weight(bad)
    with pytest.raises(RewardkitError, match="2 weight\\(s\\) for 3 --data source"):
        parse_mixture(["1", "1"], ["a", "b", "c"])
    assert parse_mixture([], ["a"]) is None


def test_take_shares_and_repeats():
    rng = random.Random(0)
    items = list(range(10))
    assert take(items, 1.0, rng) == items
    half = take(items, 0.3, rng)
    assert len(half) == 3 and half == sorted(half) and set(half) <= set(items)
    twice_and_a_half = take(list(range(4)), 2.5, rng)
    assert len(twice_and_a_half) == 10  # 2 copies of 4, then 2 of the 4 once more
    assert all(twice_and_a_half.count(i) in (2, 3) for i in range(4))


def test_mixture_counts_on_the_training_side():
    # a: 40 pairs on 40 prompts, weight 1 -> 40; b: 100 pairs, weight 0.3 -> 30; c: 10 pairs, n=25 -> 25 (2 copies
    # of 10, then 5 more)
    a = [pair(f"a{i}", 10, 5) for i in range(40)]
    b = [pair(f"b{i}", 10, 5) for i in range(100)]
    c = [pair(f"c{i}", 10, 5) for i in range(10)]
    selection = Selection(mixture=parse_mixture(["1", "0.3", "n=25"], ["a", "b", "c"]), seed=0)
    train, val, lines = split_and_select([a, b, c], ["a", "b", "c"], selection, split=False)
    assert val == []
    assert sum(r.prompt.startswith("a") for r in train) == 40
    assert sum(r.prompt.startswith("b") for r in train) == 30
    assert sum(r.prompt.startswith("c") for r in train) == 25
    assert all(train.count(r) in (2, 3) for r in c)
    assert lines == ["training: mixture (weights of --mixture, seed 0): a x1: 40 of 40 pairs; b x0.3: 30 of 100 "
                     "pairs; c n=25: 25 of 10 pairs"]
    again, _, _ = split_and_select([a, b, c], ["a", "b", "c"], selection, split=False)
    assert [id(r) for r in again] == [id(r) for r in train]  # seeded


def test_mixture_after_the_split_validation_takes_the_training_share():
    a = [pair(f"a{i}", 10, 5) for i in range(100)]
    b = [pair(f"b{i}", 10, 5) for i in range(200)]
    selection = Selection(mixture=parse_mixture(["1", "0.5"], ["a", "b"]), seed=0)
    train, val, _ = split_and_select([a, b], ["a", "b"], selection, val_fraction=0.1, seed=0)
    plain_train, plain_val = train_val_split(a + b, 0.1, seed=0)
    train_b = sum(r.prompt.startswith("b") for r in plain_train)
    val_b = sum(r.prompt.startswith("b") for r in plain_val)
    assert sum(r.prompt.startswith("b") for r in train) == round(0.5 * train_b)
    assert sum(r.prompt.startswith("b") for r in val) == round(0.5 * val_b)
    assert [r for r in train if r.prompt.startswith("a")] == [r for r in plain_train if r.prompt.startswith("a")]


def test_balance_then_mixture_keeps_the_balance_exact():
    # 30 chosen longer, 10 chosen shorter, 4 equal -> balanced: 10 + 10 + 4 = 24; share 0.5 -> 5 + 5 + 2 = 12
    records = [pair(f"l{i}", 20, 10) for i in range(30)] + [pair(f"s{i}", 5, 10) for i in range(10)] + \
        [pair(f"e{i}", 8, 8) for i in range(4)]
    selection = Selection(balance_length=True, mixture=[SourceWeight(share=0.5)], seed=3)
    train, _, lines = split_and_select([records], ["hh"], selection, split=False)
    shorter, longer, equal = length_classes(train)
    assert (len(shorter), len(longer), len(equal)) == (5, 5, 2)
    assert lines[0] == ("training: hh: balanced by length (characters, --balance-length): 10 pairs with the chosen "
                        "response shorter, 30 longer, 4 equal; dropped 20 chosen-longer pairs at random (seed 3), "
                        "kept 24")


# ------------------------------------------------------------------------------------------------ on each side

def alpaca_like(n_prompts: int = 40, per_prompt: int = 30, seed: int = 0) -> list[PreferencePair]:
    """Many answers per instruction, the chosen one longer in most pairs (as in AlpacaEval)."""
    rng = random.Random(seed)
    records = []
    for p in range(n_prompts):
        for j in range(per_prompt):
            longer = rng.random() < 0.85
            records.append(pair(f"instruction {p}", 40 if longer else 10, 20, f"{p}.{j}"))
    return records


def test_prompt_level_split_with_repeated_prompts_and_every_option():
    records = alpaca_like()
    selection = Selection(max_per_prompt=10, balance_length=True, seed=0)
    train, val, lines = split_and_select([records], ["alpaca"], selection, val_fraction=0.1, seed=0)
    assert not {r.prompt for r in train} & {r.prompt for r in val}  # no prompt on both sides
    # 10% of 40 prompts of 30 pairs each: 120 pairs = 4 whole prompts, capped to 10 pairs each (lines[2]); balance
    # may then drop a prompt whose kept pairs all have the longer answer chosen
    assert len({r.prompt for r in val}) <= 4
    for side in (train, val):
        assert max(by_prompt(side).values()) <= 10
        shorter, longer, _ = length_classes(side)
        assert len(shorter) == len(longer) > 0  # balanced on each side exactly
    assert [line.split(":")[0] for line in lines] == ["training", "training", "validation", "validation"]
    assert "kept 360 of 1080 pairs; dropped 720 from 36 prompt(s)" in lines[0]
    assert "kept 40 of 120 pairs; dropped 80 from 4 prompt(s)" in lines[2]


def test_no_selection_is_exactly_the_plain_split():
    records = alpaca_like(20, 5)
    sources = [records[:50], records[50:]]
    train, val, lines = split_and_select(sources, ["a", "b"], Selection(), val_fraction=0.1, seed=2)
    assert (train, val, lines) == (*train_val_split(records, 0.1, seed=2), [])
