"""Right to deletion: a retailer files a request, it is audited, and admins see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.services.deletion import ACTION, DeletionRequests
from tests.coordinator.test_api_support import API, World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(Path(tmp_path_factory.mktemp("api-deletion")))
    yield built
    built.close()


def test_a_retailer_files_a_request_that_is_audited_and_listed(world: World) -> None:
    before = world.coord.audit.count()
    reply = world.client.post(
        f"{API}/deletion-requests",
        json={"note": "closing the shop, please delete everything"},
        headers=world.headers("retailer"),
    )
    assert reply.status_code == 201, reply.text
    filed = reply.json()
    assert filed["retailer_id"] == world.retailer_a
    assert filed["retailer_name"] == "Shop A"
    assert f"#{filed['id']}" in filed["message"]
    assert world.coord.audit.count() == before + 1
    event = world.coord.audit.events(after_seq=filed["id"] - 1, limit=1)[0]
    assert event.seq == filed["id"] and event.action == ACTION
    assert event.subject == f"retailer:{world.retailer_a}"
    assert event.details["note"] == "closing the shop, please delete everything"
    assert world.coord.audit.verify().ok

    other = world.client.post(
        f"{API}/deletion-requests", json={}, headers=world.headers("other_retailer")
    )
    assert other.status_code == 201
    listed = world.client.get(f"{API}/deletion-requests", headers=world.headers("admin"))
    assert listed.status_code == 200
    by_id = {item["id"]: item for item in listed.json()}
    assert by_id[filed["id"]]["retailer_id"] == world.retailer_a
    assert by_id[other.json()["id"]]["retailer_id"] == world.retailer_b
    assert by_id[other.json()["id"]]["note"] == ""
    page = world.client.get(
        f"{API}/deletion-requests?after={filed['id']}", headers=world.headers("admin")
    )
    assert [item["id"] for item in page.json()] == [other.json()["id"]]


def test_the_retailer_comes_from_the_credential_not_the_body(world: World) -> None:
    reply = world.client.post(
        f"{API}/deletion-requests",
        json={"note": "x", "retailer_id": world.retailer_a},
        headers=world.headers("other_retailer"),
    )
    assert reply.status_code == 201
    assert reply.json()["retailer_id"] == world.retailer_b


def test_a_note_too_long_is_refused_readably(world: World) -> None:
    reply = world.client.post(
        f"{API}/deletion-requests", json={"note": "x" * 501}, headers=world.headers("retailer")
    )
    assert reply.status_code == 422
    assert "500" in reply.text


def test_the_service_refuses_unknown_retailers_and_nul_notes(world: World) -> None:
    service = DeletionRequests(world.coord.db, world.coord.audit)
    with pytest.raises(LookupError):
        service.file(10_000, "someone")
    with pytest.raises(ValueError, match="NUL"):
        service.file(world.retailer_a, "someone", "a\x00b")
    with pytest.raises(ValueError, match="limit"):
        service.list(limit=0)
