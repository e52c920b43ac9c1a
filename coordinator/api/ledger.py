"""The privacy-ledger mirror: nodes report their cumulative ε, admins and viewers read it.

A node reports for itself only: the retailer id comes from its credential, never from the
body. The node's own ledger is the authority; the mirror refuses a report that would make a
ledger shrink (409), because spending only grows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictFloat, StrictInt

from coordinator.api.deps import (
    API_PREFIX,
    AnyRole,
    CoordDep,
    RetailerOnly,
    ensure_can_read_retailer,
)
from coordinator.api.errors import AUTH_RESPONSES, NOT_FOUND, http_error, problem
from coordinator.auth import Role
from coordinator.services.ledger import LIFETIME_EPSILON_LIMIT, LedgerEntry, LedgerError

router = APIRouter(prefix=API_PREFIX, tags=["ledger"], responses=AUTH_RESPONSES)

Epsilon = Annotated[StrictFloat | StrictInt, Field(allow_inf_nan=False)]


class LedgerReportIn(BaseModel):
    """The node's cumulative ε spent and its cap after one round of one campaign."""

    campaign_id: StrictInt | None = Field(
        default=None, description="The campaign, or null for spending outside campaigns"
    )
    round: Annotated[StrictInt, Field(ge=0, description="0 is the statistics round")]
    epsilon_spent: Annotated[Epsilon, Field(ge=0, description="Cumulative ε spent (>= 0)")]
    epsilon_cap: Annotated[
        Epsilon,
        Field(gt=0, le=LIFETIME_EPSILON_LIMIT, description="The retailer's lifetime ε cap"),
    ]


class LedgerEntryOut(BaseModel):
    """One mirrored report."""

    id: int
    retailer_id: int
    campaign_id: int | None
    round: int
    epsilon_spent: float
    epsilon_cap: float
    remaining: float
    reported_at: datetime


class LedgerLatestOut(BaseModel):
    """A retailer's newest report: where its budget stands."""

    retailer_id: int
    epsilon_spent: float
    epsilon_cap: float
    remaining: float


class LedgerView(BaseModel):
    """``latest``: one line per retailer (admins, viewers); ``own``: every report of the
    calling retailer."""

    view: str
    latest: list[LedgerLatestOut] | None = None
    entries: list[LedgerEntryOut] | None = None


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    """The API shape of a mirrored report."""
    return {
        "id": entry.id,
        "retailer_id": entry.retailer_id,
        "campaign_id": entry.campaign_id,
        "round": entry.round,
        "epsilon_spent": entry.epsilon_spent,
        "epsilon_cap": entry.epsilon_cap,
        "remaining": entry.remaining,
        "reported_at": entry.reported_at,
    }


@router.post(
    "/ledger",
    status_code=201,
    response_model=LedgerEntryOut,
    responses={
        404: problem("Unknown campaign"),
        409: problem("The report would make the ledger shrink or rewrite history"),
    },
)
def report(body: LedgerReportIn, principal: RetailerOnly, coord: CoordDep) -> Any:
    """Mirror the calling retailer's ledger after a round (idempotent for retries)."""
    if principal.retailer_id is None:  # a retailer credential always names its retailer
        raise http_error(403, "this credential does not belong to a retailer")
    try:
        entry = coord.ledger.report(
            principal.retailer_id,
            campaign_id=body.campaign_id,
            round=body.round,
            epsilon_spent=float(body.epsilon_spent),
            epsilon_cap=float(body.epsilon_cap),
        )
    except LedgerError as exc:
        raise http_error(409, f"ledger report refused: {exc}") from None
    return entry_json(entry)


@router.get("/ledger", response_model=LedgerView, response_model_exclude_none=True)
def read_ledger(principal: AnyRole, coord: CoordDep) -> Any:
    """Admins and viewers: each retailer's newest report. Retailers: their own reports."""
    if principal.role is Role.RETAILER:
        retailer_id = principal.retailer_id
        own = [] if retailer_id is None else coord.ledger.for_retailer(retailer_id)
        return {"view": "own", "entries": [entry_json(entry) for entry in own]}
    latest = [
        {
            "retailer_id": retailer_id,
            "epsilon_spent": spent,
            "epsilon_cap": cap,
            "remaining": max(0.0, cap - spent),
        }
        for retailer_id, (spent, cap) in sorted(coord.ledger.latest().items())
    ]
    return {"view": "latest", "latest": latest}


@router.get(
    "/retailers/{retailer_id}/ledger",
    response_model=list[LedgerEntryOut],
    responses={403: problem("Another retailer's ledger"), 404: NOT_FOUND},
)
def retailer_ledger(retailer_id: int, principal: AnyRole, coord: CoordDep) -> Any:
    """Every mirrored report of one retailer, oldest first."""
    ensure_can_read_retailer(principal, retailer_id)
    if coord.enrollment.retailer(retailer_id) is None:
        raise http_error(404, f"there is no retailer #{retailer_id}")
    return [entry_json(entry) for entry in coord.ledger.for_retailer(retailer_id)]
