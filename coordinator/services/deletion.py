"""Right to deletion: a retailer asks the coordinator to delete what it holds about them.

Why the audit chain and not a table of its own: a deletion request is a legal record that must
not be edited or lost quietly, which is exactly what the hash-chained, append-only audit log
guarantees. Each request is one ``retailer.deletion_requested`` event about
``retailer:<id>``; admins list them from there (and act on them with the admin tools). The
request's id is its audit sequence number, so a retailer's receipt points at the exact event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from coordinator.audit import AuditLog
from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError

ACTION = "retailer.deletion_requested"
MAX_NOTE = 500
SCOPE = (
    "every record about this retailer: ledger mirror reports, enrollment and credentials, "
    "and its contributions where they can be told apart"
)


@dataclass(frozen=True)
class DeletionRequest:
    """One filed request, as recorded in the audit chain."""

    id: int  # the audit event's sequence number
    retailer_id: int
    retailer_name: str
    requested_at: datetime
    requested_by: str
    note: str
    scope: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "retailer_id": self.retailer_id,
            "retailer_name": self.retailer_name,
            "requested_at": self.requested_at,
            "requested_by": self.requested_by,
            "note": self.note,
            "scope": self.scope,
        }


class DeletionRequests:
    """Files and lists retailers' deletion requests."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._db = db
        self._audit = audit

    def file(self, retailer_id: int, actor: str, note: str = "") -> DeletionRequest:
        """Record a request for ``retailer_id`` by ``actor`` (the credential's name).

        Raises ValueError for a note that is too long or has NUL characters and
        NotFoundError for an unknown retailer."""
        note = note.strip()
        if len(note) > MAX_NOTE:
            raise ValueError(f"the note is longer than {MAX_NOTE} characters")
        if "\x00" in note:
            raise ValueError("the note must not contain NUL characters")
        with self._db.session() as session:
            retailer = session.get(t.Retailer, retailer_id)
            if retailer is None:
                raise NotFoundError(f"there is no retailer #{retailer_id}")
            event = self._audit.append_in(
                session,
                actor,
                ACTION,
                f"retailer:{retailer_id}",
                {
                    "retailer_id": retailer_id,
                    "retailer_name": retailer.name,
                    "note": note,
                    "scope": SCOPE,
                },
            )
        return _request(event.seq, event.at, event.actor, event.details)

    def list(self, after: int = 0, limit: int = 100) -> list[DeletionRequest]:
        """Requests oldest first; page with ``after`` = the last id seen."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {limit}")
        query = (
            select(t.AuditEvent)
            .where(t.AuditEvent.action == ACTION, t.AuditEvent.seq > after)
            .order_by(t.AuditEvent.seq)
            .limit(limit)
        )
        with self._db.session(readonly=True) as session:
            return [
                _request(row.seq, row.at, row.actor, dict(row.details))
                for row in session.scalars(query)
            ]


def _request(seq: int, at: datetime, actor: str, details: dict[str, Any]) -> DeletionRequest:
    return DeletionRequest(
        id=seq,
        retailer_id=int(details["retailer_id"]),
        retailer_name=str(details.get("retailer_name", "")),
        requested_at=at,
        requested_by=actor,
        note=str(details.get("note", "")),
        scope=str(details.get("scope", SCOPE)),
    )
