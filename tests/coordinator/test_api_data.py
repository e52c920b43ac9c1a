"""Campaigns, the ledger mirror, models, aggregates and the audit log over HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from coordinator.services.aggregates import AggregateStore
from tests.coordinator.test_api_support import (
    API,
    World,
    build_world,
    model_card,
    record_round,
)
from tests.coordinator.test_storage_support import drop_audit_guards, raw


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path)
    yield built
    built.close()


@pytest.fixture(scope="module")
def checked_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Shared by tests whose requests are all refused (nothing is stored)."""
    built = build_world(Path(tmp_path_factory.mktemp("api-data-refusals")))
    yield built
    built.close()


# -- ledger ------------------------------------------------------------------------------------


def _report(world: World, who: str, **body: object) -> tuple[int, dict[str, object]]:
    payload: dict[str, object] = {"campaign_id": world.campaign_id, "round": 1}
    payload |= {"epsilon_spent": 1.0, "epsilon_cap": 10.0} | body
    response = world.client.post(f"{API}/ledger", json=payload, headers=world.headers(who))
    return response.status_code, response.json()


def test_ledger_report_is_stored_for_the_calling_retailer_only(world: World) -> None:
    status, body = _report(world, "retailer", retailer_id=world.retailer_b)
    assert status == 201
    assert body["retailer_id"] == world.retailer_a  # the body cannot choose the retailer
    assert body["remaining"] == pytest.approx(9.0)
    assert world.coord.ledger.for_retailer(world.retailer_b) == []


def test_ledger_monotonicity_violation_is_409(world: World) -> None:
    assert _report(world, "retailer", round=1, epsilon_spent=2.0)[0] == 201
    assert _report(world, "retailer", round=1, epsilon_spent=2.0)[0] == 201  # retry: same
    status, body = _report(world, "retailer", round=2, epsilon_spent=1.5)
    assert status == 409
    assert "only grow" in str(body["detail"])
    assert [e.epsilon_spent for e in world.coord.ledger.for_retailer(world.retailer_a)] == [2.0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"epsilon_cap": 11.0}, "epsilon_cap"),
        ({"epsilon_spent": -1}, "epsilon_spent"),
        ({"epsilon_spent": True}, "epsilon_spent"),
        ({"round": -1}, "round"),
        ({"round": 1.5}, "round"),
        ({"campaign_id": "one"}, "campaign_id"),
    ],
)
def test_ledger_bad_values_are_422(
    checked_world: World, body: dict[str, object], fragment: str
) -> None:
    status, reply = _report(checked_world, "retailer", **body)
    assert status == 422
    assert fragment in str(reply["detail"])


