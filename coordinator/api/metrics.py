"""Prometheus metrics for the API, in a registry of the app's own.

Each app gets its own ``CollectorRegistry`` (not the process-global one) so that several apps
in one process, as in tests, never collide or count each other's requests. Requests are
labelled by route *template* (``/api/v1/campaigns/{campaign_id}``), never the raw path, so ids
cannot blow up the number of series. The campaign and retailer gauges are read from the
database when scraped, so they are right even when another process (the ServerApp) changed
the rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.db import schema as t
from coordinator.runtime import Coordinator

log = logging.getLogger("coordinator.api")

UNMATCHED_ROUTE = "<unmatched>"
ENROLLMENT_OUTCOMES = ("enrolled", "refused", "rate_limited")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """Campaigns by status and retailers by status, counted in the database at scrape time."""

    def __init__(self, coord: Coordinator) -> None:
        self._coord = coord

    def describe(self) -> Iterable[Metric]:
        # Declared without values so registering does not query the database.
        return [
            GaugeMetricFamily("coordinator_campaigns", "Campaigns by status", labels=["status"]),
            GaugeMetricFamily("coordinator_retailers", "Retailers by status", labels=["status"]),
        ]

    def collect(self) -> Iterator[Metric]:
        try:
            with self._coord.db.session(readonly=True) as session:
                campaigns = {
                    str(status): int(count)
                    for status, count in session.execute(
                        select(t.Campaign.status, func.count()).group_by(t.Campaign.status)
                    )
                }
                retailers = {
                    str(status): int(count)
                    for status, count in session.execute(
                        select(t.Retailer.status, func.count()).group_by(t.Retailer.status)
                    )
                }
        except Exception:  # a scrape must not fail because the database is down
            log.warning("metrics: cannot count campaigns and retailers", exc_info=True)
            return
        campaign_family = GaugeMetricFamily(
            "coordinator_campaigns", "Campaigns by status", labels=["status"]
        )
        for status in t.CAMPAIGN_STATUSES:
            campaign_family.add_metric([status], float(campaigns.get(status, 0)))
        yield campaign_family
        retailer_family = GaugeMetricFamily(
            "coordinator_retailers", "Retailers by status", labels=["status"]
        )
        for status in t.RETAILER_STATUSES:
            retailer_family.add_metric([status], float(retailers.get(status, 0)))
        yield retailer_family


class ApiMetrics:
    """The app's metrics: request counts and latency, enrollment outcomes, state gauges."""

    def __init__(self, coord: Coordinator) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "coordinator_http_requests",
            "HTTP requests answered, by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "coordinator_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route template and status code",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.enrollments = Counter(
            "coordinator_enrollment_attempts",
            "Enrollment attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ENROLLMENT_OUTCOMES:  # present (as 0) before the first attempt
            self.enrollments.labels(outcome=outcome)
        self.registry.register(_StateCollector(coord))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        labels = {"method": method, "route": route, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template and final status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if nothing is ever sent, the client saw a failure

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.observe(
                str(scope.get("method", "?")), template, status, time.perf_counter() - started
            )
