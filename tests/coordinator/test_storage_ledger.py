"""Ledger mirror: idempotent reports, monotonic spending, latest and over-budget views."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from coordinator.audit import AuditLog
from coordinator.db import Database, NotFoundError
from coordinator.db import schema as t
from coordinator.services.campaigns import CampaignStore
from coordinator.services.ledger import LedgerError, LedgerMirror
from tests.coordinator.test_storage_support import BACKENDS, START, FakeClock, open_test_db


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


def retailers(db: Database, count: int) -> list[int]:
    with db.session() as session:
        return [
            int(
                session.execute(
                    insert(t.Retailer)
                    .values(
                        name=f"r{i}",
                        node_public_key=f"k{i}",
                        status="active",
                        created_at=START,
                    )
                    .returning(t.Retailer.id)
                ).scalar_one()
            )
            for i in range(count)
        ]


@pytest.fixture
def campaign(db: Database) -> int:
    return (
        CampaignStore(db, AuditLog(db))
        .create(rounds=5, epsilon=1.0, tasks=["forecasting"], created_by="ops")
        .id
    )


def test_reports_are_idempotent_per_round(db: Database, campaign: int) -> None:
    (retailer,) = retailers(db, 1)
    mirror = LedgerMirror(db, clock=FakeClock())
    first = mirror.report(
        retailer, campaign_id=campaign, round=1, epsilon_spent=0.2, epsilon_cap=10
    )
    again = mirror.report(
        retailer, campaign_id=campaign, round=1, epsilon_spent=0.2, epsilon_cap=10
    )
    assert again == first
    mirror.report(retailer, campaign_id=campaign, round=2, epsilon_spent=0.4, epsilon_cap=10)
    # A retried older report changes nothing, even after later ones.
    assert (
        mirror.report(retailer, campaign_id=campaign, round=1, epsilon_spent=0.2, epsilon_cap=10)
        == first
    )
    # Spending outside campaigns (campaign_id None) is idempotent too.
    solo = mirror.report(retailer, campaign_id=None, round=0, epsilon_spent=0.5, epsilon_cap=10)
    assert (
        mirror.report(retailer, campaign_id=None, round=0, epsilon_spent=0.5, epsilon_cap=10)
        == solo
    )
    assert [e.round for e in mirror.for_retailer(retailer)] == [1, 2, 0]
    assert mirror.latest() == {retailer: (0.5, 10.0)}


def test_ledgers_only_grow(db: Database, campaign: int) -> None:
    (retailer,) = retailers(db, 1)
    mirror = LedgerMirror(db)
    mirror.report(retailer, campaign_id=campaign, round=1, epsilon_spent=0.5, epsilon_cap=10)
    with pytest.raises(LedgerError, match="only grow"):
        mirror.report(retailer, campaign_id=campaign, round=2, epsilon_spent=0.4, epsilon_cap=10)
    # The newest report may be corrected upwards; an older one may not change at all.
    corrected = mirror.report(
        retailer, campaign_id=campaign, round=1, epsilon_spent=0.6, epsilon_cap=8
    )
    assert (corrected.epsilon_spent, corrected.epsilon_cap) == (0.6, 8.0)
    mirror.report(retailer, campaign_id=campaign, round=2, epsilon_spent=0.7, epsilon_cap=8)
    with pytest.raises(LedgerError, match="later reports exist"):
        mirror.report(retailer, campaign_id=campaign, round=1, epsilon_spent=0.9, epsilon_cap=8)
    assert [e.epsilon_spent for e in mirror.for_retailer(retailer)] == [0.6, 0.7]


def test_reports_are_validated(db: Database, campaign: int) -> None:
    (retailer,) = retailers(db, 1)
    mirror = LedgerMirror(db)
    bad: list[tuple[dict[str, float], str]] = [
        ({"epsilon_spent": -0.1}, "epsilon_spent must be >= 0"),
        ({"epsilon_spent": float("nan")}, "finite"),
        ({"epsilon_cap": 0}, "epsilon_cap"),
        ({"epsilon_cap": 10.5}, "lifetime limit"),
        ({"round": -1}, "round"),
    ]
    for values, message in bad:
        report: dict[str, float] = {"round": 1, "epsilon_spent": 0.1, "epsilon_cap": 5}
        report.update(values)
        with pytest.raises(LedgerError, match=message):
            mirror.report(retailer, campaign_id=campaign, **report)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="retailer"):
        mirror.report(999, campaign_id=campaign, round=1, epsilon_spent=0.1, epsilon_cap=5)
    with pytest.raises(NotFoundError, match="campaign"):
        mirror.report(retailer, campaign_id=999, round=1, epsilon_spent=0.1, epsilon_cap=5)
    assert mirror.for_retailer(retailer) == []


def test_latest_and_over_budget(db: Database, campaign: int) -> None:
    a, b, c, _never_reports = retailers(db, 4)
    mirror = LedgerMirror(db)
    mirror.report(a, campaign_id=campaign, round=1, epsilon_spent=1.0, epsilon_cap=10)
    mirror.report(a, campaign_id=campaign, round=2, epsilon_spent=9.5, epsilon_cap=10)
    mirror.report(b, campaign_id=campaign, round=1, epsilon_spent=2.0, epsilon_cap=3)
    mirror.report(c, campaign_id=campaign, round=1, epsilon_spent=9.9, epsilon_cap=10)
    assert mirror.latest() == {a: (9.5, 10.0), b: (2.0, 3.0), c: (9.9, 10.0)}
    assert mirror.over_budget(0.5) == {c}  # a has exactly 0.5 left; d never reported
    assert mirror.over_budget(0.1) == set()  # c: 10 - 9.9 is 0.0999... in floating point
    assert mirror.over_budget(1.0) == {a, c}
    assert mirror.over_budget(1.5) == {a, b, c}
    with pytest.raises(ValueError):
        mirror.over_budget(float("nan"))
