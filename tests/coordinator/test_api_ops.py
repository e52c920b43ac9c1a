"""Probes, metrics, OpenAPI, and how errors reach clients (readable, never internals)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coordinator.api import create_app
from coordinator.api.errors import ValidationProblem
from coordinator.flower_control import FlowerControl, SuperLinkUnavailable
from tests.coordinator.test_api_support import API, World, build_world, has_traceback


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Shared by the tests here: none stores anything, and changes go through monkeypatch."""
    built = build_world(Path(tmp_path_factory.mktemp("api-ops")))
    yield built
    built.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _requests(samples: dict[Any, float], route: str, status: str, method: str = "GET") -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return samples.get(("coordinator_http_requests_total", labels), 0.0)


class StubControl:
    """Stands in for the SuperLink's Control API client in readiness checks."""

    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable

    def list_nodes(self) -> list[object]:
        if not self.reachable:
            raise SuperLinkUnavailable("cannot reach the SuperLink")
        return []

    def close(self) -> None:
        pass


def test_healthz_needs_no_auth(world: World) -> None:
    response = world.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_503_without_a_superlink(world: World) -> None:
    response = world.client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert (body["database"], body["superlink"]) == ("ok", "down")
    assert "SuperLink" in body["detail"]


def test_readyz_follows_the_superlink(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(world.coord, "control", cast(FlowerControl, StubControl(False)))
    down = world.client.get("/readyz")
    assert down.status_code == 503 and "does not answer" in down.json()["detail"]
    monkeypatch.setattr(world.coord, "control", cast(FlowerControl, StubControl(True)))
    up = world.client.get("/readyz")
    assert (up.status_code, up.json()["status"]) == (200, "ready")


def test_readyz_prefers_the_supervisors_health_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(world.coord.extra, "superlink_healthy", lambda: True)
    assert world.client.get("/readyz").status_code == 200
    monkeypatch.setitem(world.coord.extra, "superlink_healthy", lambda: False)
    assert world.client.get("/readyz").status_code == 503

    def broken() -> bool:
        raise RuntimeError("probe exploded")

    monkeypatch.setitem(world.coord.extra, "superlink_healthy", broken)
    response = world.client.get("/readyz")
    assert response.status_code == 503 and not has_traceback(response.text)


def test_status_summarises_the_coordinator(world: World) -> None:
    body = world.client.get(f"{API}/status", headers=world.headers("viewer")).json()
    assert body["retailers"]["total"] == 3
    assert body["campaigns"] == {"running": 1}
    assert body["latest_model"] == world.model_version
    assert body["superlink"]["reachable"] is False


def test_metrics_parse_and_count_requests_by_route_template(world: World) -> None:
    before = _samples(world.client.get("/metrics").text)
    for _ in range(3):
        world.client.get(f"{API}/me", headers=world.headers("admin"))
    world.client.get(f"{API}/retailers/{world.retailer_a}", headers=world.headers("admin"))
    world.client.get(f"{API}/me")
    world.client.get(f"{API}/no/such/thing/12345")
    after = _samples(world.client.get("/metrics").text)
    me = f"{API}/me"

    def grew(route: str, status: str) -> float:
        return _requests(after, route, status) - _requests(before, route, status)

    assert grew(me, "200") == 3
    assert grew(me, "401") == 1
    assert grew(f"{API}/retailers/{{retailer_id}}", "200") == 1
    assert grew("<unmatched>", "404") == 1
    assert not any("12345" in str(key) for key in after)  # raw paths never become labels
    latency = (
        "coordinator_http_request_duration_seconds_count",
        (("method", "GET"), ("route", me), ("status", "200")),
    )
    assert after[latency] - before.get(latency, 0.0) == 3
    assert after[("coordinator_retailers", (("status", "active"),))] == 3
    assert after[("coordinator_campaigns", (("status", "running"),))] == 1
    assert after[("coordinator_campaigns", (("status", "finished"),))] == 0


def test_metrics_registry_is_per_app(world: World) -> None:
    other = TestClient(create_app(world.coord))
    before = _requests(_samples(world.client.get("/metrics").text), "/healthz", "200")
    world.client.get("/healthz")
    first = _samples(world.client.get("/metrics").text)
    second = _samples(other.get("/metrics").text)
    assert _requests(first, "/healthz", "200") == before + 1
    assert _requests(second, "/healthz", "200") == 0


def test_unexpected_errors_are_a_generic_logged_500(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals: /var/lib/coordinator password=hunter2")

    monkeypatch.setattr(world.coord.audit, "verify", explode)
    with caplog.at_level(logging.ERROR, logger="coordinator.api"):
        response = world.client.get(f"{API}/audit/verify", headers=world.headers("admin"))
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "internal error" in detail and "reference" in detail
    assert "secret" not in response.text and not has_traceback(response.text)
    reference = detail.split("reference ")[1].split(".")[0]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback went to the log
    samples = _samples(world.client.get("/metrics").text)
    assert _requests(samples, f"{API}/audit/verify", "500") == 1


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "request body is missing"),
        (b"[1, 2]", "valid dictionary"),
        (b'{"round": "one"}', "round: Input should be a valid integer"),
    ],
)
def test_bad_bodies_get_a_readable_422(world: World, content: bytes, fragment: str) -> None:
    response = world.client.post(
        f"{API}/ledger",
        content=content,
        headers=world.headers("retailer") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert fragment in body["detail"]
    assert all(set(item) == {"loc", "msg", "type"} for item in body["errors"])
    ValidationProblem.model_validate(body)  # the shape the OpenAPI page documents


def test_undecodable_body_is_400_with_a_readable_detail(world: World) -> None:
    response = world.client.post(
        f"{API}/enroll", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]


def test_validation_errors_never_echo_the_input(world: World) -> None:
    secret = "rip_e_" + "s3cr3t" * 10
    response = world.client.post(f"{API}/enroll", json={"token": secret, "public_key": 7})
    assert response.status_code == 422
    assert "public_key" in response.json()["detail"]
    assert secret not in response.text


def test_unknown_endpoint_and_method_are_json(world: World) -> None:
    missing = world.client.get(f"{API}/nothing-here")
    assert missing.status_code == 404
    assert "/docs" in missing.json()["detail"]
    wrong_method = world.client.delete(f"{API}/enroll")
    assert wrong_method.status_code == 405
    assert "DELETE" in wrong_method.json()["detail"]


def test_openapi_is_served_with_the_bearer_scheme(world: World) -> None:
    assert world.client.get("/docs").status_code == 200
    spec = world.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["AccessToken"]["scheme"] == "bearer"
    assert all(path.startswith((API, "/healthz", "/readyz", "/metrics")) for path in spec["paths"])
