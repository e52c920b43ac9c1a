"""The SQLite file behind the privacy ledger: schema, connection settings and transactions.

One file in the node's data dir is the single source of truth: the accountant state is recomposed
from the release rows, never cached on disk elsewhere. WAL lets the app read the budget while the
ClientApp process charges a round; `synchronous=FULL` because a charge that a power cut could undo
after the update has left would under-count. Triggers make "committed is final" hold even against
code that bypasses the ledger class.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    client_id TEXT NOT NULL,
    cap_epsilon REAL NOT NULL CHECK (cap_epsilon > 0),
    delta REAL NOT NULL CHECK (delta > 0 AND delta < 1),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS consent (
    task TEXT PRIMARY KEY,
    granted INTEGER NOT NULL CHECK (granted IN (0, 1)),
    granted_at TEXT,
    withdrawn_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('train', 'count')),
    task TEXT NOT NULL,
    noise_multiplier REAL NOT NULL CHECK (noise_multiplier > 0),
    sample_rate REAL NOT NULL CHECK (sample_rate > 0 AND sample_rate <= 1),
    steps INTEGER NOT NULL CHECK (steps >= 1),
    epsilon_after REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'aborted')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS releases_committed_final
BEFORE UPDATE ON releases
WHEN OLD.state = 'committed' AND (
    NEW.state IS NOT 'committed' OR NEW.noise_multiplier IS NOT OLD.noise_multiplier
    OR NEW.sample_rate IS NOT OLD.sample_rate OR NEW.steps IS NOT OLD.steps
    OR NEW.release_id IS NOT OLD.release_id
)
BEGIN
    SELECT RAISE(ABORT, 'committed releases are final');
END;
CREATE TRIGGER IF NOT EXISTS releases_never_deleted
BEFORE DELETE ON releases
BEGIN
    SELECT RAISE(ABORT, 'release rows are never deleted');
END;
"""


def now_utc() -> datetime:
    """The ledger's clock: timezone-aware UTC."""
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    """Timestamps are stored as ISO 8601 text in UTC (sortable, readable in any SQLite tool)."""
    return moment.astimezone(UTC).isoformat()


def from_text(text: str) -> datetime:
    """Inverse of `to_text`."""
    return datetime.fromisoformat(text)


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the ledger file with WAL and the schema in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        str(path), isolation_level=None, timeout=30.0, check_same_thread=False
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=30000")
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return connection
    try:
        connection.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )
    except sqlite3.Error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()
        raise
    return connection


@contextmanager
def immediate(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front, so check-then-charge is atomic."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


@contextmanager
def snapshot(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction: every SELECT inside sees the same state of the file."""
    connection.execute("BEGIN DEFERRED")
    try:
        yield connection
    finally:
        connection.execute("COMMIT")
