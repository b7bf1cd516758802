"""A real `rewardkit label` server: loopback by default, 20 concurrent annotators lose and duplicate nothing, and
SIGKILL loses no acknowledged judgment."""

from __future__ import annotations

import math
import random
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from rewardkit.label.config import LabelConfig
from rewardkit.label.store import NewItem, Store
from tests.label.server import LabelServer


def _database(path, n_items, needed, annotators):
    store = Store(path, create=True)
    store.add_items("pairs", [NewItem(f"Prompt {i}", [f"a{i}", f"b{i}"]) for i in range(n_items)], needed)
    return {name: store.add_annotator(name) for name in annotators}


def _annotate(url, name, token, until, acked, errors, seed, target=math.inf):
    """Judge items until `until` (monotonic), until none is left or until `target` judgments are acknowledged in all;
    record each acknowledged judgment."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0) as client:
        while time.monotonic() < until and len(acked) < target:
            try:
                item = client.get("/api/next").json()["item"]
                if item is None:
                    return
                value = rng.choice(["A", "B", "tie"])
                response = client.post("/api/judgments", json={"item_id": item["id"], "value": value})
            except httpx.TransportError:
                return  # the server is gone (the SIGKILL test)
            if response.status_code in (200, 201):
                acked.append((item["id"], name, value))
            else:
                errors.append((response.status_code, response.text))


def _run_annotators(url, tokens, seconds, target=math.inf):
    acked, errors = [], []
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_annotate, args=(url, name, token, until, acked, errors, i, target))
               for i, (name, token) in enumerate(tokens.items())]
    for t in threads:
        t.start()
    return threads, acked, errors


def _stored(db):
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT j.item_id, a.name, j.value FROM judgments j JOIN annotators a "
                                  "ON a.id = j.annotator_id").fetchall()


def _concurrent_annotators(tmp_path, seconds, n_items, target=math.inf):
    db = tmp_path / "labels.sqlite"
    tokens = _database(db, n_items, needed=3, annotators=[f"annotator{i:02d}" for i in range(20)])
    server = LabelServer(db, tmp_path).wait_ready()
    try:
        threads, acked, errors = _run_annotators(server.url, tokens, seconds, target)
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert errors == []
    stored = _stored(db)
    # every acknowledged judgment is stored exactly once, with its value, and nothing else is
    assert sorted((i, n, f'"{v}"') for i, n, v in acked) == sorted(stored)
    assert len({(i, n) for i, n, _ in stored}) == len(stored)
    per_item = {}
    for item_id, _, _ in stored:
        per_item[item_id] = per_item.get(item_id, 0) + 1
    assert max(per_item.values()) <= 3  # leases kept concurrent annotators from over-collecting
    return len(acked)


def test_twenty_concurrent_annotators_short(tmp_path):
    # a count, not a time window, so that a busy machine makes the test slower rather than failing it
    assert _concurrent_annotators(tmp_path, seconds=120, n_items=3000, target=200) >= 200


@pytest.mark.slow
def test_twenty_concurrent_annotators_for_a_minute(tmp_path):
    assert _concurrent_annotators(tmp_path, seconds=60, n_items=20000) > 1000


def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "labels.sqlite"
    tokens = _database(db, 5000, needed=2, annotators=[f"a{i}" for i in range(6)])
    server = LabelServer(db, tmp_path).wait_ready()
    threads, acked, errors = _run_annotators(server.url, tokens, seconds=60)
    deadline = time.monotonic() + 30
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # mid-stream: requests are in flight
    for t in threads:
        t.join()
    assert errors == [] and len(acked) >= 150
    stored = set(_stored(db))
    assert {(i, n, f'"{v}"') for i, n, v in acked} <= stored
    assert len(stored) - len(acked) <= len(tokens)  # at most the in-flight ones were committed but not yet answered
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _outward_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_binds_loopback_by_default(tmp_path):
    assert LabelConfig(db="x").host == "127.0.0.1"
    db = tmp_path / "labels.sqlite"
    _database(db, 1, 1, ["ann"])
    server = LabelServer(db, tmp_path).wait_ready()
    try:
        outward = _outward_address()
        if outward is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{outward}:{server.port}/", timeout=2.0)
        assert httpx.get(server.url + "/").status_code == 401
    finally:
        server.stop()
