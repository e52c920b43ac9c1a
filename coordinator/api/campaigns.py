"""Campaigns: start and cancel (admin), follow (everyone), and a live progress WebSocket.

Starting and cancelling are ``CampaignRunner``'s decisions (it talks to the SuperLink); the
routes map its outcomes to HTTP. The WebSocket polls the campaign store rather than being
pushed to, because rounds are recorded by the ServerApp in another process: polling the
shared database is what sees them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr
from starlette.websockets import WebSocketDisconnect, WebSocketState

from coordinator.api.deps import API_PREFIX, Admin, AnyRole, CoordDep, RunnerDep, coordinator_of
from coordinator.api.errors import AUTH_RESPONSES, NOT_FOUND, http_error, new_reference, problem
from coordinator.auth import Principal
from coordinator.campaign_runner import CampaignUnavailable
from coordinator.runtime import Coordinator
from coordinator.services.campaigns import TASKS, CampaignRecord, CampaignStateError

router = APIRouter(prefix=API_PREFIX, tags=["campaigns"], responses=AUTH_RESPONSES)
log = logging.getLogger("coordinator.api")

PROGRESS_POLL_SECONDS = 0.5
REAUTHENTICATE_SECONDS = 30.0  # a revoked or expired token stops a stream within this long
ENDED = frozenset({"finished", "failed", "cancelled"})
POLICY_VIOLATION = 1008  # WebSocket close code: authentication failed
NOT_FOUND_CLOSE = 4404  # application close code: no such campaign
INTERNAL_CLOSE = 1011

NO_RUNNER = (
    "campaigns cannot be started: this coordinator runs without a SuperLink; start it with "
    "`retail-coordinator serve` and try again"
)


class CampaignIn(BaseModel):
    """A campaign's settings; ranges are checked by the campaign service."""

    rounds: Annotated[StrictInt, Field(description="Training rounds (1..1000)")]
    epsilon: Annotated[
        StrictFloat | StrictInt,
        Field(description="ε per retailer for the whole campaign (0.05..10)"),
    ]
    tasks: Annotated[
        list[StrictStr],
        Field(max_length=20, description=f"Any of: {', '.join(TASKS)}"),
    ]


class CampaignOut(BaseModel):
    """A campaign as stored."""

    id: int
    status: str
    rounds: int
    epsilon: float
    tasks: list[str]
    flower_run_id: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class RoundOut(BaseModel):
    """One attempt at one round, as the ServerApp reported it."""

    seq: int
    campaign_id: int
    round: int
    stage: str
    attempt: int
    status: str
    participants: int
    dropouts: int
    metrics: dict[str, Any]
    recorded_at: datetime


def _require_campaign(coord: Coordinator, campaign_id: int) -> CampaignRecord:
    record = coord.campaigns.get(campaign_id)
    if record is None:
        raise http_error(404, f"there is no campaign #{campaign_id}")
    return record


@router.post(
    "/campaigns",
    status_code=201,
    response_model=CampaignOut,
    responses={
        400: problem("Settings out of range"),
        503: problem("No SuperLink to run the campaign on"),
    },
)
def start_campaign(body: CampaignIn, principal: Admin, runner: RunnerDep) -> Any:
    """Start a federated training campaign (submitted to the SuperLink as a Flower run)."""
    if runner is None:
        raise http_error(503, NO_RUNNER)
    try:
        record = runner.start(
            rounds=body.rounds, epsilon=float(body.epsilon), tasks=body.tasks, actor=principal.name
        )
    except CampaignUnavailable as exc:
        raise http_error(503, str(exc) or NO_RUNNER) from None
    except ValueError as exc:
        raise http_error(400, f"cannot start this campaign: {exc}") from None
    return record.to_json()


@router.get("/campaigns", response_model=list[CampaignOut])
def list_campaigns(
    principal: AnyRole,
    coord: CoordDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many")] = 50,
) -> Any:
    """Campaigns, newest first."""
    return [record.to_json() for record in coord.campaigns.list(limit=limit)]


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, responses={404: NOT_FOUND})
def get_campaign(campaign_id: int, principal: AnyRole, coord: CoordDep) -> Any:
    """One campaign."""
    return _require_campaign(coord, campaign_id).to_json()


@router.post(
    "/campaigns/{campaign_id}/cancel",
    response_model=CampaignOut,
    responses={404: NOT_FOUND, 409: problem("The campaign has already ended")},
)
def cancel_campaign(campaign_id: int, principal: Admin, coord: CoordDep, runner: RunnerDep) -> Any:
    """Cancel a pending or running campaign (its Flower run is stopped)."""
    try:
        if runner is not None:
            record = runner.cancel(campaign_id, principal.name)
        else:  # no SuperLink, so no Flower run to stop: only the record changes
            record = coord.campaigns.cancel(campaign_id, principal.name)
    except CampaignStateError as exc:
        raise http_error(409, str(exc)) from None
    return record.to_json()


