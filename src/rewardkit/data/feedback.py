"""Rows of rankings, ratings and binary feedback -> RankedGroup, RatedResponse, BinaryFeedback.

- Rankings: `{prompt, responses}` best first, or `{prompt, responses, ranks}` with one rank per response (lower is
  better, any numbers; ties are rejected because a RankedGroup is a strict order).
- Ratings: `{prompt, response, score}`, any finite number (Likert or real-valued).
- Binary: `{prompt, response, label}`, label 1/0, true/false, up/down, good/bad or positive/negative.
`response` may also be called `completion` (TRL's unpaired format); in CSV a list is written as JSON text.
"""

from __future__ import annotations

from rewardkit.data.fields import BadRecord, RowContext, check_number, check_text
from rewardkit.data.readers import Row
from rewardkit.data.types import BinaryFeedback, Location, RankedGroup, RatedResponse

_LABELS = {"1": 1, "0": 0, "true": 1, "false": 0, "up": 1, "down": 0, "good": 1, "bad": 0, "positive": 1,
           "negative": 0, "1.0": 1, "0.0": 0}


def parse_ranking(row: Row, location: Location, ctx: RowContext) -> list[RankedGroup]:
    prompt = ctx.prompt(row)
    field = ctx.field("responses")
    responses = [check_text(text, f"{field} item {i + 1}") for i, text in enumerate(ctx.list(row, "responses"))]
    ranks = ctx.list(row, "ranks", required=False)
    if ranks is not None:
        responses = order_by_ranks(responses, ranks, ctx.field("ranks"))
    return ctx.group(location, prompt, responses, ctx.subset(row))


def order_by_ranks(responses: list[str], ranks: list, field: str) -> list[str]:
    """The responses best first, given one rank per response (lower is better); ties are a bad record."""
    if len(ranks) != len(responses):
        raise BadRecord(f"{field} has {len(ranks)} ranks for {len(responses)} responses")
    numbers = [check_number(rank, f"{field} item {i + 1}") for i, rank in enumerate(ranks)]
    first_with = {}
    for index, number in enumerate(numbers):
        if number in first_with:
            raise BadRecord(f"{field} has a tie: responses {first_with[number] + 1} and {index + 1} share rank "
                            f"{number:g} (a ranking must order them; drop or break tied responses)")
        first_with[number] = index
    return [responses[i] for i in sorted(range(len(responses)), key=numbers.__getitem__)]


def parse_rating(row: Row, location: Location, ctx: RowContext) -> list[RatedResponse]:
    prompt, response = ctx.prompt(row), ctx.text(row, "response")
    return ctx.rated(location, prompt, response, ctx.number(row, "score"), ctx.subset(row))


def parse_binary(row: Row, location: Location, ctx: RowContext) -> list[BinaryFeedback]:
    prompt, response = ctx.prompt(row), ctx.text(row, "response")
    return ctx.binary(location, prompt, response, binary_label(ctx.get(row, "label"), ctx.field("label")),
                      ctx.subset(row))


def binary_label(value, field: str) -> int:
    """1 for a thumbs up, 0 for a thumbs down, from the usual spellings."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise BadRecord(f"{field} must be 1/0, true/false, up/down, good/bad or positive/negative, got {value!r}")
