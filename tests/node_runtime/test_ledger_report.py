"""A node tells a real coordinator API what it spent (the ledger mirror), renews its credential
when the access token is refused, and records a refused report as an event without raising."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.api.app import create_app
from coordinator.runtime import Coordinator
from desktop_client.node_cli import main as node_main
from shared.enrollment import load_enrollment
from shared.node_runtime.events import EventKind, read_events
from shared.node_runtime.ledger_report import (
    ENROLLMENT_CREDENTIALS,
    LedgerReporter,
    ReportRefused,
    SpendReport,
)
from tests.desktop_client.test_enroll_cli import _coordinator, served


@pytest.fixture
def enrolled(tmp_path: Path) -> Iterator[tuple[Coordinator, Path, int]]:
    """A coordinator API on loopback, one node enrolled with it, one campaign to report to."""
    coord = _coordinator(tmp_path)
    try:
        with served(create_app(coord)) as url:
            token, _ = coord.enrollment.create_token("Corner Shop", _hour(), actor="test")
            node = tmp_path / "node"
            code = node_main(
                ["enroll", url, "--token", token, "--data-dir", str(node), "--key-store", "file"]
            )
            assert code == 0
            campaign = coord.campaigns.create(
                rounds=2, epsilon=3.0, tasks=["demand_pricing"], created_by="test"
            )
            yield coord, node, campaign.id
    finally:
        coord.close()


def _hour():  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(hours=1)


def _retailer(node: Path) -> int:
    enrollment = load_enrollment(node)
    assert enrollment is not None
    return enrollment.retailer_id


def test_a_charge_reaches_the_coordinators_mirror(
    enrolled: tuple[Coordinator, Path, int],
) -> None:
    coord, node, campaign = enrolled
    reporter = LedgerReporter(node)
    try:
        assert reporter.submit(SpendReport(campaign, 1, 0.75, 3.0)).result(timeout=30)
        assert reporter.submit(SpendReport(campaign, 2, 1.5, 3.0)).result(timeout=30)
    finally:
        reporter.close()
    mirrored = coord.ledger.for_retailer(_retailer(node))
    assert [(e.campaign_id, e.round, e.epsilon_spent, e.epsilon_cap) for e in mirrored] == [
        (campaign, 1, 0.75, 3.0),
        (campaign, 2, 1.5, 3.0),
    ]
    reported = [e for e in read_events(node).events if e.kind == EventKind.LEDGER_REPORTED]
    assert [e.round for e in reported] == [1, 2]
    assert reported[-1].data["spent"] == 1.5


def test_a_refused_access_token_is_renewed_once_and_saved(
    enrolled: tuple[Coordinator, Path, int],
) -> None:
    coord, node, campaign = enrolled
    path = node / ENROLLMENT_CREDENTIALS
    stored = json.loads(path.read_text())
    stored["access_token"] = "rip_a_" + "x" * 40  # not a token the coordinator issued
    path.write_text(json.dumps(stored))
    LedgerReporter(node).send(SpendReport(campaign, 1, 0.5, 3.0))
    renewed = json.loads(path.read_text())
    assert renewed["access_token"] != stored["access_token"]
    assert renewed["refresh_token"] != stored["refresh_token"]  # the old pair is spent
    assert path.stat().st_mode & 0o777 == 0o600
    assert coord.ledger.for_retailer(_retailer(node))[-1].epsilon_spent == 0.5


def test_a_report_that_would_shrink_the_ledger_is_refused_and_recorded(
    enrolled: tuple[Coordinator, Path, int],
) -> None:
    coord, node, campaign = enrolled
    reporter = LedgerReporter(node)
    reporter.send(SpendReport(campaign, 2, 1.5, 3.0))
    with pytest.raises(ReportRefused, match="409"):
        reporter.send(SpendReport(campaign, 3, 1.0, 3.0))
    assert reporter.submit(SpendReport(campaign, 3, 1.0, 3.0)).result(timeout=30) is False
    reporter.close()
    errors = [e for e in read_events(node).events if e.kind == EventKind.ERROR]
    assert errors and errors[-1].data["step"] == "ledger_report"
    assert "next round" in errors[-1].message
    assert coord.ledger.for_retailer(_retailer(node))[-1].epsilon_spent == 1.5
