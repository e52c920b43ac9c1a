"""The coordinator's HTTP API as one FastAPI app, served under ``/api/v1``.

The app holds no state of its own beyond metrics: everything lives in the ``Coordinator``'s
services, so the same app can be served by uvicorn in the daemon or driven by a test client.
"""

from __future__ import annotations

from fastapi import FastAPI

from coordinator.api import (
    aggregates,
    audit,
    auth_routes,
    campaigns,
    deletion,
    enrollment,
    ledger,
    models,
    ops,
    retailers,
)
from coordinator.api.deps import API_PREFIX
from coordinator.api.errors import CatchAllMiddleware, install_error_handlers
from coordinator.api.metrics import ApiMetrics, MetricsMiddleware
from coordinator.campaign_runner import CampaignRunner
from coordinator.runtime import Coordinator
from shared import __version__

__all__ = ["API_PREFIX", "create_app"]

DESCRIPTION = """\
The Retail Intelligence coordinator: enrollment of retailers' nodes, federated training
campaigns, the privacy-ledger mirror, published models and aggregates, and the audit log.

Authenticate with `Authorization: Bearer <access token>`. Errors are JSON
`{"detail": "..."}`; 401 means get a new token, 403 means this credential may not do this.
"""


def create_app(coord: Coordinator, runner: CampaignRunner | None = None) -> FastAPI:
    """The API over ``coord``; ``runner`` None means campaigns cannot be started (503)."""
    app = FastAPI(
        title="Retail Intelligence Coordinator",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    metrics = ApiMetrics(coord)
    app.state.coord = coord
    app.state.runner = runner
    app.state.metrics = metrics
    app.state.progress_interval = campaigns.PROGRESS_POLL_SECONDS
    install_error_handlers(app)
    # Added last is outermost: metrics see the 500s the catch-all produces.
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (
        enrollment,
        auth_routes,
        retailers,
        campaigns,
        ledger,
        models,
        aggregates,
        audit,
        deletion,
        ops,
    ):
        app.include_router(module.router)  # each router carries the /api/v1 prefix
    app.include_router(ops.root_router)
    return app
