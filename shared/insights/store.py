"""The node's local insight store: an append-only history of every insight computation.

Store managers read insights offline, often days after the last training campaign, so every
computation ("batch") is kept with what it was computed from (model version, data fingerprint,
ε spent so far) and never overwritten: a manager can always see what a recommendation was last
week and why it changed. One SQLite file (WAL, so the desktop viewer can read while an engine
writes) in the node's data directory; SQLite triggers refuse UPDATE and DELETE even from code
that bypasses this class.

Only the standard library and SQLAlchemy are imported here: the view-only desktop app opens
this store and must not pay for (or need) torch, pandas or numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeGuard

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, Row
from sqlalchemy.exc import SQLAlchemyError

INSIGHTS_FILENAME = "insights.sqlite"
KINDS: tuple[str, ...] = ("pricing", "forecast", "bundles", "trends", "value")
SCHEMA_VERSION = 1

# The natural key that identifies "the same thing" across two computations of one kind.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "pricing": ("product_id",),
    "forecast": ("scope", "key", "horizon"),
    "bundles": ("bundle_id",),
    "trends": ("category",),
    "value": ("node",),
}

_metadata = MetaData()
batches = Table(
    "batches",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("node", Text, nullable=False),
    Column("created_at", Text, nullable=False),  # ISO 8601, UTC
    Column("model_version", Text, nullable=False),
    Column("data_fingerprint", Text, nullable=False),
    Column("epsilon_spent", Float, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("rows_json", Text, nullable=False),
    Column("meta_json", Text, nullable=False),
    Index("batches_kind_id", "kind", "id"),
    sqlite_autoincrement=True,  # ids are never reused, so "newest" is "largest id"
)

_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS batches_never_updated BEFORE UPDATE ON batches
    BEGIN SELECT RAISE(ABORT, 'insight batches are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS batches_never_deleted BEFORE DELETE ON batches
    BEGIN SELECT RAISE(ABORT, 'insight batches are append-only'); END""",
)


class InsightStoreError(ValueError):
    """The store cannot do what was asked; the message names the file or value and why."""


class NoInsightsError(InsightStoreError):
    """There is no insight store (or no batch of a kind) yet: nothing has been computed."""


