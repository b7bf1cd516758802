"""Choosing which loaded records train: a cap per prompt, length balance, and a mixture of sources.

train-rm reads each `--data` path as one source and, after the train/validation split (`train_val_split`, by prompt),
applies these steps to each side, in this order, each one seeded and reported in a line (nothing is dropped silently):

1. `max_per_prompt` N: a prompt with more than N records keeps N of them, chosen at random (seeded by the seed and
   the prompt, so the choice does not depend on file order). AlpacaEval, for one, has ~120 pairs per instruction.
2. `balance_length`: pairs only. Within each source, as many pairs whose chosen response is shorter than the
   rejected one as pairs whose chosen response is longer: the surplus of the larger side is dropped at random. Pairs
   of equal length are kept (they favour neither). Lengths come from a `lengths` function (train-rm passes the
   model's tokenizer: tokens of the response alone); without one, characters.
3. `mixture`: one weight per source. A share W (a number) takes W times the source: 1 all of it, 0.3 a seeded 30%
   sample, 2.5 every record twice and a seeded half once more. A count `n=N` takes N records (whole copies when N
   exceeds the source, then a seeded sample). After balancing, the sample is drawn from the shorter-chosen and the
   longer-chosen pairs alike, so the balance stays exact (an odd count or an odd share may leave one pair over).
   On the validation side a source takes the share its training side took (a count `n=N` becomes N over the
   training side's size), at most 1: validation never repeats a record.

A record keeps its object identity through every step (repeats are the same object twice).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewardkit.data.split import _seeded_hash, split_group_key, train_val_split
from rewardkit.data.types import PreferencePair
from rewardkit.errors import RewardkitError

Lengths = Callable[[list[str]], list[int]]


@dataclass(frozen=True)
class SourceWeight:
    """How much of one source to take: `share` times its records, or exactly `count` records."""

    share: float | None = None
    count: int | None = None

    def __str__(self) -> str:
        return f"n={self.count}" if self.count is not None else f"x{self.share:g}"

    def target(self, size: int) -> float:
        """The number of records this weight asks of a source of `size` (before rounding)."""
        return float(self.count) if self.count is not None else self.share * size


def parse_weight(value: str | float | int, where: str = "--mixture") -> SourceWeight:
    """A weight as written: a share (`0.3`, `1`, `2.5`) or a count (`n=6000`)."""
    text = str(value).strip()
    if text.lower().startswith("n="):
        try:
            count = int(text[2:])
        except ValueError:
            raise RewardkitError(f"{where}: {text!r} is not a count: write n=N with N a whole number, e.g. n=6000")
        if count < 1:
            raise RewardkitError(f"{where}: {text!r}: a count must be at least 1 (leave the source out instead)")
        return SourceWeight(count=count)
    try:
        share = float(text)
    except ValueError:
        raise RewardkitError(f"{where}: {text!r} is neither a weight (a number such as 0.3 or 2) nor a count "
                             f"(n=N, e.g. n=6000)")
    if not math.isfinite(share) or share <= 0:
        raise RewardkitError(f"{where}: {text!r}: a weight must be a finite number above 0 (leave the source out "
                             f"instead of giving it 0)")
    return SourceWeight(share=share)


def parse_mixture(values: Sequence[str | float | int], sources: Sequence[str]) -> list[SourceWeight] | None:
    """One SourceWeight per source, in order; None when no mixture is given (every source taken once, as read)."""
    if not values:
        return None
    if len(values) != len(sources):
        raise RewardkitError(f"--mixture has {len(values)} weight(s) for {len(sources)} --data source(s): give one "
                             f"per source, in the same order ({', '.join(sources)})")
    return [parse_weight(value) for value in values]


@dataclass
class Selection:
    """The selection options (see the module docstring); `active` is False when none is asked for."""

    max_per_prompt: int = 0
    balance_length: bool = False
    mixture: list[SourceWeight] | None = None
    seed: int = 0
    unit: str = "pairs"  # what a record is called in the report lines
    length_unit: str = "characters"  # what `lengths` counts, for the report

    def __post_init__(self) -> None:
        if self.max_per_prompt < 0:
            raise RewardkitError(f"--max-pairs-per-prompt must be at least 0 (0: no cap), got {self.max_per_prompt}")

    @property
    def active(self) -> bool:
        return bool(self.max_per_prompt or self.balance_length or self.mixture)


@dataclass
class _Side:
    """One side of the split: its records per source, and the report lines of what was done to them."""

    name: str
    sources: list[list]
    lines: list[str] = field(default_factory=list)

    @property
    def records(self) -> list:
        return [record for source in self.sources for record in source]


def split_and_select(sources: Sequence[Sequence], labels: Sequence[str], selection: Selection,
                     val_fraction: float = 0.1, seed: int = 0, lengths: Lengths | None = None,
                     split: bool = True) -> tuple[list, list, list[str]]:
    """(train, validation, report lines) of records read from several sources (one list per source, named by
    `labels`): split by prompt over all of them as `train_val_split` does, then the selection applied to each side.

    With `split=False` every record trains (the caller has separate validation data) and the validation list is
    empty. With no selection the result is exactly `train_val_split` of the sources joined in order.
    """
    everything = [record for source in sources for record in source]
    if split:
        train, val = train_val_split(everything, val_fraction, seed=seed)
    else:
        train, val = everything, []
    if not selection.active:
        return train, val, []
    source_of = {id(record): s for s, source in enumerate(sources) for record in source}
    sides = [_Side(name, [[] for _ in sources]) for name in ("training", "validation")]
    for side, records in zip(sides, (train, val)):
        for record in records:
            side.sources[source_of[id(record)]].append(record)
    training, validation = sides
    took = _select(training, labels, selection, lengths, shares=None)
    if val:
        _select(validation, labels, selection, lengths, shares=took)
    lines = [f"{side.name}: {line}" for side in sides for line in side.lines]
    return training.records, validation.records, lines


def _select(side: _Side, labels: Sequence[str], selection: Selection, lengths: Lengths | None,
            shares: list[float] | None) -> list[float]:
    """Cap, balance and mix one side in place; return the share of each source that the mixture took."""
    unit = selection.unit
    if selection.max_per_prompt:
        before = sum(map(len, side.sources))
        kept = set(map(id, cap_per_prompt(side.records, selection.max_per_prompt, selection.seed)))
        dropped_prompts = len({split_group_key(r) for r in side.records if id(r) not in kept})
        side.sources = [[r for r in source if id(r) in kept] for source in side.sources]
        after = sum(map(len, side.sources))
        side.lines.append(f"at most {selection.max_per_prompt} {unit} per prompt (--max-pairs-per-prompt): kept "
                          f"{after} of {before} {unit}; dropped {before - after} from {dropped_prompts} prompt(s), "
                          f"chosen at random (seed {selection.seed})")
    classes: list[tuple[list, list, list] | None] = [None] * len(side.sources)
    if selection.balance_length:
        for s, source in enumerate(side.sources):
            if not source:
                continue
            shorter, longer, equal = length_classes(source, lengths)
            kept = balance(shorter, longer, selection.seed, f"{s}")
            dropped = len(shorter) + len(longer) - 2 * len(kept[0])
            heavier = "longer" if len(longer) > len(shorter) else "shorter"
            side.lines.append(f"{labels[s]}: balanced by length ({selection.length_unit}, --balance-length): "
                              f"{len(shorter)} {unit} with the chosen response shorter, {len(longer)} longer, "
                              f"{len(equal)} equal; dropped {dropped} chosen-{heavier} {unit} at random (seed "
                              f"{selection.seed}), kept {2 * len(kept[0]) + len(equal)}")
            classes[s] = (kept[0], kept[1], equal)
            kept_ids = {id(r) for group in classes[s] for r in group}
            side.sources[s] = [r for r in source if id(r) in kept_ids]
    took = [1.0] * len(side.sources)
    if selection.mixture:
        parts = []
        for s, (source, weight) in enumerate(zip(side.sources, selection.mixture)):
            if not source:
                took[s] = 0.0
                parts.append(f"{labels[s]} {weight}: 0 {unit} (none on this side)")
                continue
            share = weight.target(len(source)) / len(source) if shares is None else min(shares[s], 1.0)
            took[s] = share
            groups = list(classes[s]) if classes[s] is not None else [source]
            rng = random.Random(f"{selection.seed}\x00mixture\x00{s}\x00{side.name}")
            picked = [record for group in groups for record in take(group, share, rng)]
            side.sources[s] = picked
            parts.append(f"{labels[s]} {weight}: {len(picked)} of {len(source)} {unit}")
        how = "weights of --mixture" if shares is None else "the training side's shares, at most 1"
        side.lines.append(f"mixture ({how}, seed {selection.seed}): " + "; ".join(parts))
    return took


def cap_per_prompt(records: Sequence, cap: int, seed: int = 0) -> list:
    """The records with at most `cap` per prompt (records without a prompt count by their own text), keeping input
    order. A prompt with more keeps `cap` of them chosen at random: those with the smallest hash of (seed, content),
    so the choice depends on the seed, not on the order of the files."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(split_group_key(record), []).append(index)
    keep: set[int] = set()
    for indices in groups.values():
        if len(indices) > cap:  # the `cap` with the smallest seeded hash of their content: a seeded random choice
            indices = sorted(indices, key=lambda i: (_seeded_hash(seed, _content(records[i])), i))[:cap]
        keep.update(indices)
    return [record for index, record in enumerate(records) if index in keep]


