"""The coordinator's glue without a SuperLink: run configs, the ServerApp's database sink,
enrollment with registration pending, and recovery of campaigns whose run is gone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.campaign_runner import CampaignRunner, CampaignUnavailable, run_config_for
from coordinator.config import CoordinatorConfig
from coordinator.enroll_flow import enroll_node, reconcile_registrations
from coordinator.pki import generate_node_keypair, write_pki
from coordinator.progress import DatabaseProgressSink, sink_for_environment
from coordinator.runtime import Coordinator
from coordinator.status import status
from shared.federation.settings import RunSettings
from shared.federation.strategy import RoundRecord


@pytest.fixture
def coord(tmp_path: Path) -> Coordinator:
    config = CoordinatorConfig(data_dir=tmp_path)
    write_pki(config.pki_dir)
    opened = Coordinator.open(config)
    yield opened
    opened.close()


@settings(max_examples=100, deadline=None)
@given(
    rounds=st.integers(1, 50),
    epsilon=st.floats(0.2, 10.0),
    bundles=st.booleans(),
)
def test_a_campaigns_budget_is_split_and_never_exceeded(
    rounds: int, epsilon: float, bundles: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Feature: retail-intelligence-platform, Property 8: Configurable Privacy Parameters. The run
    config of a campaign with budget ε spends at most ε per retailer (statistics round plus all
    training rounds) and every node accepts it (RunSettings validates what nodes read)."""
    from coordinator.services.campaigns import CampaignRecord

    tasks = ("demand_pricing", "bundles") if bundles else ("demand_pricing",)
    campaign = CampaignRecord(
        id=3, status="pending", rounds=rounds, epsilon=epsilon, tasks=tasks, flower_run_id=None,
        created_by="admin", created_at=None, started_at=None, finished_at=None, error=None,
    )  # type: ignore[arg-type]  # fmt: skip
    try:
        config = run_config_for(campaign)
    except ValueError as exc:  # too thin a budget for so many rounds: refused, with the reason
        assert "fewer rounds" in str(exc)
        assert (epsilon - (max(0.25 * epsilon, 0.05) if bundles else 0)) / rounds < 0.05
        return
    parsed = RunSettings.from_run_config(config)
    spent = parsed.epsilon_per_round * parsed.rounds + parsed.statistics_epsilon
    assert spent <= epsilon + 1e-9
    assert (parsed.statistics_epsilon > 0) == bundles
    assert parsed.rounds == rounds and config["campaign-id"] == 3


def test_the_serverapp_sink_records_rounds_model_and_market(coord: Coordinator) -> None:
    campaign = coord.campaigns.create(
        rounds=1, epsilon=2.0, tasks=["demand_pricing", "bundles"], created_by="admin"
    )
    coord.campaigns.mark_running(campaign.id, 12345)
    sink = DatabaseProgressSink(coord.config)
    try:
        statistics = RoundRecord(round=0, attempt=1, stage="statistics", status="aggregated")
        statistics.participants = 5
        statistics.accepted = ["1", "2", "3", "4", "5", "6"]
        trained = RoundRecord(round=1, attempt=1, status="aggregated", participants=6)
        trained.loss, trained.wape = 0.8, 0.4
        trained.wape_by_size = {"small": 0.5, "medium": 0.4, "large": 0.3}
        sink.record_round(campaign.id, statistics)
        sink.record_round(campaign.id, trained)
        sink.publish_model(campaign.id, [np.zeros((18, 1)), np.ones(3)])
        sink.publish_market(campaign.id, json.dumps({"contributors": 6, "baskets": 10}))
        with pytest.raises(ValueError, match="5"):  # k-rule enforced by the store
            sink.publish_market(campaign.id, json.dumps({"contributors": 4}))
    finally:
        sink.close()
    rounds = coord.campaigns.rounds(campaign.id)
    assert [(r.round, r.stage, r.status) for r in rounds] == [
        (0, "statistics", "aggregated"),
        (1, "train", "aggregated"),
    ]
    assert rounds[0].dropouts == 1
    (model,) = coord.models.list()
    assert model.card["metrics"]["by_size_group"]["small"] == {"holdout_wape": 0.5}
    assert model.card["epsilon_spent"] == 2.0
    assert [a.contributors for a in coord.aggregates.list("market")] == [6]
    assert coord.audit.verify().ok


def test_no_model_is_published_when_no_round_was_aggregated(coord: Coordinator) -> None:
    campaign = coord.campaigns.create(
        rounds=1, epsilon=1.0, tasks=["demand_pricing"], created_by="admin"
    )
    coord.campaigns.mark_running(campaign.id, 7)
    sink = DatabaseProgressSink(coord.config)
    try:
        sink.record_round(campaign.id, RoundRecord(round=1, attempt=1, status="skipped"))
        sink.publish_model(campaign.id, [np.zeros(3)])
    finally:
        sink.close()
    assert coord.models.list() == []


