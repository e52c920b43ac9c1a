"""The campaign progress WebSocket: authentication, live rounds, the end of a campaign."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.coordinator.test_api_support import API, World, build_world, receive_json, record_round


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path)
    yield built
    built.close()


def _url(world: World, query: str = "") -> str:
    return f"{API}/campaigns/{world.campaign_id}/progress{query}"


def test_streams_rounds_recorded_after_connecting_then_the_end(world: World) -> None:
    with world.client.websocket_connect(_url(world), headers=world.headers("viewer")) as ws:
        hello = receive_json(ws)
        assert hello["type"] == "campaign"
        assert hello["campaign"]["id"] == world.campaign_id
        first = receive_json(ws)  # recorded before connecting (after=0)
        assert (first["type"], first["round"]) == ("round", 1)
        seq = record_round(world.coord, world.campaign_id, 2)
        live = receive_json(ws)
        assert (live["type"], live["round"], live["seq"]) == ("round", 2, seq)
        assert live["metrics"] == {"loss": 0.5}
        world.coord.campaigns.finish(world.campaign_id)
        end = receive_json(ws)
        assert end["type"] == "end"
        assert end["campaign"]["status"] == "finished"
        with pytest.raises(WebSocketDisconnect) as closed:
            receive_json(ws)
        assert closed.value.code == 1000


def test_after_skips_rows_already_seen_and_query_token_works(world: World) -> None:
    first = world.coord.campaigns.rounds(world.campaign_id)[0].seq
    second = record_round(world.coord, world.campaign_id, 2)
    query = f"?after={first}&access_token={world.tokens['retailer']}"
    with world.client.websocket_connect(_url(world, query)) as ws:
        assert receive_json(ws)["type"] == "campaign"
        assert receive_json(ws)["seq"] == second


def test_an_ended_campaign_sends_its_rounds_and_the_end_at_once(world: World) -> None:
    world.coord.campaigns.cancel(world.campaign_id, "alice-admin")
    with world.client.websocket_connect(_url(world), headers=world.headers("admin")) as ws:
        kinds = [receive_json(ws)["type"] for _ in range(3)]
        assert kinds == ["campaign", "round", "end"]


@pytest.mark.parametrize("who", ["anonymous", "garbage"])
def test_authentication_failure_closes_with_1008(world: World, who: str) -> None:
    with (
        world.client.websocket_connect(_url(world), headers=world.headers(who)) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        receive_json(ws)
    assert closed.value.code == 1008
    assert "authentication failed" in closed.value.reason


def test_revoked_retailer_token_closes_with_1008(world: World) -> None:
    world.coord.enrollment.revoke_retailer(world.retailer_a, actor="test")
    query = f"?access_token={world.tokens['retailer']}"
    with (
        world.client.websocket_connect(_url(world, query)) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        receive_json(ws)
    assert closed.value.code == 1008


def test_unknown_campaign_closes_with_4404(world: World) -> None:
    with (
        world.client.websocket_connect(
            f"{API}/campaigns/999/progress", headers=world.headers("admin")
        ) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        receive_json(ws)
    assert closed.value.code == 4404
    assert "#999" in closed.value.reason
