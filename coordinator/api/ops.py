"""Operations: liveness and readiness probes, Prometheus metrics, and the status summary.

``/healthz`` only says the process answers (a restart will not help otherwise). ``/readyz``
says whether the coordinator can do its job: the database answers and the SuperLink is
reachable; a load balancer or supervisor uses it to hold traffic back. ``/metrics`` is
unauthenticated, as Prometheus scrapers expect; it holds counts, never records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from coordinator.api.deps import API_PREFIX, AdminOrViewer, CoordDep, MetricsDep
from coordinator.api.errors import AUTH_RESPONSES
from coordinator.runtime import Coordinator
from coordinator.status import status as coordinator_status
from coordinator.status import superlink_reachable

root_router = APIRouter(tags=["operations"])
router = APIRouter(prefix=API_PREFIX, tags=["operations"], responses=AUTH_RESPONSES)
log = logging.getLogger("coordinator.api")

SUPERLINK_HEALTH_KEY = "superlink_healthy"


def superlink_state(coord: Coordinator) -> str | None:
    """None when the SuperLink is reachable, else why not (for /readyz)."""
    check = coord.extra.get(SUPERLINK_HEALTH_KEY)
    if callable(check):
        probe: Callable[[], object] = check
        try:
            healthy = bool(probe())
        except Exception:  # a failing probe means "not ready", never a 500
            log.warning("the SuperLink health check failed", exc_info=True)
            healthy = False
        return None if healthy else "the SuperLink is not healthy (its supervisor says so)"
    if coord.control is None:
        return "no SuperLink is configured: the coordinator runs without one"
    try:
        reachable = superlink_reachable(coord, max_age=0.0)  # readiness: always a fresh look
    except Exception:  # anything but a clean answer means "not ready", never a 500
        log.warning("checking the SuperLink failed", exc_info=True)
        reachable = False
    if not reachable:
        return f"the SuperLink at {coord.superlink_address or '?'} does not answer"
    return None


@root_router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers HTTP."""
    return {"status": "ok"}


@root_router.get(
    "/readyz",
    responses={503: {"description": "The database or the SuperLink is not available"}},
)
def readyz(coord: CoordDep) -> JSONResponse:
    """Readiness: 200 only when the database answers and the SuperLink is reachable."""
    database_ok = coord.db.ping()
    superlink_problem = superlink_state(coord)
    body: dict[str, Any] = {
        "database": "ok" if database_ok else "down",
        "superlink": "ok" if superlink_problem is None else "down",
    }
    problems = [] if database_ok else ["the database does not answer"]
    if superlink_problem is not None:
        problems.append(superlink_problem)
    if problems:
        body["detail"] = "not ready: " + "; ".join(problems)
        return JSONResponse(body, status_code=503)
    body["status"] = "ready"
    return JSONResponse(body)


@root_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics of this API."""
    data, content_type = metrics.render()
    return Response(content=data, media_type=content_type)


@router.get("/status")
def status(principal: AdminOrViewer, coord: CoordDep) -> dict[str, Any]:
    """The operator's summary: versions, database, SuperLink, retailers, campaigns, models."""
    return coordinator_status(coord)
