"""The rows of a labelling database as plain records: items, items to import, annotators and judgments. Below both
the store (which reads and writes them) and the labelling tasks (which check and export them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rewardkit.data.types import Prompt


@dataclass(frozen=True)
class Item:
    id: int
    task: str
    prompt: Prompt
    responses: list[str]
    subset: str | None
    source: str | None
    needed: int
    selected_by: str
    priority: float | None


@dataclass(frozen=True)
class NewItem:
    """An item to import: where it came from, and (when an active strategy ordered it) its selection."""

    prompt: Prompt
    responses: list[str]
    subset: str | None = None
    source: str | None = None
    selected_by: str = "file"
    priority: float | None = None


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str


@dataclass(frozen=True)
class Judgment:
    id: int
    item_id: int
    annotator: str
    value: Any
    strength: int | None
    reason: str | None
    created: float
    updated: float
