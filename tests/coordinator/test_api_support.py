"""Helpers for the coordinator API tests (no tests here).

``build_world`` opens a real coordinator (SQLite in a temporary directory, a real PKI, no
SuperLink), serves ``create_app`` through FastAPI's ``TestClient`` and fills it through the
API itself: an admin and a viewer credential, two enrolled retailers (A and B) plus one to be
revoked, a running campaign with one recorded round, a published model and an aggregate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from coordinator.api import create_app
from coordinator.auth import Role
from coordinator.campaign_runner import CampaignRunner, CampaignUnavailable
from coordinator.config import CoordinatorConfig
from coordinator.pki import write_pki
from coordinator.runtime import Coordinator
from coordinator.services.campaigns import CampaignRecord
from tests.coordinator.test_storage_support import ecdsa_key

API = "/api/v1"
PRINCIPALS = ("anonymous", "garbage", "admin", "viewer", "retailer", "other_retailer")
WS_TIMEOUT_SECONDS = 20.0  # a hang guard only: a broken stream fails instead of blocking


class FakeRunner(CampaignRunner):
    """A runner without a SuperLink: campaigns go straight to running (tests only)."""

    def __init__(self, coord: Coordinator) -> None:
        super().__init__(coord)
        self.unavailable: str | None = None
        self.next_run_id = 1000

    def start(
        self, *, rounds: int, epsilon: float, tasks: Sequence[str], actor: str
    ) -> CampaignRecord:
        if self.unavailable is not None:
            raise CampaignUnavailable(self.unavailable)
        record = self.coord.campaigns.create(
            rounds=rounds, epsilon=epsilon, tasks=tasks, created_by=actor
        )
        self.next_run_id += 1
        return self.coord.campaigns.mark_running(record.id, self.next_run_id)


def model_card() -> dict[str, Any]:
    """A valid model card (the registry refuses models without one)."""
    return {
        "data_summary": {"retailers": 5, "rows": 1000},
        "metrics": {
            "overall": {"mape": 0.21},
            "by_size_group": {"small": None, "medium": {"mape": 0.2}, "large": None},
        },
        "epsilon_spent": 1.0,
        "intended_use": "API tests",
        "limitations": ["synthetic"],
    }


@dataclass
class World:
    """A coordinator with data, its app and a client, and who is who."""

    coord: Coordinator
    app: FastAPI
    client: TestClient
    runner: FakeRunner | None
    tokens: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    retailer_a: int = 0
    retailer_b: int = 0
    victim: int = 0
    campaign_id: int = 0
    model_version: str = ""

    def headers(self, who: str) -> dict[str, str]:
        """Request headers acting as ``who`` (one of ``PRINCIPALS``)."""
        if who == "anonymous":
            return {}
        if who == "garbage":
            return {"Authorization": "Bearer rip_a_not-a-real-token"}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.coord.close()


def open_coordinator(data_dir: Path) -> Coordinator:
    """A real coordinator in ``data_dir`` with its PKI written, and no SuperLink."""
    config = CoordinatorConfig(data_dir=data_dir)
    write_pki(config.pki_dir)
    return Coordinator.open(config)


def enroll(world: World, name: str, public_key: str | None = None) -> dict[str, Any]:
    """Create a token for ``name`` as the admin and enroll it; returns the enrollment JSON."""
    created = world.client.post(
        f"{API}/tokens", json={"retailer": name}, headers=world.headers("admin")
    )
    assert created.status_code == 201, created.text
    reply = world.client.post(
        f"{API}/enroll",
        json={"token": created.json()["token"], "public_key": public_key or ecdsa_key()},
    )
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def build_world(data_dir: Path, *, with_runner: bool = True, populate: bool = True) -> World:
    """See the module docstring; ``populate=False`` stops after the admin and viewer."""
    coord = open_coordinator(data_dir)
    runner = FakeRunner(coord) if with_runner else None
    app = create_app(coord, runner)
    app.state.progress_interval = 0.02  # tests need not wait half a second per poll
    client = TestClient(app)
    client.__enter__()  # one event loop thread for all requests (much faster than one each)
    world = World(coord=coord, app=app, client=client, runner=runner)
    for role, name in ((Role.ADMIN, "alice-admin"), (Role.VIEWER, "victor-viewer")):
        issued = coord.credentials.issue(role, name=name)
        world.tokens[str(role)] = issued.access_token
        world.refresh_tokens[str(role)] = issued.refresh_token
        world.names[str(role)] = name
    if not populate:
        return world
    for who, name in (("retailer", "Shop A"), ("other_retailer", "Shop B"), ("victim", "Shop V")):
        result = enroll(world, name)
        world.tokens[who] = result["access_token"]
        world.refresh_tokens[who] = result["refresh_token"]
        world.names[who] = name
        setattr(
            world,
            {"retailer": "retailer_a", "other_retailer": "retailer_b"}.get(who, who),
            result["retailer_id"],
        )
    campaign = coord.campaigns.create(
        rounds=3, epsilon=1.0, tasks=["demand_pricing"], created_by="alice-admin"
    )
    coord.campaigns.mark_running(campaign.id, 42)
    world.campaign_id = campaign.id
    record_round(coord, campaign.id, 1)
    model = coord.models.publish(campaign.id, [np.arange(6, dtype=np.float64)], model_card())
    world.model_version = model.version
    coord.aggregates.publish("market", campaign.id, 5, {"price_index": 1.02})
    return world


def record_round(coord: Coordinator, campaign_id: int, round_number: int) -> int:
    """Record one aggregated training round as the ServerApp would; returns its seq."""
    row = coord.campaigns.record_round(
        campaign_id,
        round=round_number,
        stage="train",
        attempt=1,
        status="aggregated",
        participants=5,
        dropouts=0,
        metrics={"loss": 1.0 / round_number},
    )
    return row.seq


def unique_name(prefix: str = "Shop") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def receive_json(session: WebSocketTestSession, timeout: float = WS_TIMEOUT_SECONDS) -> Any:
    """``session.receive_json()`` that fails after ``timeout`` instead of blocking forever."""
    return _with_timeout(session.receive_json, timeout)


def _with_timeout(call: Callable[[], Any], timeout: float) -> Any:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)


def has_traceback(text: str) -> bool:
    """Whether a response body shows signs of a Python traceback or internals."""
    return any(
        marker in text
        for marker in ("Traceback", 'File "', "sqlalchemy", "site-packages", "Error(")
    )
