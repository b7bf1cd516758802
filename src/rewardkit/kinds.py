"""The kinds of feedback, one object each: what pairs, rankings, ratings and binary feedback *are*.

A kind has its name and accepted spellings, its record type, what one example is called, how its records are read
from train-rm's data paths, and how a record becomes texts to score. It sits at the bottom, beside the record types,
and imports nothing above the data layer. Each layer above keeps its own part of a kind in a table keyed by it: the
training task in `rewardkit.models.tasks` (`task_for`), eval-rm's summaries and report in `rewardkit.eval.views`
(`view_of`), the labelling form and export in `rewardkit.label.tasks`. A new kind of feedback is one class here plus
one entry in each of those tables.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rewardkit.data.types import BinaryFeedback, FeedbackRecord, PreferencePair, RankedGroup, RatedResponse
from rewardkit.errors import RewardkitError



def pair_outcomes(better: Any, worse: Any) -> Any:
    """A pair's credit, the one rule that train-rm's accuracy and eval-rm's share: 1 where the better text scores
    higher, 0 where lower, 0.5 for a tie (a constant scorer gets 0.5, not 0 or 1). Elementwise on numpy arrays or
    torch tensors alike (float results), so that neither layer needs the other's library."""
    return (better > worse) * 1.0 + (better == worse) * 0.5

class FeedbackKind:
    """One kind of feedback. Subclasses fill in each part."""

    name: ClassVar[str]  # the one name used everywhere: --feedback, eval-rm's JSON, the report
    aliases: ClassVar[tuple[str, ...]] = ()  # older or natural spellings accepted on input
    record_type: ClassVar[type]
    unit: ClassVar[str]  # what one example is called in progress and summaries
    title: ClassVar[str]  # the heading of this kind's table in reports
    # other --feedback values under which train-rm reads this kind's files (and so splits what it read, not these)
    train_rm_reads_as: ClassVar[tuple[str, ...]] = ()

    def load(self, paths: Any, columns: list[str], on_bad_record: str, on_identical: str) -> list:
        """Records of this kind from data paths, with a column mapping (FIELD=COLUMN) and bad-record policies."""
        from rewardkit.data import load_records
        from rewardkit.data.fields import parse_column_mapping

        return load_records(paths, kind=self.name, columns=parse_column_mapping(columns),
                            on_bad_record=on_bad_record, on_identical=on_identical)

    def texts(self, record: FeedbackRecord) -> tuple[list[str], float | None]:
        """The responses a record asks to score, in the order its loss expects, and its numeric target."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<feedback kind {self.name}>"


class Pairs(FeedbackKind):
    name, aliases, record_type, unit, title = "pairs", ("pairwise",), PreferencePair, "pairs", "pairwise data"

    def texts(self, record):
        return [record.chosen, record.rejected], record.margin


class Rankings(FeedbackKind):
    name, aliases, record_type, unit, title = "rankings", (), RankedGroup, "groups", "ranked groups"
    train_rm_reads_as = ("pairs",)  # the pairs each ranking implies: train-rm's default --feedback

    def texts(self, record):
        return list(record.responses), None  # best first


class Ratings(FeedbackKind):
    name, aliases, record_type, unit, title = "ratings", (), RatedResponse, "ratings", "ratings"

    def texts(self, record):
        return [record.response], float(record.score)


class Binary(FeedbackKind):
    name, aliases, record_type, unit, title = "binary", (), BinaryFeedback, "examples", "thumbs up/down"

    def texts(self, record):
        return [record.response], float(record.label)


KINDS: dict[str, FeedbackKind] = {kind.name: kind for kind in (Pairs(), Rankings(), Ratings(), Binary())}
# every accepted spelling (`--feedback pairwise` still works), for option choices
KIND_SPELLINGS: tuple[str, ...] = tuple(KINDS) + tuple(alias for kind in KINDS.values() for alias in kind.aliases)
_BY_SPELLING = {spelling: kind for kind in KINDS.values() for spelling in (kind.name, *kind.aliases)}
_BY_RECORD_TYPE = {kind.record_type: kind for kind in KINDS.values()}


def kind_named(name: str) -> FeedbackKind:
    """The kind called `name` or one of its aliases."""
    try:
        return _BY_SPELLING[name]
    except KeyError:
        raise RewardkitError(f"unknown kind of feedback {name!r}; expected one of {', '.join(KINDS)}") from None


def kind_of(record: FeedbackRecord) -> FeedbackKind:
    """The kind a loaded record belongs to."""
    return _BY_RECORD_TYPE[type(record)]
