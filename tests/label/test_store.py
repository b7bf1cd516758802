"""The labelling database: the queue with leases, one judgment per (item, annotator), revisions, skips."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.label.store import NewItem, Store
from rewardkit.label.tasks import JudgmentError, task_named
from tests.label.conftest import pairwise_store


def test_leases_share_out_the_slots_and_nobody_sees_an_item_twice(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=3, needed=2)
    ann, bob, cat = (store.annotator_for_token(store.add_annotator(n)).id for n in ("ann", "bob", "cat"))
    assert store.next_item(ann, 60).id == 1
    assert store.next_item(ann, 60).id == 1  # a reload shows the leased item again
    assert store.next_item(bob, 60).id == 1  # item 1 needs two judgments
    assert store.next_item(cat, 60).id == 2  # both slots of item 1 are leased
    judgment, new = store.record(ann, 1, "A")
    assert new and judgment.value == "A" and judgment.annotator == "ann"
    assert store.next_item(ann, 60).id == 2  # cat holds one of item 2's two slots
    store.record(bob, 1, "B", reason="  shorter  ")
    assert store.judgment(bob, 1).reason == "shorter"
    seen = {1}  # item 2 is leased to ann and comes next
    while (item := store.next_item(ann, 60)) is not None:
        assert item.id not in seen
        seen.add(item.id)
        store.record(ann, item.id, "tie")
    assert seen == {1, 2, 3} and store.remaining_for(ann) == 0


def test_an_expired_lease_frees_the_slot(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=1, needed=1)
    ann, bob = (store.annotator_for_token(store.add_annotator(n)).id for n in ("ann", "bob"))
    assert store.next_item(ann, 60).id == 1
    assert store.next_item(bob, 60) is None
    store.next_item(ann, -1)  # renew ann's lease as already expired
    assert store.next_item(bob, 60).id == 1


def test_a_revision_replaces_the_annotators_own_row(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=1)
    ann = store.annotator_for_token(store.add_annotator("ann")).id
    store.record(ann, 1, "A", strength=3)
    revised, new = store.record(ann, 1, "B")
    assert not new and revised.value == "B" and revised.strength is None
    assert [(j.item_id, j.value) for j in store.judgments()] == [(1, "B")]
    assert store.counts() == {"items": 1, "complete": 1, "judgments": 1}


def test_skip_hides_the_item_from_that_annotator_only(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=2)
    ann, bob = (store.annotator_for_token(store.add_annotator(n)).id for n in ("ann", "bob"))
    store.next_item(ann, 60)
    store.skip(ann, 1)
    assert store.next_item(ann, 60).id == 2
    assert store.next_item(bob, 60).id == 1


@pytest.mark.parametrize("task, value, strength, problem", [
    ("pairs", "C", None, "choice must be one of"), ("pairs", "tie", 2, "none for a tie"),
    ("pairs", "A", 4, "strength must be one of"), ("rankings", [0, 0, 1], None, "each of the 3"),
    ("ratings", 6, None, "from 1 to 5"), ("ratings", True, None, "from 1 to 5"), ("binary", 2, None, "1 \\(up\\)"),
    ("binary", 1, 2, "only pairs judgments"), ("pairs", "A", 2.9, "strength must be one of"),
    ("pairs", "A", True, "strength must be one of"), ("pairs", "A", "²", "strength must be one of"),
    ("rankings", [1, "0", 2], None, "each of the 3"),
])
def test_bad_values_are_refused(task, value, strength, problem):
    with pytest.raises(JudgmentError, match=problem):
        task_named(task).check_value(value, 3, 5, strength)


def test_good_values_are_kept():
    assert task_named("pairs").check_value("A", 2, 5, "2") == ("A", 2)
    assert task_named("rankings").check_value([2, 0, 1], 3, 5) == ([2, 0, 1], None)
    assert task_named("ratings").check_value(5, 1, 5) == (5, None)


def test_one_task_per_database_and_tokens_are_stored_hashed(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=1)
    with pytest.raises(RewardkitError, match="holds pairs items"):
        store.add_items("binary", [NewItem("p", ["r"])], 1)
    token = store.add_annotator("ann")
    rows = sqlite3.connect(tmp_path / "l.sqlite").execute("SELECT token_sha256 FROM annotators").fetchall()
    assert token not in rows[0][0] and len(rows[0][0]) == 64
    new_token = store.reissue_token("ann")
    assert store.annotator_for_token(token) is None and store.annotator_for_token(new_token).name == "ann"
    with pytest.raises(RewardkitError, match="exists already"):
        store.add_annotator("ann")


def test_missing_database_is_a_one_line_error(tmp_path):
    with pytest.raises(RewardkitError, match="no such labelling database"):
        Store(tmp_path / "absent.sqlite")


def test_reading_another_sqlite_file_refuses_it_and_leaves_it_untouched(tmp_path):
    other = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    before = other.read_bytes()
    with pytest.raises(RewardkitError, match="not a labelling database .*tables t;"):
        Store(other)
    assert other.read_bytes() == before and not (tmp_path / "other.sqlite-wal").exists()
    (tmp_path / "text.sqlite").write_text("not a database at all")
    with pytest.raises(RewardkitError, match="not a labelling database"):
        Store(tmp_path / "text.sqlite")


def test_a_reason_must_be_text_and_ids_beyond_64_bits_name_no_item(tmp_path):
    store = pairwise_store(tmp_path / "l.sqlite", n=1)
    ann = store.annotator_for_token(store.add_annotator("ann")).id
    store.next_item(ann, 60)
    with pytest.raises(JudgmentError, match="a reason must be text, got a number"):
        store.record(ann, 1, "A", reason=5)
    assert store.item(10 ** 30) is None and store.item(0) is None
    with pytest.raises(JudgmentError, match="no item"):
        store.record(ann, 10 ** 30, "A")
