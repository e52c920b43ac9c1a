"""The coordinator's audit log: append-only and hash-chained, so tampering is detectable.

Every security-relevant action (enrollment, credentials, campaigns, rounds, model releases)
is appended as an event whose hash covers its content and the previous event's hash:
``hash = sha256(prev_hash || canonical JSON of [seq, at, actor, action, subject, details])``.
Editing, deleting or reordering any stored event breaks the chain, and ``verify`` says where.
Sequence numbers are contiguous (a gap is a deletion) and the ``audit_anchor`` row records both
ends: the last event removed by retention pruning (so a pruned log still verifies) and the
newest appended event (so removing the newest events is detected too).

The database refuses UPDATE of events and DELETE of events not yet covered by the anchor
(triggers created by the migration), so even code that bypasses this class cannot silently
rewrite history. Appends are serialised: SQLite's write transactions start with BEGIN
IMMEDIATE, PostgreSQL's lock the anchor row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from coordinator.db import schema as t
from coordinator.db.database import Database, affected_rows
from coordinator.db.types import Clock, as_utc, canonical_json, plain_json, utc_now

MAX_PROBLEMS = 200  # a wrecked log is reported by its first problems, not a million lines
_LIMITS = {"actor": 200, "action": 100, "subject": 200}


class AuditIntegrityError(RuntimeError):
    """The stored chain does not verify, so an operation that relies on it was refused."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message + ": " + "; ".join(problems[:3]))
        self.problems = problems


@dataclass(frozen=True)
class AuditEvent:
    """One stored audit event, as appended (``details`` is plain JSON data)."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the API's and CLI's shape)."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class AuditReport:
    """The outcome of ``AuditLog.verify``: ``ok`` only when ``problems`` is empty.

    ``events`` counts the stored events checked; ``anchor_seq`` is the last pruned event and
    ``head_seq`` the newest appended one (the chain covers ``anchor_seq + 1 .. head_seq``).
    """

    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)
    anchor_seq: int = 0
    head_seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the API's and CLI's shape)."""
        return {
            "ok": self.ok,
            "events": self.events,
            "problems": list(self.problems),
            "anchor_seq": self.anchor_seq,
            "head_seq": self.head_seq,
        }


def timestamp_text(at: datetime) -> str:
    """The exact text of a timestamp inside the hash (UTC, always with microseconds)."""
    return as_utc(at).isoformat(timespec="microseconds")


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
) -> str:
    """The chain hash of one event: SHA-256 of the previous hash followed by the canonical
    JSON of ``[seq, at, actor, action, subject, details]`` (UTF-8)."""
    body = canonical_json([seq, timestamp_text(at), actor, action, subject, dict(details)])
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


