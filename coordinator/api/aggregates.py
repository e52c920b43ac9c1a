"""Published aggregates (market statistics): only from >= k retailers, only while unexpired."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from coordinator.api.deps import API_PREFIX, AnyRole, CoordDep
from coordinator.api.errors import AUTH_RESPONSES

router = APIRouter(prefix=API_PREFIX, tags=["aggregates"], responses=AUTH_RESPONSES)


class AggregateOut(BaseModel):
    """One published aggregate."""

    id: int
    kind: str
    campaign_id: int | None
    contributors: int
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime


@router.get("/aggregates", response_model=list[AggregateOut])
def list_aggregates(
    principal: AnyRole,
    coord: CoordDep,
    kind: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Any:
    """Unexpired aggregates (of ``kind`` if given), newest first."""
    store = coord.aggregates
    # The store refuses to publish below k and the database has a CHECK for it; the filter is
    # a last guard so that nothing from fewer than k retailers is ever served.
    return [
        record.to_json()
        for record in store.list(kind)
        if record.contributors >= store.min_contributors
    ]
