"""The audit log over HTTP (admins only): page through events, verify the hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coordinator.api.deps import API_PREFIX, Admin, CoordDep
from coordinator.api.errors import AUTH_RESPONSES

router = APIRouter(prefix=API_PREFIX, tags=["audit"], responses=AUTH_RESPONSES)


class AuditEventOut(BaseModel):
    """One hash-chained event."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of events; pass ``next_after`` as ``after`` for the next page."""

    events: list[AuditEventOut]
    next_after: int


class AuditReportOut(BaseModel):
    """The outcome of verifying the whole chain; ``ok`` only without problems."""

    ok: bool
    events: int
    problems: list[str]
    anchor_seq: int
    head_seq: int


@router.get("/audit", response_model=AuditPage)
def list_events(
    principal: Admin,
    coord: CoordDep,
    after: Annotated[int, Query(ge=0, description="Only events with a larger seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Any:
    """Audit events oldest first, ``limit`` at a time."""
    events = coord.audit.events(limit=limit, after_seq=after, subject=subject)
    return {
        "events": [event.to_json() for event in events],
        "next_after": events[-1].seq if events else after,
    }


@router.get("/audit/verify", response_model=AuditReportOut)
def verify(principal: Admin, coord: CoordDep) -> Any:
    """Check the whole hash chain: edits, deletions and reordering are reported."""
    return coord.audit.verify().to_json()