@router.get(
    "/campaigns/{campaign_id}/rounds", response_model=list[RoundOut], responses={404: NOT_FOUND}
)
def list_rounds(
    campaign_id: int,
    principal: AnyRole,
    coord: CoordDep,
    after: Annotated[int, Query(ge=0, description="Only rows with a larger seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> Any:
    """Round progress rows of a campaign, oldest first; page with ``after`` = last seq seen."""
    _require_campaign(coord, campaign_id)
    return [row.to_json() for row in coord.campaigns.rounds(campaign_id, after, limit)]


# -- live progress -----------------------------------------------------------------------------


def _token_of(websocket: WebSocket) -> str | None:
    """The bearer token from the Authorization header, else the ``access_token`` query
    parameter (browsers cannot set headers on WebSockets)."""
    scheme, credentials = get_authorization_scheme_param(websocket.headers.get("authorization"))
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return websocket.query_params.get("access_token") or None


async def _principal(coord: Coordinator, token: str | None) -> Principal | None:
    if not token:
        return None
    return await run_in_threadpool(coord.credentials.authenticate, token)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Returns when the client goes away (anything it sends is ignored)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


@router.websocket("/campaigns/{campaign_id}/progress")
async def campaign_progress(websocket: WebSocket, campaign_id: int) -> None:
    """Stream a campaign: first ``{"type": "campaign", ...}``, then one ``{"type": "round",
    ...}`` per round row as it is recorded, and ``{"type": "end", "campaign": ...}`` when the
    campaign ends. Auth: ``Authorization: Bearer`` or ``?access_token=``; any role.
    ``?after=SEQ`` skips rows already seen. Closes 1008 when authentication fails, 4404 for
    an unknown campaign."""
    coord = coordinator_of(websocket)
    await websocket.accept()
    try:
        await _stream(websocket, coord, campaign_id)
    except WebSocketDisconnect:
        return
    except Exception:
        reference = new_reference()
        log.exception("campaign progress stream failed (reference %s)", reference)
        if websocket.application_state is WebSocketState.CONNECTED:
            await websocket.close(INTERNAL_CLOSE, f"internal error (reference {reference})")


async def _stream(websocket: WebSocket, coord: Coordinator, campaign_id: int) -> None:
    token = _token_of(websocket)
    if await _principal(coord, token) is None:
        reason = "missing access token" if not token else "invalid, expired or revoked token"
        await websocket.close(POLICY_VIOLATION, f"authentication failed: {reason}")
        return
    try:
        last_seq = max(0, int(websocket.query_params.get("after", "0")))
    except ValueError:
        await websocket.close(POLICY_VIOLATION, "after must be a whole number (a round seq)")
        return
    campaign = await run_in_threadpool(coord.campaigns.get, campaign_id)
    if campaign is None:
        await websocket.close(NOT_FOUND_CLOSE, f"there is no campaign #{campaign_id}")
        return
    interval = float(getattr(websocket.app.state, "progress_interval", PROGRESS_POLL_SECONDS))
    await websocket.send_json({"type": "campaign", "campaign": campaign.to_json()})
    watcher = asyncio.ensure_future(_until_disconnect(websocket))
    checked = time.monotonic()
    try:
        while True:
            # Status first, rows second: if the campaign had ended, every row was recorded
            # before that, so the rows read next are complete.
            campaign = await run_in_threadpool(coord.campaigns.get, campaign_id)
            rows = await run_in_threadpool(coord.campaigns.rounds, campaign_id, last_seq)
            for row in rows:
                await websocket.send_json({"type": "round", **row.to_json()})
                last_seq = row.seq
            if campaign is None or campaign.status in ENDED:
                ended = campaign.to_json() if campaign is not None else None
                await websocket.send_json({"type": "end", "campaign": ended})
                await websocket.close(1000)
                return
            if rows:
                continue  # maybe more than one page was waiting
            done, _ = await asyncio.wait({watcher}, timeout=interval)
            if done:
                return
            if time.monotonic() - checked >= REAUTHENTICATE_SECONDS:
                checked = time.monotonic()
                if await _principal(coord, token) is None:
                    await websocket.close(POLICY_VIOLATION, "the token expired or was revoked")
                    return
    finally:
        watcher.cancel()
        if watcher.done() and not watcher.cancelled():
            watcher.exception()  # retrieved, so asyncio does not warn about it