def _content(record) -> str:
    """A record's fields but its source, as text: what makes it this record wherever it was read."""
    return repr([getattr(record, name) for name in record.__slots__ if name != "source"])


def length_classes(pairs: Sequence, lengths: Lengths | None = None) -> tuple[list, list, list]:
    """(pairs whose chosen response is shorter, longer, of equal length), each in input order. `lengths` maps
    texts to their lengths (e.g. tokens); without it, characters."""
    for pair in pairs:
        if not isinstance(pair, PreferencePair):
            raise RewardkitError(f"--balance-length balances pairs (chosen against rejected length); this data holds "
                                 f"{type(pair).__name__} records")
    measure = lengths or (lambda texts: [len(text) for text in texts])
    chosen = measure([pair.chosen for pair in pairs])
    rejected = measure([pair.rejected for pair in pairs])
    shorter, longer, equal = [], [], []
    for pair, c, r in zip(pairs, chosen, rejected):
        (shorter if c < r else longer if c > r else equal).append(pair)
    return shorter, longer, equal


def balance(shorter: list, longer: list, seed: int = 0, salt: str = "") -> tuple[list, list]:
    """(shorter, longer) cut to the same size: the larger one keeps a seeded random sample, in input order."""
    n = min(len(shorter), len(longer))
    rng = random.Random(f"{seed}\x00balance\x00{salt}")

    def cut(group: list) -> list:
        if len(group) == n:
            return list(group)
        keep = set(rng.sample(range(len(group)), n))
        return [record for index, record in enumerate(group) if index in keep]

    return cut(shorter), cut(longer)


def take(records: list, share: float, rng: random.Random) -> list:
    """round(share x len) records: whole copies of the list while the share is 1 or more, then a seeded sample without
    replacement for the rest, in input order."""
    count = round(share * len(records))
    copies, rest = divmod(count, len(records)) if records else (0, 0)
    sample = set(rng.sample(range(len(records)), rest))
    return list(records) * copies + [record for index, record in enumerate(records) if index in sample]
