"""Judgments -> `train-rm` records: majority votes per item, or every judgment on its own.

Rows are those `train-rm` reads (`rewardkit.data.loaders` detects their shape), plus who judged:
- pairwise: `{prompt, chosen, rejected, annotators, votes, item_id[, strength][, subset]}`, where `votes` counts the
  judgments that preferred the chosen response, the rejected one, or called a tie (`{"chosen": 2, "rejected": 1,
  "tie": 0}`), and `strength` is the mean strength (1-3) given by those who preferred the chosen response;
- ranking: `{prompt, responses (best first), annotators, item_id[, subset]}`;
- rating: `{prompt, response, score, annotators, item_id[, subset]}`;
- thumbs: `{prompt, response, label (1 up, 0 down), annotators, item_id[, subset]}`.
With `mode="all"` each judgment is a row of its own with `annotator` (and its `reason`) instead of `annotators`.
Ties: `{prompt, tied_responses, item_id, judgments[, reasons][, subset]}`, `judgments` mapping each annotator to their
vote in terms of `tied_responses` (`LabelTask.tie_value`: for pairs the index of the response preferred, or "tie").
No row names the side of the page (A or B) a response was shown on: that order was random.

Majority votes (each task's own, in `rewardkit.label.tasks`): pairwise, the most frequent of A / B / tie; thumbs,
the more frequent of up / down; ranking, the Borda count (a response earns N-1 points from a judgment that puts it
first, N-2 for second, ...); rating, the mean. A vote that does not decide (A and B equally often, a tie as the
majority, as many ups as downs, equal Borda totals) is a tie: ties carry no preference a reward model can learn, so
they are returned apart, never silently mixed in or dropped.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from rewardkit.label.store import Item, Judgment, Store
from rewardkit.label.tasks import task_named

MODES = ("majority", "all")


def _base(item: Item) -> dict:
    return {"prompt": item.prompt} | ({"subset": item.subset} if item.subset else {})


def _decided_row(item: Item, judgments: list[Judgment]) -> dict | None:
    """The majority-vote row of one item, or None when its vote is a tie."""
    fields = task_named(item.task).decided(item, judgments)
    return None if fields is None else (_base(item) | fields
                                        | {"annotators": [j.annotator for j in judgments], "item_id": item.id})


def _judgment_row(item: Item, j: Judgment) -> dict | None:
    """One judgment as a row of its own, or None for a judgment that states no preference (a pairwise tie)."""
    fields = task_named(item.task).single(item, j)
    return None if fields is None else (_base(item) | fields | {"annotator": j.annotator, "item_id": item.id}
                                        | ({"reason": j.reason} if j.reason else {}))


def _tie_row(item: Item, judgments: list[Judgment]) -> dict:
    """A tie, for people to read: `tied_responses`, not `responses`, so that no reader takes it for a ranking."""
    reasons = {j.annotator: j.reason for j in judgments if j.reason}
    task = task_named(item.task)
    return _base(item) | {"tied_responses": item.responses, "item_id": item.id,
                          "judgments": {j.annotator: task.tie_value(j.value) for j in judgments}} | ({"reasons": reasons} if reasons
                                                                                     else {})


def export_rows(store: Store, mode: str = "majority", min_judgments: int = 1,
                selected_by: str | None = None) -> tuple[list[tuple[int, dict]], list[dict]]:
    """(rows with the id of the item each comes from, ties) for every item with at least `min_judgments`
    judgments (and, when given, queued the `selected_by` way: file, random or active), in queue order."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    by_item: dict[int, list[Judgment]] = defaultdict(list)
    for judgment in store.judgments():
        by_item[judgment.item_id].append(judgment)
    rows, ties = [], []
    for item in store.items():
        if selected_by is not None and item.selected_by != selected_by:
            continue
        judgments = by_item.get(item.id, [])
        if not judgments or len(judgments) < min_judgments:
            continue
        if mode == "majority":
            row = _decided_row(item, judgments)
            rows.append((item.id, row)) if row is not None else ties.append(_tie_row(item, judgments))
        else:
            for judgment in judgments:
                row = _judgment_row(item, judgment)
                rows.append((item.id, row)) if row is not None else ties.append(_tie_row(item, [judgment]))
    return rows, ties


def database_rows(path: Path) -> list[tuple[int, dict]]:
    """The majority-vote rows of a labelling database, for `train-rm --data labels.sqlite` (the data readers call
    this); tied items are left out and listed on stderr."""
    rows, ties = export_rows(Store(path))
    if ties:
        shown = ", ".join(str(t["item_id"]) for t in ties[:10]) + (" ..." if len(ties) > 10 else "")
        print(f"rewardkit: {path}: left out {len(ties)} tied item(s), which state no preference (items {shown})",
              file=sys.stderr)
    return rows
