"""The register of enrolled retailers: list, read one, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from coordinator.api.deps import (
    API_PREFIX,
    Admin,
    AdminOrViewer,
    AnyRole,
    CoordDep,
    ensure_can_read_retailer,
)
from coordinator.api.errors import AUTH_RESPONSES, NOT_FOUND, http_error, problem
from coordinator.enroll_flow import revoke_retailer as revoke_everywhere
from coordinator.services.enrollment import RetailerRecord

router = APIRouter(prefix=API_PREFIX, tags=["retailers"], responses=AUTH_RESPONSES)


class RetailerOut(BaseModel):
    """An enrolled retailer (its node's public key is public; nothing secret is here)."""

    id: int
    name: str
    status: str
    flower_node_id: int | None
    node_public_key: str
    key_fingerprint: str
    created_at: datetime


def retailer_json(record: RetailerRecord) -> dict[str, Any]:
    """The API shape of a retailer record."""
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "flower_node_id": record.flower_node_id,
        "node_public_key": record.node_public_key,
        "key_fingerprint": record.key_fingerprint,
        "created_at": record.created_at,
    }


@router.get("/retailers", response_model=list[RetailerOut])
def list_retailers(principal: AdminOrViewer, coord: CoordDep) -> Any:
    """Every enrolled retailer, revoked ones included, oldest first."""
    return [retailer_json(record) for record in coord.enrollment.list_retailers()]


@router.get(
    "/retailers/{retailer_id}",
    response_model=RetailerOut,
    responses={403: problem("Another retailer's record"), 404: NOT_FOUND},
)
def get_retailer(retailer_id: int, principal: AnyRole, coord: CoordDep) -> Any:
    """One retailer: admins and viewers read any, a retailer only itself."""
    ensure_can_read_retailer(principal, retailer_id)
    record = coord.enrollment.retailer(retailer_id)
    if record is None:
        raise http_error(404, f"there is no retailer #{retailer_id}")
    return retailer_json(record)


@router.post(
    "/retailers/{retailer_id}/revoke", response_model=RetailerOut, responses={404: NOT_FOUND}
)
def revoke_retailer(retailer_id: int, principal: Admin, coord: CoordDep) -> Any:
    """Shut a retailer out: its credentials stop working at once (idempotent, audited)."""
    return retailer_json(revoke_everywhere(coord, retailer_id, actor=principal.name))
