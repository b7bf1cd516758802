"""What a load did besides returning records: records skipped (and why), empty responses, dropped messages.

The loaders apply three policies while reading and record every decision here, so nothing is dropped silently:
- `on_bad_record`: "fail" (default) raises a RewardkitError naming file:line; "skip" drops the record and lists it.
- `on_identical`: a pair (or ranked group) whose responses are identical carries no preference; "skip" (default)
  drops it and lists it, "fail" raises, "keep" keeps it and lists it (for scoring every record, not training).
- `on_empty_response`: an empty or whitespace-only response is a real outcome in human-feedback data (a model that
  said nothing; HH has 8, LLMBar 1), so "keep" (default) keeps it and lists it; "skip" drops it; "fail" raises.
An empty prompt is always a bad record.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from rewardkit.data.types import Location
from rewardkit.errors import RewardkitError

BadRecordPolicy = Literal["fail", "skip"]
IdenticalPolicy = Literal["skip", "fail", "keep"]
EmptyResponsePolicy = Literal["keep", "skip", "fail"]

# How many locations a printed summary line shows before "and N more" (the report object keeps them all).
SHOWN_LOCATIONS = 10


@dataclass(frozen=True, slots=True)
class Problem:
    """One record that was skipped (or kept with a note), with where it is and why."""

    location: Location
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class LoadReport:
    """Everything a load decided about the records it read; `summary_lines()` is what gets printed to stderr."""

    on_bad_record: BadRecordPolicy = "fail"
    on_identical: IdenticalPolicy = "skip"
    on_empty_response: EmptyResponsePolicy = "keep"
    loaded: int = 0
    bad: list[Problem] = field(default_factory=list)
    identical: list[Problem] = field(default_factory=list)
    empty_response: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_choice("on_bad_record", self.on_bad_record, ("fail", "skip"))
        _check_choice("on_identical", self.on_identical, ("skip", "fail", "keep"))
        _check_choice("on_empty_response", self.on_empty_response, ("keep", "skip", "fail"))

    @property
    def skipped(self) -> list[Problem]:
        """Every record that was read but not returned, in the order met."""
        dropped = self.bad + (self.identical if self.on_identical == "skip" else []) + \
            (self.empty_response if self.on_empty_response == "skip" else [])
        return sorted(dropped, key=lambda p: (p.location.file, p.location.line))

    # -- decisions, called by the loaders -------------------------------------------------------------------------
    def bad_record(self, location: Location, reason: str) -> None:
        if self.on_bad_record == "fail":
            raise RewardkitError(reason, location)
        self.bad.append(Problem(location, reason))

    def keep_identical(self, location: Location, what: str = "chosen is identical to rejected") -> bool:
        if self.on_identical == "fail":
            raise RewardkitError(f"{what} (on_identical='fail')", location)
        self.identical.append(Problem(location, what))
        return self.on_identical == "keep"

    def keep_empty_response(self, location: Location, what: str) -> bool:
        if self.on_empty_response == "fail":
            raise RewardkitError(f"{what} (on_empty_response='fail')", location)
        self.empty_response.append(Problem(location, what))
        return self.on_empty_response == "keep"

    # -- output ---------------------------------------------------------------------------------------------------
    def summary_lines(self) -> list[str]:
        lines = []
        if self.bad:
            lines.append(f"skipped {len(self.bad)} bad record(s) (on_bad_record='skip'): " + _listing(self.bad, True))
        if self.identical:
            action = "kept" if self.on_identical == "keep" else "skipped"
            lines.append(f"{action} {len(self.identical)} record(s) whose responses are identical "
                         f"(on_identical='{self.on_identical}'): " + _listing(self.identical, False))
        if self.empty_response:
            action = "kept" if self.on_empty_response == "keep" else "skipped"
            lines.append(f"{action} {len(self.empty_response)} record(s) with an empty response "
                         f"(on_empty_response='{self.on_empty_response}'): " + _listing(self.empty_response, False))
        return lines + self.notes

    def print_summary(self, stream=None) -> None:
        for line in self.summary_lines():
            print(f"rewardkit: {line}", file=stream or sys.stderr)


class LoadedRecords(list):
    """The records a loader returns (a plain list) with the `report` of what was skipped or noted on the way."""

    def __init__(self, records, report: LoadReport):
        super().__init__(records)
        self.report = report


def _listing(problems: list[Problem], with_reasons: bool) -> str:
    shown = [str(p) if with_reasons else str(p.location) for p in problems[:SHOWN_LOCATIONS]]
    more = len(problems) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RewardkitError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
