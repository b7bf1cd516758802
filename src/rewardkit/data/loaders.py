"""Loading feedback of every shape from files, folders and Hugging Face datasets.

`paths` is a file, a folder (every JSONL/JSON/CSV/TSV file inside, recursively, in sorted order; saved HF datasets
inside are read as such), a `datasets.Dataset`/`DatasetDict`, `hf:NAME[:SPLIT]`, or a list of those. The shape of
each file's rows is detected from its columns (after the `columns` mapping, e.g. {"prompt": "question"}):

    OASST trees          prompt: {text, role, replies: [...]} or a root message  -> rankings
    LLMBar               input, output_1, output_2, label (1|2)                   -> pairs
    pairs                prompt, chosen, rejected [, margin] [, subset]           -> pairs (texts or conversations)
    dialogue pairs       chosen, rejected (HH dialogues or TRL conversations)     -> pairs (prompt found in them)
    rankings             prompt, responses [, ranks]                              -> rankings
    ratings              prompt, response, score                                  -> ratings
    binary               prompt, response, label                                  -> binary

`load_pairs` also accepts ranking files and returns the pairs they imply (rankings_to_pairs). A record's subset is its
`subset` field, else the file's name (helpful-base.test.jsonl.gz -> helpful-base; LLMBar's X/dataset.json -> X).
Every loader returns a list (LoadedRecords) whose `.report` lists what was skipped or noted; that summary is also
printed to stderr. See rewardkit.data.report for the on_bad_record / on_identical / on_empty_response policies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Literal

from rewardkit.data.convert import rankings_to_pairs
from rewardkit.data.feedback import parse_binary, parse_ranking, parse_rating
from rewardkit.data.fields import BadRecord, RowContext, check_columns
from rewardkit.data.oasst import OasstStats, is_oasst_tree, parse_oasst_tree
from rewardkit.data.pairs import parse_explicit_pair, parse_implicit_pair, parse_llmbar_pair
from rewardkit.data.readers import Row, Source, expand_sources, iter_rows
from rewardkit.data.report import (BadRecordPolicy, EmptyResponsePolicy, IdenticalPolicy, LoadedRecords,
                                   LoadReport)
from rewardkit.data.types import Location
from rewardkit.errors import RewardkitError

Kind = Literal["pairs", "rankings", "ratings", "binary"]
Columns = dict[str, str | None] | None
# Rows read before deciding a file's shape: their columns together decide it, so one incomplete first row does not.
_DETECTION_ROWS = 20


@dataclass(frozen=True)
class _Shape:
    name: str
    kind: Kind
    columns: str
    matches: Callable[[set[str], Row, RowContext], bool]
    parse: Callable[..., list]


_SHAPES = (
    _Shape("OASST trees", "rankings", "OASST message trees", lambda keys, row, ctx: is_oasst_tree(row),
           parse_oasst_tree),
    _Shape("LLMBar pairs", "pairs", "input/output_1/output_2/label",
           lambda keys, row, ctx: {"input", "output_1", "output_2", "label"} <= keys, parse_llmbar_pair),
    _Shape("pairs", "pairs", "prompt/chosen/rejected",
           lambda keys, row, ctx: ctx.has(keys, "prompt", "chosen", "rejected"), parse_explicit_pair),
    _Shape("dialogue pairs", "pairs", "chosen/rejected dialogues (HH) or conversations (TRL)",
           lambda keys, row, ctx: ctx.has(keys, "chosen", "rejected"), parse_implicit_pair),
    _Shape("rankings", "rankings", "prompt/responses[/ranks]",
           lambda keys, row, ctx: ctx.has(keys, "prompt", "responses"), parse_ranking),
    _Shape("ratings", "ratings", "prompt/response/score",
           lambda keys, row, ctx: ctx.has(keys, "prompt", "response", "score"), parse_rating),
    _Shape("binary feedback", "binary", "prompt/response/label",
           lambda keys, row, ctx: ctx.has(keys, "prompt", "response", "label"), parse_binary),
)
# The row kinds each requested kind takes, and how a row kind becomes the requested one (pairs from rankings: the
# pairs the ranking implies).
_ACCEPTS: dict[str, tuple[str, ...]] = {"pairs": ("pairs", "rankings"), "rankings": ("rankings",),
                                        "ratings": ("ratings",), "binary": ("binary",),
                                        "auto": ("pairs", "rankings", "ratings", "binary")}
_CONVERSIONS: dict[tuple[str, str], Callable[[list], list]] = {("rankings", "pairs"): rankings_to_pairs}


def load_pairs(paths: Any, columns: Columns = None, on_bad_record: BadRecordPolicy = "fail",
               on_identical: IdenticalPolicy = "skip",
               on_empty_response: EmptyResponsePolicy = "keep") -> LoadedRecords:
    """PreferencePairs from pairwise files (explicit, HH, TRL conversational, LLMBar) or rankings (implied pairs)."""
    return _load(paths, "pairs", columns, LoadReport(on_bad_record, on_identical, on_empty_response))


def load_rankings(paths: Any, columns: Columns = None, on_bad_record: BadRecordPolicy = "fail",
                  on_identical: IdenticalPolicy = "skip",
                  on_empty_response: EmptyResponsePolicy = "keep") -> LoadedRecords:
    """RankedGroups (best first) from `{prompt, responses[, ranks]}` rows or OASST trees."""
    return _load(paths, "rankings", columns, LoadReport(on_bad_record, on_identical, on_empty_response))


def load_ratings(paths: Any, columns: Columns = None, on_bad_record: BadRecordPolicy = "fail",
                 on_empty_response: EmptyResponsePolicy = "keep") -> LoadedRecords:
    """RatedResponses from `{prompt, response, score}` rows."""
    return _load(paths, "ratings", columns, LoadReport(on_bad_record, "skip", on_empty_response))


def load_binary(paths: Any, columns: Columns = None, on_bad_record: BadRecordPolicy = "fail",
                on_empty_response: EmptyResponsePolicy = "keep") -> LoadedRecords:
    """BinaryFeedback (label 1 = thumbs up) from `{prompt, response, label}` rows."""
    return _load(paths, "binary", columns, LoadReport(on_bad_record, "skip", on_empty_response))


def load_records(paths: Any, kind: Kind | Literal["auto"] = "auto", columns: Columns = None,
                 on_bad_record: BadRecordPolicy = "fail", on_identical: IdenticalPolicy = "skip",
                 on_empty_response: EmptyResponsePolicy = "keep") -> LoadedRecords:
    """Records of the given kind, or with kind="auto" whatever each file holds (a list that may mix types)."""
    if kind not in _ACCEPTS:
        raise RewardkitError(f"kind must be one of {', '.join(_ACCEPTS)}, got {kind!r}")
    return _load(paths, kind, columns, LoadReport(on_bad_record, on_identical, on_empty_response))


def read_rows(paths: Any, on_bad_record: BadRecordPolicy = "fail",
              report: LoadReport | None = None) -> Iterator[tuple[Location, Row]]:
    """The raw rows (dicts) of any supported files or datasets with their locations, for inputs that are not
    feedback (e.g. responses to score). Row-level problems follow `on_bad_record`; skipped ones land in `report`."""
    report = report or LoadReport(on_bad_record)
    for source in expand_sources(paths):
        yield from iter_rows(source, report.bad_record)


def _load(paths: Any, kind: str, columns: Columns, report: LoadReport) -> LoadedRecords:
    columns = check_columns(columns)
    sources = expand_sources(paths)
    records: list = []
    for source in sources:
        records += _load_source(source, kind, columns, report)
    report.loaded = len(records)
    report.print_summary()
    if not records:
        raise RewardkitError(f"no records loaded from {', '.join(s.label for s in sources)}: all "
                             f"{len(report.skipped)} record(s) were skipped (see above)")
    return LoadedRecords(records, report)


def _load_source(source: Source, kind: str, columns: dict, report: LoadReport) -> list:
    bad_before = len(report.bad)
    rows = iter_rows(source, report.bad_record)
    head = list(islice(rows, _DETECTION_ROWS))
    if not head:
        if len(report.bad) == bad_before:
            raise RewardkitError(f"{source.label}: no records")
        return []
    keys = set().union(*(row.keys() for _, row in head))
    ctx = RowContext(source, columns, keys, report)
    shape = _detect(head[0], keys, ctx, kind)
    parse = shape.parse
    stats = OasstStats() if shape.parse is parse_oasst_tree else None
    if stats is not None:
        parse = functools.partial(parse_oasst_tree, stats=stats)
    records: list = []
    for location, row in chain(head, rows):
        try:
            records += parse(row, location, ctx)
        except BadRecord as problem:
            report.bad_record(location, str(problem))
    if stats is not None:
        report.notes.append(stats.note(source.label, len(records)))
    convert = _CONVERSIONS.get((shape.kind, kind))
    return convert(records) if convert else records


def _detect(first: tuple[Location, Row], keys: set[str], ctx: RowContext, kind: str) -> _Shape:
    location, row = first
    found = next((shape for shape in _SHAPES if shape.matches(keys, row, ctx)), None)
    if found is None:
        expected = "; ".join(f"{s.columns} ({s.name})" for s in _SHAPES[1:])
        raise RewardkitError(f"cannot tell what feedback this is from its columns ({', '.join(sorted(keys))}); "
                             f"expected {expected}; rename columns with a column mapping", location)
    accepted = [s for s in _SHAPES if s.kind in _ACCEPTS[kind] and s.matches(keys, row, ctx)]
    if not accepted:
        raise RewardkitError(f"this file holds {found.kind} ({found.columns}), not {kind}; load it as {found.kind} "
                             f"(train-rm --feedback {found.kind}, or load_{found.kind})", location)
    return accepted[0]