@dataclass(frozen=True)
class StoredBatch:
    """One stored computation of one insight kind for one node.

    ``rows`` and ``meta`` hold plain JSON values (NaN and infinities stored as None, numpy
    scalars as Python numbers). Summaries from ``InsightStore.history`` leave ``rows`` empty and
    ``meta`` empty unless asked for them; ``row_count`` is always the number of stored rows.
    """

    id: int
    kind: str
    node: str
    created_at: datetime
    model_version: str
    data_fingerprint: str
    epsilon_spent: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    row_count: int = 0

    def summary(self) -> dict[str, Any]:
        """Metadata only, JSON-able: what the CLI prints for ``--history``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "node": self.node,
            "created_at": self.created_at.isoformat(),
            "model_version": self.model_version,
            "data_fingerprint": self.data_fingerprint,
            "epsilon_spent": self.epsilon_spent,
            "row_count": self.row_count,
        }

    def to_json(self) -> dict[str, Any]:
        """Metadata, meta and rows as one JSON-able object (the JSON export's shape)."""
        return {**self.summary(), "meta": self.meta, "rows": self.rows}


def now_utc() -> datetime:
    """The store's clock: timezone-aware UTC."""
    return datetime.now(UTC)


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is one of ``KINDS``, else raise with the valid choices."""
    if kind not in KINDS:
        raise InsightStoreError(f"unknown insight kind {kind!r}; use one of {', '.join(KINDS)}")
    return kind


def to_plain(value: Any, where: str = "value") -> Any:
    """A JSON value equal in meaning to ``value``: engines hand over numpy scalars and NaN.

    NaN and infinities become None ("unknown", as the row shapes say), tuples become lists,
    dates become ISO text. Anything else non-JSON raises, naming where it was found.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist):
        converted = tolist()
        if converted is not value and not hasattr(converted, "tolist"):
            return to_plain(converted, where)
    raise InsightStoreError(f"{where}: {type(value).__name__} is not a JSON value ({value!r:.60})")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InsightStoreError("the store's clock returned a naive datetime; use UTC")
    return moment.astimezone(UTC)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the viewer read while an engine writes; insights are recomputable, so NORMAL
    synchronous is enough (a power cut can lose the newest batch, never corrupt older ones).

    The driver's own transaction handling is switched off so that ``_on_begin`` decides how a
    transaction starts (pysqlite would otherwise run DDL outside any transaction).
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def _on_begin(connection: Connection) -> None:
    """Deferred by default (readers never block each other); IMMEDIATE where asked, so that
    two processes opening a new file cannot both try to create the schema."""
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class InsightStore:
    """Append-only SQLite history of insight batches for one node.

    ``create=False`` opens an existing file only (raising ``NoInsightsError`` otherwise) so that
    readers such as ``retail-node insights`` never leave an empty store behind.
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        if not self.path.exists():
            if not create:
                raise NoInsightsError(f"no insight store at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif self.path.is_dir():
            raise InsightStoreError(f"{self.path} is a directory, not an insight store")
        self._engine: Engine = create_engine(URL.create("sqlite", database=str(self.path)))
        event.listen(self._engine, "connect", _on_connect)
        event.listen(self._engine, "begin", _on_begin)
        try:
            self._prepare()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def in_data_dir(cls, node_dir: Path, *, create: bool = True) -> InsightStore:
        """The store kept as ``insights.sqlite`` in the node's data directory."""
        return cls(Path(node_dir) / INSIGHTS_FILENAME, create=create)

    def _prepare(self) -> None:
        """Create the schema on a new file; refuse files that are not (our) insight stores."""
        try:
            with (
                self._engine.connect().execution_options(sqlite_immediate=True) as connection,
                connection.begin(),
            ):
                version = connection.execute(text("PRAGMA user_version")).scalar_one()
                if version > SCHEMA_VERSION:
                    raise InsightStoreError(
                        f"{self.path} was written by a newer version (schema {version}); "
                        "update this program to read it"
                    )
                if version < SCHEMA_VERSION:
                    _metadata.create_all(connection)
                    for trigger in _TRIGGERS:
                        connection.execute(text(trigger))
                    connection.execute(text(f"PRAGMA user_version = {SCHEMA_VERSION}"))
        except SQLAlchemyError as exc:
            raise InsightStoreError(
                f"{self.path} is not a readable insight store ({_reason(exc)}); "
                "move it aside and run `retail-node insights refresh`"
            ) from exc

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file; the store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> InsightStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def save(
        self,
        kind: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        node: str,
        model_version: str,
        data_fingerprint: str,
        epsilon_spent: float,
        meta: Mapping[str, Any] | None = None,
    ) -> StoredBatch:
        """Append one computation; earlier batches of the same kind stay untouched.

        Rows are stored as JSON after ``to_plain``; the returned batch holds exactly what a
        later ``get`` will read back.
        """
        check_kind(kind)
        for name, value in (
            ("node", node),
            ("model_version", model_version),
            ("data_fingerprint", data_fingerprint),
        ):
            if not isinstance(value, str):
                raise InsightStoreError(f"{kind}: {name} must be text, got {value!r}")
        if not node.strip():
            raise InsightStoreError(f"{kind}: node must not be empty")
        spent = to_plain(epsilon_spent, "epsilon_spent")
        if isinstance(spent, bool) or not isinstance(spent, int | float) or spent < 0:
            raise InsightStoreError(
                f"{kind}: epsilon_spent must be a finite number >= 0, got {epsilon_spent!r}"
            )
        plain_rows: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InsightStoreError(
                    f"{kind} row {index}: expected a mapping, got {type(row).__name__}"
                )
            plain_rows.append(to_plain(row, f"{kind} row {index}"))
        plain_meta: dict[str, Any] = to_plain(dict(meta or {}), f"{kind} meta")
        created_at = _utc(self._clock())
        values = {
            "kind": kind,
            "node": node,
            "created_at": created_at.isoformat(),
            "model_version": model_version,
            "data_fingerprint": data_fingerprint,
            "epsilon_spent": float(spent),
            "row_count": len(plain_rows),
            "rows_json": json.dumps(plain_rows, ensure_ascii=False, allow_nan=False),
            "meta_json": json.dumps(plain_meta, ensure_ascii=False, allow_nan=False),
        }
        with self._engine.begin() as connection:
            result = connection.execute(batches.insert().values(**values))
            batch_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        if not isinstance(batch_id, int):
            raise InsightStoreError(f"{self.path}: the new {kind} batch got no id")
        return StoredBatch(
            id=batch_id,
            kind=kind,
            node=node,
            created_at=created_at,
            model_version=model_version,
            data_fingerprint=data_fingerprint,
            epsilon_spent=float(spent),
            rows=plain_rows,
            meta=plain_meta,
            row_count=len(plain_rows),
        )

    # -- reading -----------------------------------------------------------------------------

    def latest(self, kind: str) -> StoredBatch | None:
        """The newest batch of ``kind`` with its rows, or None if none was computed yet."""
        check_kind(kind)
        query = select(batches).where(batches.c.kind == kind).order_by(batches.c.id.desc())
        with self._engine.connect() as connection:
            row = connection.execute(query.limit(1)).first()
        return None if row is None else _batch(row, with_rows=True)

    def latest_by_kind(self) -> dict[str, StoredBatch]:
        """The newest batch of every kind that has one, in ``KINDS`` order (for the report)."""
        found = {kind: self.latest(kind) for kind in KINDS}
        return {kind: batch for kind, batch in found.items() if batch is not None}

    def history(self, kind: str, limit: int = 20, *, with_rows: bool = False) -> list[StoredBatch]:
        """Up to ``limit`` batches of ``kind``, newest first.

        Without ``with_rows`` the batches are summaries (empty ``rows`` and ``meta``, true
        ``row_count``), so listing a long history never parses every row.
        """
        check_kind(kind)
        if limit < 1:
            raise InsightStoreError(f"history limit must be at least 1, got {limit}")
        columns = list(batches.c) if with_rows else _summary_columns()
        query = (
            select(*columns)
            .where(batches.c.kind == kind)
            .order_by(batches.c.id.desc())
            .limit(limit)
        )
        with self._engine.connect() as connection:
            found = connection.execute(query).all()
        return [_batch(row, with_rows=with_rows) for row in found]

    def count(self, kind: str | None = None) -> int:
        """How many batches are stored (of ``kind``, or of every kind)."""
        query = select(func.count()).select_from(batches)
        if kind is not None:
            query = query.where(batches.c.kind == check_kind(kind))
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def get(self, batch_id: int) -> StoredBatch | None:
        """One batch by id, with its rows; None if there is no such batch."""
        query = select(batches).where(batches.c.id == int(batch_id))
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _batch(row, with_rows=True)

    def compare(self, kind: str, older_id: int, newer_id: int) -> list[dict[str, Any]]:
        """What changed between two batches of ``kind``, row by natural key.

        See ``compare_rows`` for the shape of each entry.
        """
        check_kind(kind)
        pair: list[StoredBatch] = []
        for batch_id in (older_id, newer_id):
            batch = self.get(batch_id)
            if batch is None:
                raise InsightStoreError(f"no insight batch #{batch_id} in {self.path}")
            if batch.kind != kind:
                raise InsightStoreError(f"batch #{batch_id} holds {batch.kind}, not {kind}")
            pair.append(batch)
        return compare_rows(kind, pair[0].rows, pair[1].rows)


