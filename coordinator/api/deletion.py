"""Right to deletion over HTTP: a retailer files a request, admins list the requests.

The retailer comes from the credential, never from the body, so a shop can only ask for its
own data to be deleted. The logic is in ``coordinator.services.deletion``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictStr

from coordinator.api.deps import API_PREFIX, Admin, CoordDep, RetailerOnly
from coordinator.api.errors import AUTH_RESPONSES, http_error, problem
from coordinator.runtime import Coordinator
from coordinator.services.deletion import MAX_NOTE, DeletionRequests

router = APIRouter(prefix=API_PREFIX, tags=["deletion"], responses=AUTH_RESPONSES)

RECEIVED = (
    "Your deletion request is recorded (request #{id}). The coordinator's admin deletes what "
    "the coordinator holds about your shop; your computer's own copies are yours to delete."
)


class DeletionRequestIn(BaseModel):
    """An optional note for the admin (what the retailer wants, how to reach them)."""

    note: Annotated[StrictStr, Field(max_length=MAX_NOTE)] = ""


class DeletionRequestOut(BaseModel):
    """A filed request; ``id`` is its audit event's sequence number."""

    id: int
    retailer_id: int
    retailer_name: str
    requested_at: datetime
    requested_by: str
    note: str
    scope: str
    message: str = ""


def _service(coord: Coordinator) -> DeletionRequests:
    return DeletionRequests(coord.db, coord.audit)


@router.post(
    "/deletion-requests",
    status_code=201,
    response_model=DeletionRequestOut,
    responses={400: problem("The note cannot be stored")},
)
def file_request(body: DeletionRequestIn, principal: RetailerOnly, coord: CoordDep) -> Any:
    """Ask the coordinator to delete what it holds about the calling retailer (audited)."""
    if principal.retailer_id is None:  # a retailer credential always names its retailer
        raise http_error(403, "this credential does not belong to a retailer")
    try:
        request = _service(coord).file(principal.retailer_id, principal.name, body.note)
    except ValueError as exc:
        raise http_error(400, f"the request cannot be stored: {exc}") from None
    return {**request.to_json(), "message": RECEIVED.format(id=request.id)}


@router.get("/deletion-requests", response_model=list[DeletionRequestOut])
def list_requests(
    principal: Admin,
    coord: CoordDep,
    after: Annotated[int, Query(ge=0, description="Only requests with a larger id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Every deletion request, oldest first (admins)."""
    return [request.to_json() for request in _service(coord).list(after, limit)]
