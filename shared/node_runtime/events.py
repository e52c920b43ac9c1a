"""The node's local event stream: what its runner did, for the retailer to read.

One JSON object per line in ``NODE_DIR/events.jsonl``, appended and never rewritten, so the
desktop app (or ``retail-node status``) can follow it by byte offset while the runner writes.
Each line is::

    {"v": 1, "at": "2026-05-09T10:11:12.345678+00:00", "kind": "declined",
     "run_id": 42, "round": 3, "message": "no consent for demand & pricing", "data": {...}}

``run_id`` and ``round`` may be null; ``data`` holds plain JSON values whose keys depend on the
kind (see :class:`EventKind`). Readers must ignore kinds and keys they do not know.

The ledger, not this file, is the authority on privacy budget: an ``epsilon_charged`` line
reports what the ledger showed after a release. Lines are informational, written with one
``write`` each (O_APPEND), so a crash can leave at most one truncated last line: the reader
leaves an unterminated last line for a later read and skips lines that are not valid JSON,
and the writer terminates a truncated last line before appending.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
FORMAT_VERSION = 1
MAX_MESSAGE_CHARS = 2000

JSONValue = str | int | float | bool | None


class EventKind(StrEnum):
    """What happened; ``data`` keys per kind are listed beside each."""

    RUNNER_STARTED = "runner_started"  # pid, flwr, releases (trusted app ids and versions)
    RUNNER_STOPPED = "runner_stopped"  # pid, tasks
    RUN_REFUSED = "run_refused"  # fab_hash, app_id, version, content_sha256
    ROUND_STARTED = "round_started"  # stage ("train" or "statistics")
    JOINED = "joined"  # stage, epsilon_after, epsilon_cap
    DECLINED = "declined"  # stage (message = the node's reason)
    TRAINED = "trained"  # stage, seconds
    EPSILON_CHARGED = "epsilon_charged"  # epsilon (increase), spent, cap
    MODEL_RECEIVED = "model_received"  # loss, examples
    LEDGER_REPORTED = "ledger_reported"  # campaign_id, spent, cap (told to the coordinator)
    INSIGHTS_REFRESHED = "insights_refreshed"  # seconds, report (after a campaign's last round)
    ERROR = "error"  # step, error (exception type)


@dataclass(frozen=True)
class Event:
    """One line of the stream."""

    kind: str  # an EventKind value, or a newer kind this reader does not know
    at: datetime
    run_id: int | None = None
    round: int | None = None
    message: str = ""
    data: dict[str, JSONValue] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "at": self.at.isoformat(),
                "kind": self.kind,
                "run_id": self.run_id,
                "round": self.round,
                "message": self.message,
                "data": self.data,
            },
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        """Raises ValueError for a line that is not an event."""
        raw = json.loads(line)
        if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
            raise ValueError("not an event object")
        at = datetime.fromisoformat(str(raw["at"]))
        data = raw.get("data") or {}
        if not isinstance(data, dict):
            raise ValueError("event data is not an object")
        return cls(
            kind=raw["kind"],
            at=at,
            run_id=_optional_int(raw.get("run_id")),
            round=_optional_int(raw.get("round")),
            message=str(raw.get("message") or ""),
            data=data,
        )


def _optional_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    raise ValueError(f"not an integer: {value!r}")


def _clean(data: Mapping[str, Any]) -> dict[str, JSONValue]:
    """Plain JSON values only; anything else as text, non-finite floats as null."""
    out: dict[str, JSONValue] = {}
    for key, value in data.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        elif value is None or isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = str(value)
    return out


class EventLog:
    """Appends events to ``NODE_DIR/events.jsonl`` (safe across processes: one write a line)."""

    def __init__(self, node_dir: Path) -> None:
        self.path = Path(node_dir) / EVENTS_FILE

    def append(
        self,
        kind: EventKind | str,
        *,
        run_id: int | None = None,
        server_round: int | None = None,
        message: str = "",
        **data: Any,
    ) -> Event:
        event = Event(
            kind=str(kind),
            at=datetime.now(UTC),
            run_id=run_id,
            round=server_round,
            message=message[:MAX_MESSAGE_CHARS],
            data=_clean(data),
        )
        line = (event.to_json() + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if _ends_unterminated(fd):
                line = b"\n" + line  # a crash cut the last line: end it, it reads as skipped
            os.write(fd, line)
        finally:
            os.close(fd)
        return event


def _ends_unterminated(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


@dataclass(frozen=True)
class EventBatch:
    """Events read from ``offset`` on; pass ``next_offset`` to read only newer ones."""

    events: tuple[Event, ...]
    next_offset: int
    skipped: int = 0  # complete lines that were not valid events


def read_events(node_dir: Path, offset: int = 0) -> EventBatch:
    """Every complete event line from byte ``offset``; a missing file reads as empty."""
    path = Path(node_dir) / EVENTS_FILE
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            raw = handle.read()
    except FileNotFoundError:
        return EventBatch((), offset)
    events: list[Event] = []
    skipped = 0
    consumed = 0
    for line in _complete_lines(raw):
        consumed += len(line)
        text = line.strip()
        if not text:
            continue
        try:
            events.append(Event.from_json(text.decode("utf-8")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            skipped += 1
    return EventBatch(tuple(events), offset + consumed, skipped)


def _complete_lines(raw: bytes) -> Iterator[bytes]:
    """Newline-terminated lines; an unterminated tail (a write in progress or cut) is left."""
    start = 0
    while (end := raw.find(b"\n", start)) != -1:
        yield raw[start : end + 1]
        start = end + 1


def last_events(node_dir: Path, count: int = 50) -> tuple[Event, ...]:
    """The newest ``count`` events (for a status line or a panel opened later)."""
    return read_events(node_dir).events[-count:]