def test_ledger_nan_is_422_not_stored(world: World) -> None:
    response = world.client.post(
        f"{API}/ledger",
        content=b'{"campaign_id": null, "round": 1, "epsilon_spent": NaN, "epsilon_cap": 10}',
        headers=world.headers("retailer") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert world.coord.ledger.for_retailer(world.retailer_a) == []


def test_ledger_unknown_campaign_is_404(world: World) -> None:
    status, body = _report(world, "retailer", campaign_id=9999)
    assert status == 404
    assert body["detail"] == "there is no campaign #9999"


def test_ledger_views(world: World) -> None:
    _report(world, "retailer", round=1, epsilon_spent=1.0)
    _report(world, "retailer", round=2, epsilon_spent=2.0)
    _report(world, "other_retailer", round=1, epsilon_spent=0.5, epsilon_cap=5.0)
    own = world.client.get(f"{API}/ledger", headers=world.headers("retailer")).json()
    assert own["view"] == "own" and "latest" not in own
    assert [(e["retailer_id"], e["epsilon_spent"]) for e in own["entries"]] == [
        (world.retailer_a, 1.0),
        (world.retailer_a, 2.0),
    ]
    for who in ("admin", "viewer"):
        latest = world.client.get(f"{API}/ledger", headers=world.headers(who)).json()
        assert latest["view"] == "latest"
        assert latest["latest"] == [
            {"retailer_id": world.retailer_a, "epsilon_spent": 2.0, "epsilon_cap": 10.0,
             "remaining": 8.0},
            {"retailer_id": world.retailer_b, "epsilon_spent": 0.5, "epsilon_cap": 5.0,
             "remaining": 4.5},
        ]  # fmt: skip
    history = world.client.get(
        f"{API}/retailers/{world.retailer_b}/ledger", headers=world.headers("viewer")
    ).json()
    assert [e["epsilon_spent"] for e in history] == [0.5]
    assert (
        world.client.get(
            f"{API}/retailers/{world.retailer_b}/ledger", headers=world.headers("retailer")
        ).status_code
        == 403
    )
    unknown = world.client.get(f"{API}/retailers/999/ledger", headers=world.headers("admin"))
    assert unknown.status_code == 404


# -- models ------------------------------------------------------------------------------------


def test_model_download_checksum_matches_body_and_is_audited(world: World) -> None:
    version = world.model_version
    response = world.client.get(
        f"{API}/models/{version}/download", headers=world.headers("retailer")
    )
    assert response.status_code == 200
    assert response.headers["X-Checksum-SHA256"] == hashlib.sha256(response.content).hexdigest()
    published = world.coord.models.get(version)
    assert published is not None
    assert response.headers["X-Checksum-SHA256"] == published.sha256
    assert response.headers["Content-Disposition"] == f'attachment; filename="{version}.npz"'
    assert response.headers["Content-Type"] == "application/octet-stream"
    downloads = [e for e in world.coord.audit.events(limit=1000) if e.action == "model.download"]
    assert [(e.actor, e.subject) for e in downloads] == [("Shop A", f"model:{version}")]
    assert downloads[0].details["retailer_id"] == world.retailer_a


def test_model_list_and_card(world: World) -> None:
    listed = world.client.get(f"{API}/models", headers=world.headers("viewer")).json()
    assert [m["version"] for m in listed] == [world.model_version]
    one = world.client.get(
        f"{API}/models/{world.model_version}", headers=world.headers("viewer")
    ).json()
    assert one["card"] == model_card()
    assert len(one["sha256"]) == 64
    assert "path" not in one  # the server-side path is not the client's business


def test_unknown_model_is_404(world: World) -> None:
    for suffix in ("", "/download"):
        response = world.client.get(
            f"{API}/models/m-9-deadbeef{suffix}", headers=world.headers("admin")
        )
        assert response.status_code == 404
        assert "m-9-deadbeef" in response.json()["detail"]


def test_tampered_model_is_not_served(world: World) -> None:
    record = world.coord.models.get(world.model_version)
    assert record is not None
    record.path.write_bytes(record.path.read_bytes() + b"tampered")
    response = world.client.get(
        f"{API}/models/{world.model_version}/download", headers=world.headers("admin")
    )
    assert response.status_code == 500
    assert "integrity check" in response.json()["detail"]
    assert b"tampered" not in response.content
    assert not [e for e in world.coord.audit.events(limit=1000) if e.action == "model.download"]


def test_newest_model_is_listed_first(world: World) -> None:
    newer = world.coord.models.publish(
        world.campaign_id, [np.ones(3, dtype=np.float64)], model_card()
    )
    listed = world.client.get(f"{API}/models", headers=world.headers("admin")).json()
    assert [m["version"] for m in listed] == [newer.version, world.model_version]


# -- aggregates --------------------------------------------------------------------------------


def test_aggregates_only_published_and_unexpired(world: World) -> None:
    world.coord.aggregates.publish("bundles", None, 8, {"pairs": [[1, 2]]})
    past = datetime.now(UTC) - timedelta(days=30)
    old_store = AggregateStore(world.coord.db, timedelta(days=1), clock=lambda: past)
    old_store.publish("market", None, 6, {"stale": True})
    with pytest.raises(ValueError, match="at least 5"):
        world.coord.aggregates.publish("market", None, 4, {"too": "few"})
    everything = world.client.get(f"{API}/aggregates", headers=world.headers("retailer")).json()
    assert sorted((a["kind"], a["contributors"]) for a in everything) == [
        ("bundles", 8),
        ("market", 5),
    ]
    assert all(a["contributors"] >= 5 for a in everything)
    market = world.client.get(
        f"{API}/aggregates?kind=market", headers=world.headers("viewer")
    ).json()
    assert [a["payload"] for a in market] == [{"price_index": 1.02}]
    nothing = world.client.get(f"{API}/aggregates?kind=none", headers=world.headers("admin"))
    assert nothing.json() == []


# -- audit -------------------------------------------------------------------------------------


def test_audit_pages_and_verifies(world: World) -> None:
    headers = world.headers("admin")
    first = world.client.get(f"{API}/audit?limit=2", headers=headers).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    second = world.client.get(
        f"{API}/audit?after={first['next_after']}&limit=2", headers=headers
    ).json()
    assert [e["seq"] for e in second["events"]] == [3, 4]
    report = world.client.get(f"{API}/audit/verify", headers=headers).json()
    assert report["ok"] is True and report["problems"] == []
    assert report["events"] == world.coord.audit.count()
    bad_limit = world.client.get(f"{API}/audit?limit=0", headers=headers)
    assert bad_limit.status_code == 422
    assert "query parameter limit" in bad_limit.json()["detail"]


def test_audit_verify_reports_tampering(world: World) -> None:
    drop_audit_guards(world.coord.db)
    raw(world.coord.db, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    report = world.client.get(f"{API}/audit/verify", headers=world.headers("admin")).json()
    assert report["ok"] is False
    assert any("event 2" in problem for problem in report["problems"])


# -- campaigns ---------------------------------------------------------------------------------


def test_start_list_get_and_cancel_a_campaign(world: World) -> None:
    headers = world.headers("admin")
    created = world.client.post(
        f"{API}/campaigns",
        json={"rounds": 4, "epsilon": 2, "tasks": ["demand_pricing", "bundles"]},
        headers=headers,
    )
    assert created.status_code == 201
    campaign = created.json()
    assert (campaign["status"], campaign["rounds"], campaign["epsilon"]) == ("running", 4, 2.0)
    assert campaign["created_by"] == "alice-admin"
    listed = world.client.get(f"{API}/campaigns", headers=world.headers("retailer")).json()
    assert [c["id"] for c in listed] == [campaign["id"], world.campaign_id]
    cancelled = world.client.post(f"{API}/campaigns/{campaign['id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    again = world.client.post(f"{API}/campaigns/{campaign['id']}/cancel", headers=headers)
    assert again.status_code == 409
    assert "has ended" in again.json()["detail"]
    missing = world.client.get(f"{API}/campaigns/999", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "there is no campaign #999"
    assert world.client.post(f"{API}/campaigns/999/cancel", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"rounds": 0, "epsilon": 1.0, "tasks": ["forecasting"]}, 400, "rounds"),
        ({"rounds": 2, "epsilon": 50.0, "tasks": ["forecasting"]}, 400, "epsilon"),
        ({"rounds": 2, "epsilon": 1.0, "tasks": ["mind_reading"]}, 400, "mind_reading"),
        ({"rounds": 2, "epsilon": 1.0, "tasks": []}, 400, "at least one task"),
        ({"rounds": "two", "epsilon": 1.0, "tasks": ["forecasting"]}, 422, "rounds"),
        ({"rounds": 2, "epsilon": "1", "tasks": ["forecasting"]}, 422, "epsilon"),
        ({"rounds": 2, "epsilon": 1.0, "tasks": "forecasting"}, 422, "tasks"),
        ({"rounds": 2, "epsilon": 1.0}, 422, "tasks: Field required"),
    ],
)
def test_campaign_settings_are_checked(
    checked_world: World, body: dict[str, object], status: int, fragment: str
) -> None:
    headers = checked_world.headers("admin")
    response = checked_world.client.post(f"{API}/campaigns", json=body, headers=headers)
    assert response.status_code == status
    assert fragment in response.json()["detail"]


def test_campaigns_need_a_superlink(world: World, tmp_path: Path) -> None:
    assert world.runner is not None
    world.runner.unavailable = "no SuperLink is reachable; start it and try again"
    body = {"rounds": 2, "epsilon": 1.0, "tasks": ["forecasting"]}
    refused = world.client.post(f"{API}/campaigns", json=body, headers=world.headers("admin"))
    assert refused.status_code == 503
    assert refused.json()["detail"] == "no SuperLink is reachable; start it and try again"
    without = build_world(tmp_path / "no-runner", with_runner=False, populate=False)
    try:
        response = without.client.post(
            f"{API}/campaigns", json=body, headers=without.headers("admin")
        )
        assert response.status_code == 503
        assert "without a SuperLink" in response.json()["detail"]
        assert without.coord.campaigns.list() == []
    finally:
        without.close()


def test_rounds_are_paged_by_seq(world: World) -> None:
    second = record_round(world.coord, world.campaign_id, 2)
    headers = world.headers("viewer")
    rows = world.client.get(f"{API}/campaigns/{world.campaign_id}/rounds", headers=headers).json()
    assert [r["round"] for r in rows] == [1, 2]
    after = world.client.get(
        f"{API}/campaigns/{world.campaign_id}/rounds?after={rows[0]['seq']}", headers=headers
    ).json()
    assert [r["seq"] for r in after] == [second]
    assert after[0]["metrics"] == {"loss": 0.5}
    unknown = world.client.get(f"{API}/campaigns/999/rounds", headers=headers)
    assert unknown.status_code == 404
