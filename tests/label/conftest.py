"""Helpers for the label tests: small feedback files and labelling databases in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardkit.label.store import NewItem, Store

PAIRS = [{"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}
         for i in range(6)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def pairwise_store(path: Path, n: int = 3, needed: int = 1) -> Store:
    store = Store(path, create=True)
    store.add_items("pairs", [NewItem(f"Prompt {i}", [f"first {i}", f"second {i}"], source=f"x.jsonl:{i + 1}")
                                 for i in range(n)], needed)
    return store


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