class AuditLog:
    """Appends, reads, verifies and prunes the hash-chained audit log in ``db``."""

    def __init__(self, db: Database, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    # -- writing ---------------------------------------------------------------------------

    def append(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
    ) -> AuditEvent:
        """Append one event in its own transaction and return it as stored.

        ``details`` must be JSON data (no NaN); secrets must never be put in it. Raises
        ``ValueError`` for empty or over-long actor/action/subject or non-JSON details.
        """
        with self._db.session() as session:
            return self.append_in(session, actor, action, subject, details)

    def append_in(
        self,
        session: Session,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Append within the caller's transaction, so the event commits (or rolls back) with
        the change it records. Call it last in the transaction (it locks the chain's head)."""
        fields = {"actor": actor, "action": action, "subject": subject}
        for name, value in fields.items():
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"audit {name} must be non-empty text, got {value!r}")
            if "\x00" in value:
                raise ValueError(f"audit {name} must not contain NUL characters")
            if len(value) > _LIMITS[name]:
                raise ValueError(f"audit {name} is longer than {_LIMITS[name]} characters")
        plain = plain_json(dict(details or {}), "details")
        anchor = _lock_anchor(session)
        seq = anchor.head_seq + 1
        at = as_utc(self._clock(), what="the audit clock")
        digest = event_hash(anchor.head_hash, seq, at, actor, action, subject, plain)
        session.execute(
            insert(t.AuditEvent).values(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                subject=subject,
                details=plain,
                prev_hash=anchor.head_hash,
                hash=digest,
            )
        )
        session.execute(
            update(t.AuditAnchor)
            .where(t.AuditAnchor.id == 1)
            .values(head_seq=seq, head_hash=digest)
            .execution_options(synchronize_session=False)
        )
        return AuditEvent(seq, at, actor, action, subject, plain, anchor.head_hash, digest)

    # -- reading ---------------------------------------------------------------------------

    def events(
        self, limit: int = 100, after_seq: int = 0, subject: str | None = None
    ) -> list[AuditEvent]:
        """Up to ``limit`` (1..1000) events with ``seq > after_seq``, oldest first, optionally
        only those about ``subject``. Page by passing the last ``seq`` seen as ``after_seq``."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {limit}")
        query = select(t.AuditEvent).where(t.AuditEvent.seq > after_seq)
        if subject is not None:
            query = query.where(t.AuditEvent.subject == subject)
        query = query.order_by(t.AuditEvent.seq).limit(limit)
        with self._db.session(readonly=True) as session:
            return [_event(row) for row in session.scalars(query)]

    def count(self) -> int:
        """How many events are stored (pruned ones excluded)."""
        with self._db.session(readonly=True) as session:
            return int(session.scalar(select(func.count()).select_from(t.AuditEvent)) or 0)

    # -- checking --------------------------------------------------------------------------

    def verify(self) -> AuditReport:
        """Check the whole stored chain from the anchor to the head, in one snapshot.

        Reports, with the sequence numbers involved: events whose content no longer matches
        their hash (edited), missing sequence numbers (deleted), events whose ``prev_hash``
        does not continue the chain (deleted, reordered or re-linked), and a chain whose end
        is not the recorded head (newest events deleted or forged).
        """
        with self._db.session(readonly=True) as session:
            anchor = _read_anchor(session, lock=False)
            if anchor is None:
                return AuditReport(False, 0, ["the audit anchor row is missing"])
            rows = session.scalars(
                select(t.AuditEvent).order_by(t.AuditEvent.seq).execution_options(yield_per=1000)
            )
            check = _check_chain(rows, anchor.seq, anchor.hash)
        problems = check.problems
        if (check.last_seq, check.last_hash) != (anchor.head_seq, anchor.head_hash):
            problems.append(_head_problem(check.last_seq, anchor.head_seq))
        return AuditReport(
            ok=not problems,
            events=check.count,
            problems=_capped(problems),
            anchor_seq=anchor.seq,
            head_seq=anchor.head_seq,
        )

    # -- retention -------------------------------------------------------------------------

    def prune(self, older_than: datetime, *, actor: str = "system") -> int:
        """Delete the events up to the newest one recorded before ``older_than`` (retention),
        moving the anchor onto the last deleted event so that ``verify`` still passes.

        The events to be removed are verified first: a tampered stretch is never pruned (that
        would launder it) and raises ``AuditIntegrityError``. The pruning itself is appended
        as an ``audit.prune`` event. Returns how many events were deleted.
        """
        cutoff = as_utc(older_than, what="older_than")
        with self._db.session() as session:
            anchor = _lock_anchor(session)
            last = session.scalar(
                select(func.max(t.AuditEvent.seq)).where(
                    t.AuditEvent.at < cutoff, t.AuditEvent.seq > anchor.seq
                )
            )
            if last is None:
                return 0
            rows = session.scalars(
                select(t.AuditEvent)
                .where(t.AuditEvent.seq > anchor.seq, t.AuditEvent.seq <= last)
                .order_by(t.AuditEvent.seq)
            )
            check = _check_chain(rows, anchor.seq, anchor.hash)
            if check.problems or check.last_seq != last:
                problems = check.problems or [f"events up to {last} could not be read"]
                raise AuditIntegrityError(
                    "refusing to prune an audit log that does not verify", _capped(problems)
                )
            session.execute(
                update(t.AuditAnchor)
                .where(t.AuditAnchor.id == 1)
                .values(seq=last, hash=check.last_hash)
                .execution_options(synchronize_session=False)
            )
            removed = session.execute(
                delete(t.AuditEvent)
                .where(t.AuditEvent.seq <= last)
                .execution_options(synchronize_session=False)
            )
            count = affected_rows(removed)
            session.expire_all()
            self.append_in(
                session,
                actor,
                "audit.prune",
                "audit",
                {"removed": count, "through_seq": last, "older_than": cutoff.isoformat()},
            )
            return count


@dataclass
class _ChainCheck:
    count: int
    last_seq: int
    last_hash: str
    problems: list[str]


def _check_chain(rows: Iterable[t.AuditEvent], start_seq: int, start_hash: str) -> _ChainCheck:
    """Walk ``rows`` (ascending seq) from the anchor; one message per problem found."""
    problems: list[str] = []
    expected, prev, count = start_seq + 1, start_hash, 0
    for row in rows:
        count += 1
        if row.seq < expected:
            problems.append(f"event {row.seq} lies before the retention anchor ({start_seq})")
            continue
        if row.seq > expected:
            span = str(expected) if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
            problems.append(f"event(s) {span} missing: deleted from the log")
        elif row.prev_hash != prev:
            problems.append(
                f"event {row.seq}: does not link to event {row.seq - 1} "
                "(events deleted, reordered or re-linked)"
            )
        recomputed = event_hash(
            row.prev_hash, row.seq, row.at, row.actor, row.action, row.subject, row.details
        )
        if recomputed != row.hash:
            problems.append(f"event {row.seq}: content does not match its hash (edited)")
        expected, prev = row.seq + 1, row.hash
    return _ChainCheck(count, expected - 1, prev, problems)


def _head_problem(last_seq: int, head_seq: int) -> str:
    if last_seq < head_seq:
        span = str(head_seq) if head_seq == last_seq + 1 else f"{last_seq + 1}..{head_seq}"
        return f"event(s) {span} missing: the newest events were deleted"
    if last_seq > head_seq:
        return f"events after {head_seq} were not appended through the audit log"
    return f"event {last_seq} is not the event recorded as the head of the log (replaced)"


@dataclass(frozen=True)
class _Anchor:
    seq: int
    hash: str
    head_seq: int
    head_hash: str


_ANCHOR_COLUMNS = (
    t.AuditAnchor.seq,
    t.AuditAnchor.hash,
    t.AuditAnchor.head_seq,
    t.AuditAnchor.head_hash,
)


def _read_anchor(session: Session, *, lock: bool) -> _Anchor | None:
    query = select(*_ANCHOR_COLUMNS).where(t.AuditAnchor.id == 1)
    row = session.execute(query.with_for_update() if lock else query).first()
    return None if row is None else _Anchor(*row)


def _lock_anchor(session: Session) -> _Anchor:
    """The anchor row, locked for this transaction (PostgreSQL; SQLite already holds its
    write lock since BEGIN IMMEDIATE), so concurrent appends take turns."""
    anchor = _read_anchor(session, lock=True)
    if anchor is None:
        raise AuditIntegrityError("the audit log cannot be written", ["the anchor row is missing"])
    return anchor


def _event(row: t.AuditEvent) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        at=row.at.astimezone(UTC),
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        details=dict(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]
