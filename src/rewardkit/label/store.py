"""The labelling database: items to judge, annotators (with hashed tokens), leases and judgments, in one SQLite file.

Durability: WAL journal with `synchronous=FULL`, and every judgment is its own transaction, committed before the
server acknowledges it; a server killed at any moment keeps every acknowledged judgment. Concurrency: writers take the
database lock up front (`BEGIN IMMEDIATE`), so that choosing an item and leasing it is one atomic step.

One database holds one task, named as the kind of feedback it collects (`pairs`, `rankings`, `ratings`, `binary`:
thumbs up/down); it is fixed by the first import. An item is
a prompt (text or a conversation) and its responses (two for pairwise, two or more for ranking, one for rating and
thumbs). Each item needs `needed` judgments from different annotators. While an annotator looks at an item it holds a
lease on it, which counts against the item's open slots until it expires, so that concurrent annotators do not
over-collect; nobody is ever shown an item they judged or skipped. A judgment is one row per (item, annotator): an
annotator can revise their own judgment, never anyone else's.

Judgment values depend on the task (`rewardkit.label.tasks`, which also checks them); every task takes an optional
free-text reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from rewardkit.data.readers import json_type
from rewardkit.data.types import Prompt
from rewardkit.errors import RewardkitError
from rewardkit.label.records import Annotator, Item, Judgment, NewItem
from rewardkit.label.tasks import TASKS, JudgmentError, task_named

SCHEMA_VERSION = 1
MAX_REASON_CHARS = 2000
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    content_key TEXT NOT NULL UNIQUE,       -- hash of prompt and responses: re-importing an item is a no-op
    prompt TEXT NOT NULL,                   -- JSON: text or a list of {role, content} messages
    responses TEXT NOT NULL,                -- JSON list of texts, in the order shown
    subset TEXT,
    source TEXT,                            -- file:line it was imported from
    needed INTEGER NOT NULL,                -- judgments wanted from different annotators
    queue_position REAL NOT NULL,           -- lower is shown first
    selected_by TEXT NOT NULL,              -- how its position was chosen: file (input order), random, active
    priority REAL,                          -- the active strategy's priority (higher was queued first)
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_queue ON items (queue_position, id);
CREATE TABLE IF NOT EXISTS annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items (id),
    annotator_id INTEGER NOT NULL REFERENCES annotators (id),
    value TEXT NOT NULL,                    -- JSON, see the module docstring
    strength INTEGER,
    reason TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (item_id, annotator_id)
);
CREATE INDEX IF NOT EXISTS judgments_annotator ON judgments (annotator_id, id);
CREATE TABLE IF NOT EXISTS leases (
    item_id INTEGER NOT NULL REFERENCES items (id),
    annotator_id INTEGER NOT NULL REFERENCES annotators (id),
    expires REAL NOT NULL,
    PRIMARY KEY (item_id, annotator_id)
);
CREATE TABLE IF NOT EXISTS skips (
    item_id INTEGER NOT NULL REFERENCES items (id),
    annotator_id INTEGER NOT NULL REFERENCES annotators (id),
    PRIMARY KEY (item_id, annotator_id)
);
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def content_key(prompt: Prompt, responses: list[str]) -> str:
    return hashlib.sha256(json.dumps([prompt, responses], ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class Store:
    """The labelling database at `path`. Each thread gets its own connection (the web app's handlers run on a thread
    pool); every public method is one transaction."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise RewardkitError(f"{self.path}: no such labelling database (create one with `rewardkit label import`)")
        self._local = threading.local()
        if self.path.exists():
            self._refuse_other_databases()
        self._connection().executescript(_SCHEMA)  # its own transaction (executescript commits first)
        with self._write() as db:
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise RewardkitError(f"{self.path}: labelling database schema {version[0]}, this rewardkit reads "
                                     f"{SCHEMA_VERSION}")

    def _refuse_other_databases(self) -> None:
        """Fail on an existing file that is not a labelling database, before anything writes to it: reading one
        (`train-rm --data other.sqlite`) must not add tables or switch its journal to WAL. An empty SQLite file
        becomes one."""
        try:
            with contextlib.closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)) as db:
                tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise RewardkitError(f"{self.path}: not a labelling database ({exc})") from None
        if tables and "meta" not in tables:
            raise RewardkitError(f"{self.path}: not a labelling database (it holds the tables "
                                 f"{', '.join(sorted(tables))}; `rewardkit label import` makes one)")

    # -- connections and transactions ----------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise RewardkitError(f"{self.path}: not a labelling database ({exc})") from None
            # FULL: a commit is on disk (not only in the OS cache) before it returns, so an acknowledged judgment
            # survives a power cut too, not just a killed process.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _read(self) -> sqlite3.Connection:
        return self._connection()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- settings ------------------------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._read().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def task(self) -> str | None:
        return self._meta("task")

    @property
    def scale(self) -> int:
        """The top of the rating scale (1..scale); only rating databases use it."""
        return int(self._meta("scale") or 5)

    # -- items ---------------------------------------------------------------------------------------------------------
    def add_items(self, task: str, items: list[NewItem], needed: int, scale: int = 5) -> tuple[int, int]:
        """Add `items` after the current queue, all or nothing; returns (added, already present)."""
        if task not in TASKS:
            raise RewardkitError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if needed < 1:
            raise RewardkitError(f"--judgments-per-item must be at least 1, got {needed}")
        labelling = task_named(task)
        for item in items:
            labelling.check_responses(len(item.responses), item.source or "item")
        with self._write() as db:
            stored = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('task', 'scale')").fetchall())
            if stored.get("task", task) != task:
                raise RewardkitError(f"{self.path} holds {stored['task']} items; cannot add {task} items (one task "
                                     f"per database: use another file)")
            if labelling.uses_scale and int(stored.get("scale", scale)) != scale:
                raise RewardkitError(f"{self.path} rates on a 1-{stored['scale']} scale, not 1-{scale}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('task', ?)", (task,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('scale', ?)", (str(scale),))
            start = db.execute("SELECT COALESCE(MAX(queue_position), -1) FROM items").fetchone()[0] + 1
            now, added = time.time(), 0
            for offset, item in enumerate(items):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO items (content_key, prompt, responses, subset, source, needed, "
                    "queue_position, selected_by, priority, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (content_key(item.prompt, item.responses), json.dumps(item.prompt, ensure_ascii=False),
                     json.dumps(item.responses, ensure_ascii=False), item.subset, item.source, needed,
                     start + offset, item.selected_by, item.priority, now))
                added += cursor.rowcount
        return added, len(items) - added

    def item(self, item_id: int) -> Item | None:
        if not 0 < item_id < 2 ** 63:  # SQLite integers are 64-bit: a larger id names no item (and would overflow)
            return None
        row = self._read().execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return _item(row, self.task) if row else None

    def items(self) -> list[Item]:
        """Every item, in queue order."""
        task = self.task
        rows = self._read().execute(f"SELECT {_ITEM_COLUMNS} FROM items ORDER BY queue_position, id").fetchall()
        return [_item(row, task) for row in rows]

    # -- annotators ----------------------------------------------------------------------------------------------------
    def add_annotator(self, name: str) -> str:
        """Create annotator `name` and return their token (only its hash is stored: it is shown this once)."""
        name = name.strip()
        if not name or len(name) > 64:
            raise RewardkitError(f"an annotator name must be 1 to 64 characters, got {name!r}")
        token = new_token()
        with self._write() as db:
            try:
                db.execute("INSERT INTO annotators (name, token_sha256, created) VALUES (?, ?, ?)",
                           (name, hash_token(token), time.time()))
            except sqlite3.IntegrityError:
                raise RewardkitError(f"annotator {name!r} exists already (give them a new token with "
                                     f"--reissue-tokens)") from None
        return token

    def reissue_token(self, name: str) -> str:
        """A new token for annotator `name`; their old one stops working."""
        token = new_token()
        with self._write() as db:
            if db.execute("UPDATE annotators SET token_sha256 = ? WHERE name = ?",
                          (hash_token(token), name)).rowcount == 0:
                raise RewardkitError(f"no annotator named {name!r}")
        return token

    def annotators(self) -> list[Annotator]:
        return [Annotator(*row) for row in self._read().execute("SELECT id, name FROM annotators ORDER BY id")]

    def annotator_for_token(self, token: str) -> Annotator | None:
        # Looked up by the token's hash: timing can reveal at most a hash prefix, which does not help guess the token.
        row = self._read().execute("SELECT id, name FROM annotators WHERE token_sha256 = ?",
                                   (hash_token(token),)).fetchone()
        return Annotator(*row) if row else None

    # -- the queue -----------------------------------------------------------------------------------------------------
    def next_item(self, annotator_id: int, lease_seconds: float) -> Item | None:
        """The item this annotator should judge now, leased to them; None when nothing is left for them.

        Their own live lease on an item they have not judged comes first (a reload shows the same item); otherwise the
        first item in queue order that they have neither judged nor skipped and whose judgments plus others' live
        leases leave an open slot.
        """
        now = time.time()
        with self._write() as db:
            row = db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ("
                "  SELECT l.item_id FROM leases l JOIN items i ON i.id = l.item_id"
                "  WHERE l.annotator_id = ? AND l.expires > ? ORDER BY i.queue_position, i.id LIMIT 1)",
                (annotator_id, now)).fetchone()
            if row is None:
                row = db.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items i WHERE"
                    "  NOT EXISTS (SELECT 1 FROM judgments j WHERE j.item_id = i.id AND j.annotator_id = :me)"
                    "  AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item_id = i.id AND s.annotator_id = :me)"
                    "  AND (SELECT COUNT(*) FROM judgments j WHERE j.item_id = i.id)"
                    "    + (SELECT COUNT(*) FROM leases l WHERE l.item_id = i.id AND l.expires > :now"
                    "       AND l.annotator_id != :me) < i.needed"
                    "  ORDER BY i.queue_position, i.id LIMIT 1",
                    {"me": annotator_id, "now": now}).fetchone()
            if row is None:
                return None
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (row[0], annotator_id, now + lease_seconds))
        return _item(row, self.task)

    def record(self, annotator_id: int, item_id: int, value: Any, strength: Any = None,
               reason: str | None = None) -> tuple[Judgment, bool]:
        """Store (or revise) this annotator's judgment of the item; returns it and whether it is new.

        Committed before returning: once a caller has it, it is on disk. A retried submission revises the same row,
        so it can never count twice.
        """
        item = self.item(item_id)
        if item is None:
            raise JudgmentError(f"no item {item_id}")
        value, strength = task_named(item.task).check_value(value, len(item.responses), self.scale, strength)
        if reason is not None and not isinstance(reason, str):
            raise JudgmentError(f"a reason must be text, got {json_type(reason)}")
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON_CHARS:
            raise JudgmentError(f"a reason holds at most {MAX_REASON_CHARS} characters, this one {len(reason)}")
        now = time.time()
        with self._write() as db:
            existing = db.execute("SELECT id FROM judgments WHERE item_id = ? AND annotator_id = ?",
                                  (item_id, annotator_id)).fetchone()
            if existing:
                db.execute("UPDATE judgments SET value = ?, strength = ?, reason = ?, updated = ? WHERE id = ?",
                           (json.dumps(value), strength, reason, now, existing[0]))
            else:
                db.execute("INSERT INTO judgments (item_id, annotator_id, value, strength, reason, created, updated) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (item_id, annotator_id, json.dumps(value), strength, reason, now, now))
            db.execute("DELETE FROM leases WHERE item_id = ? AND annotator_id = ?", (item_id, annotator_id))
            db.execute("DELETE FROM skips WHERE item_id = ? AND annotator_id = ?", (item_id, annotator_id))
            row = db.execute(f"SELECT {_JUDGMENT_COLUMNS} WHERE j.item_id = ? AND j.annotator_id = ?",
                             (item_id, annotator_id)).fetchone()
        return _judgment(row), not existing

    def has_lease(self, annotator_id: int, item_id: int) -> bool:
        """Whether the item was shown to this annotator (live or expired lease) and they have not answered it yet."""
        return self._read().execute("SELECT 1 FROM leases WHERE item_id = ? AND annotator_id = ?",
                                    (item_id, annotator_id)).fetchone() is not None

    def skip(self, annotator_id: int, item_id: int) -> None:
        """This annotator passes on the item: it is not shown to them again and its slot opens for someone else."""
        if self.item(item_id) is None:
            raise JudgmentError(f"no item {item_id}")
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO skips VALUES (?, ?)", (item_id, annotator_id))
            db.execute("DELETE FROM leases WHERE item_id = ? AND annotator_id = ?", (item_id, annotator_id))

    # -- reading judgments ---------------------------------------------------------------------------------------------
    def judgments(self, annotator_id: int | None = None) -> list[Judgment]:
        """All judgments (or one annotator's), oldest first."""
        where, args = ("WHERE j.annotator_id = ?", (annotator_id,)) if annotator_id is not None else ("", ())
        rows = self._read().execute(f"SELECT {_JUDGMENT_COLUMNS} {where} ORDER BY j.id", args).fetchall()
        return [_judgment(row) for row in rows]

    def judgment(self, annotator_id: int, item_id: int) -> Judgment | None:
        row = self._read().execute(f"SELECT {_JUDGMENT_COLUMNS} WHERE j.item_id = ? AND j.annotator_id = ?",
                                   (item_id, annotator_id)).fetchone()
        return _judgment(row) if row else None

    def judged_by(self, annotator_id: int) -> int:
        """How many items this annotator has judged."""
        return self._read().execute("SELECT COUNT(*) FROM judgments WHERE annotator_id = ?",
                                    (annotator_id,)).fetchone()[0]

    def counts(self) -> dict[str, int]:
        """Items, items with all the judgments they need, and judgments in total."""
        db = self._read()
        items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        complete = db.execute("SELECT COUNT(*) FROM items i WHERE (SELECT COUNT(*) FROM judgments j "
                              "WHERE j.item_id = i.id) >= i.needed").fetchone()[0]
        judgments = db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
        return {"items": items, "complete": complete, "judgments": judgments}

    def remaining_for(self, annotator_id: int) -> int:
        """Items this annotator could still be given (not judged or skipped by them, not yet complete)."""
        return self._read().execute(
            "SELECT COUNT(*) FROM items i WHERE"
            "  NOT EXISTS (SELECT 1 FROM judgments j WHERE j.item_id = i.id AND j.annotator_id = :me)"
            "  AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item_id = i.id AND s.annotator_id = :me)"
            "  AND (SELECT COUNT(*) FROM judgments j WHERE j.item_id = i.id) < i.needed",
            {"me": annotator_id}).fetchone()[0]


_ITEM_COLUMNS = "id, prompt, responses, subset, source, needed, selected_by, priority"
_JUDGMENT_COLUMNS = ("j.id, j.item_id, a.name, j.value, j.strength, j.reason, j.created, j.updated "
                     "FROM judgments j JOIN annotators a ON a.id = j.annotator_id")


def _item(row, task: str) -> Item:
    return Item(row[0], task, json.loads(row[1]), json.loads(row[2]), *row[3:])


def _judgment(row) -> Judgment:
    return Judgment(row[0], row[1], row[2], json.loads(row[3]), *row[4:])