def natural_key(kind: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values that identify ``row`` across batches of ``kind`` (None where missing)."""
    return tuple(_hashable(row.get(name)) for name in NATURAL_KEYS[check_kind(kind)])


def compare_rows(
    kind: str, older: Sequence[Mapping[str, Any]], newer: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Pair rows by natural key and report per key what changed.

    Each entry: ``{"key": {field: value}, "status": "changed"|"unchanged"|"added"|"removed",
    "changes": {field: {"before": x, "after": y[, "delta": y - x]}}}`` (``delta`` only when
    both are numbers). Entries follow the newer batch's order, then removed keys in the older
    batch's order. If a key repeats within one batch, its last row counts.
    """
    names = NATURAL_KEYS[check_kind(kind)]
    before = {natural_key(kind, row): row for row in older}
    after = {natural_key(kind, row): row for row in newer}
    out: list[dict[str, Any]] = []
    for key, new_row in after.items():
        old_row = before.get(key)
        changes = _changes(old_row or {}, new_row, skip=names)
        status = "added" if old_row is None else "changed" if changes else "unchanged"
        out.append({"key": _key_dict(names, new_row), "status": status, "changes": changes})
    for key, old_row in before.items():
        if key not in after:
            changes = _changes(old_row, {}, skip=names)
            out.append({"key": _key_dict(names, old_row), "status": "removed", "changes": changes})
    return out


def _key_dict(names: tuple[str, ...], row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in names}


def _changes(
    old: Mapping[str, Any], new: Mapping[str, Any], *, skip: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    changes: dict[str, dict[str, Any]] = {}
    for name in [*new, *(k for k in old if k not in new)]:
        if name in skip:
            continue
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        change: dict[str, Any] = {"before": was, "after": now}
        if _is_number(was) and _is_number(now):
            change["delta"] = now - was
        changes[name] = change
    return changes


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


def _summary_columns() -> list[Column[Any]]:
    return [c for c in batches.c if c.name not in ("rows_json", "meta_json")]


def _batch(row: Row[Any], *, with_rows: bool) -> StoredBatch:
    data = row._mapping
    return StoredBatch(
        id=int(data["id"]),
        kind=str(data["kind"]),
        node=str(data["node"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        model_version=str(data["model_version"]),
        data_fingerprint=str(data["data_fingerprint"]),
        epsilon_spent=float(data["epsilon_spent"]),
        rows=json.loads(data["rows_json"]) if with_rows else [],
        meta=json.loads(data["meta_json"]) if with_rows else {},
        row_count=int(data["row_count"]),
    )


def _reason(exc: SQLAlchemyError) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]