def test_sink_comes_from_the_daemons_environment(tmp_path: Path, coord: Coordinator) -> None:
    from coordinator.config import save

    assert sink_for_environment({}) is None
    save(coord.config)
    sink = sink_for_environment({"RETAIL_COORDINATOR_DATA_DIR": str(coord.config.data_dir)})
    assert isinstance(sink, DatabaseProgressSink)
    sink.close()


def test_enrollment_without_superlink_is_pending_and_reconciles_later(coord: Coordinator) -> None:
    token, _ = coord.enrollment.create_token("corner-shop", _days(7), actor="admin")
    _, public = generate_node_keypair()
    result = enroll_node(coord, token, public, source="127.0.0.1")
    assert result.registration.startswith("pending")
    assert result.flower_node_id is None
    assert result.ca_certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert len(result.ca_fingerprint.split(":")) == 32
    assert reconcile_registrations(coord) == 0  # still no SuperLink
    assert status(coord)["retailers"] == {"active": 1, "registered_with_superlink": 0, "total": 1}


def test_campaigns_need_a_superlink_and_lost_runs_fail_cleanly(coord: Coordinator) -> None:
    runner = CampaignRunner(coord)
    with pytest.raises(CampaignUnavailable, match="serve"):
        runner.start(rounds=2, epsilon=1.0, tasks=["demand_pricing"], actor="admin")
    with pytest.raises(ValueError, match="rounds"):
        runner.start(rounds=0, epsilon=1.0, tasks=["demand_pricing"], actor="admin")
    campaign = coord.campaigns.create(
        rounds=2, epsilon=1.0, tasks=["demand_pricing"], created_by="admin"
    )
    coord.campaigns.mark_running(campaign.id, 99)
    (failed,) = runner.recover()
    assert failed.status == "failed" and "restarted" in (failed.error or "")
    assert coord.audit.verify().ok


def _days(n: int):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(days=n)


class FakeControl:
    """Stands in for the SuperLink's Control API: records what was registered."""

    def __init__(self) -> None:
        self.nodes: dict[int, str] = {}
        self.down = False

    def register_node(self, public_key_line: str, name: str) -> int:
        from coordinator.flower_control import SuperLinkUnavailable

        if self.down:
            raise SuperLinkUnavailable("down")
        node_id = 1000 + len(self.nodes)
        self.nodes[node_id] = public_key_line
        return node_id

    def node_id_for_key(self, public_key_line: str) -> int | None:
        return next((i for i, k in self.nodes.items() if k == public_key_line), None)

    def unregister_node(self, node_id: int) -> None:
        from coordinator.flower_control import SuperLinkUnavailable

        if self.down:
            raise SuperLinkUnavailable("down")
        del self.nodes[node_id]

    def close(self) -> None:
        pass


def test_keys_follow_enrollment_and_revocation_even_through_an_outage(
    coord: Coordinator,
) -> None:
    from coordinator.enroll_flow import revoke_retailer

    control = FakeControl()
    coord.control = control  # type: ignore[assignment]
    first_token, _ = coord.enrollment.create_token("bakery", _days(1), actor="admin")
    second_token, _ = coord.enrollment.create_token("grocer", _days(1), actor="admin")
    first = enroll_node(coord, first_token, generate_node_keypair()[1], source="a")
    assert first.registration == "registered" and first.flower_node_id in control.nodes
    control.down = True
    second = enroll_node(coord, second_token, generate_node_keypair()[1], source="b")
    assert second.registration.startswith("pending") and len(control.nodes) == 1
    revoke_retailer(coord, first.retailer_id, actor="admin")
    assert first.flower_node_id in control.nodes  # the SuperLink was down: still listed
    control.down = False
    assert reconcile_registrations(coord) == 1  # the pending one registered now
    assert set(control.nodes.values()) == {
        coord.enrollment.retailer(second.retailer_id).node_public_key
    }  # type: ignore[union-attr]
    assert coord.enrollment.retailer(first.retailer_id).flower_node_id is None  # type: ignore[union-attr]
    coord.control = None


def test_the_ledger_mirror_names_nodes_over_budget_by_flower_id(coord: Coordinator) -> None:
    """Feature: retail-intelligence-platform, Property 5: Privacy Budget Enforcement (the
    coordinator's side: a node its mirror shows out of budget is not asked to join)."""
    coord.control = FakeControl()  # type: ignore[assignment]
    ids = []
    for name in ("thrifty", "spent"):
        token, _ = coord.enrollment.create_token(name, _days(1), actor="admin")
        ids.append(enroll_node(coord, token, generate_node_keypair()[1], source=name))
    coord.control = None
    coord.ledger.report(ids[0].retailer_id, campaign_id=None, round=1, epsilon_spent=1.0,
                        epsilon_cap=10.0)  # fmt: skip
    coord.ledger.report(ids[1].retailer_id, campaign_id=None, round=1, epsilon_spent=9.5,
                        epsilon_cap=10.0)  # fmt: skip
    sink = DatabaseProgressSink(coord.config)
    try:
        assert sink.over_budget(1.0) == {ids[1].flower_node_id}
        assert sink.over_budget(0.4) == set()
        assert sink.over_budget(9.5) == {ids[0].flower_node_id, ids[1].flower_node_id}
    finally:
        sink.close()
