"""Campaigns: validation, lifecycle, round progress streaming, restart recovery, audit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.audit import AuditLog
from coordinator.db import Database, NotFoundError
from coordinator.services.campaigns import CampaignStateError, CampaignStore, validate_campaign
from tests.coordinator.test_storage_support import BACKENDS, FakeClock, open_test_db


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit(db: Database, clock: FakeClock) -> AuditLog:
    return AuditLog(db, clock)


@pytest.fixture
def store(db: Database, audit: AuditLog, clock: FakeClock) -> CampaignStore:
    return CampaignStore(db, audit, clock=clock)


def create(store: CampaignStore, **overrides: object) -> int:
    settings: dict[str, object] = {
        "rounds": 5,
        "epsilon": 2.0,
        "tasks": ["forecasting", "demand_pricing"],
        "created_by": "ops",
    }
    settings.update(overrides)
    return store.create(**settings).id  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rounds": 0}, "between 1 and 1000"),
        ({"rounds": 1001}, "between 1 and 1000"),
        ({"rounds": 2.5}, "whole number"),
        ({"epsilon": 0.04}, "between 0.05 and 10"),
        ({"epsilon": 10.01}, "between 0.05 and 10"),
        ({"epsilon": float("nan")}, "between 0.05 and 10"),
        ({"tasks": []}, "at least one task"),
        ({"tasks": ["forecasting", "mind_reading"]}, "unknown task 'mind_reading'"),
        ({"tasks": "forecasting"}, "list of task names"),
    ],
)
def test_invalid_settings_are_refused_clearly(overrides: dict[str, object], message: str) -> None:
    settings: dict[str, Any] = {"rounds": 5, "epsilon": 2.0, "tasks": ["forecasting"]}
    settings.update(overrides)
    with pytest.raises(ValueError, match=message):
        validate_campaign(**settings)


def test_an_invalid_campaign_is_not_stored(store: CampaignStore) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        create(store, tasks=["forecasting", "mind_reading"])
    with pytest.raises(ValueError, match="created_by"):
        create(store, created_by=" ")
    assert store.list() == []


def test_lifecycle_and_audit(store: CampaignStore, audit: AuditLog, clock: FakeClock) -> None:
    campaign_id = create(store, rounds=1, epsilon=10, tasks=["bundles", "bundles"])
    record = store.get(campaign_id)
    assert record is not None
    assert (record.status, record.tasks, record.epsilon) == ("pending", ("bundles",), 10.0)
    assert record.created_at == clock.now and record.started_at is None
    clock.advance(minutes=1)
    running = store.mark_running(campaign_id, 2**64 - 1)
    assert running.status == "running" and running.flower_run_id == 2**64 - 1
    assert running.started_at == clock.now
    with pytest.raises(CampaignStateError, match="it is running"):
        store.mark_running(campaign_id, 7)
    clock.advance(minutes=5)
    finished = store.finish(campaign_id)
    assert finished.status == "finished" and finished.finished_at == clock.now
    with pytest.raises(CampaignStateError, match="has ended"):
        store.cancel(campaign_id, "ops")
    with pytest.raises(CampaignStateError):
        store.fail(campaign_id, "late")
    assert [e.action for e in audit.events(subject=f"campaign:{campaign_id}")] == [
        "campaign.create",
        "campaign.start",
        "campaign.finish",
    ]
    assert audit.verify().ok


def test_fail_cancel_and_unknown_ids(store: CampaignStore, audit: AuditLog) -> None:
    failed = store.fail(create(store), "SuperLink unreachable")
    assert (failed.status, failed.error) == ("failed", "SuperLink unreachable")
    cancelled = store.cancel(create(store), "alice")
    assert cancelled.status == "cancelled"
    assert audit.events()[-1].actor == "alice"
    with pytest.raises(ValueError, match="error message"):
        store.fail(create(store), "  ")
    with pytest.raises(NotFoundError):
        store.finish(999)
    assert store.get(999) is None
    assert [c.id for c in store.list(limit=2)] == [3, 2]  # newest first


def test_rounds_stream_in_order_and_are_audited(store: CampaignStore, audit: AuditLog) -> None:
    campaign_id = create(store, rounds=2)
    with pytest.raises(CampaignStateError, match="pending"):
        store.record_round(
            campaign_id,
            round=1,
            stage="train",
            attempt=1,
            status="aggregated",
            participants=5,
            dropouts=0,
        )
    store.mark_running(campaign_id, 11)
    other = create(store)
    store.mark_running(other, 12)
    first = store.record_round(
        campaign_id,
        round=0,
        stage="statistics",
        attempt=1,
        status="aggregated",
        participants=6,
        dropouts=1,
        metrics={},
    )
    store.record_round(
        other,
        round=1,
        stage="train",
        attempt=1,
        status="failed",
        participants=5,
        dropouts=2,
    )
    second = store.record_round(
        campaign_id,
        round=1,
        stage="train",
        attempt=2,
        status="aggregated",
        participants=5,
        dropouts=0,
        metrics={"loss": 0.25, "wape": 1.01},
    )
    rows = store.rounds(campaign_id)
    assert [r.seq for r in rows] == [first.seq, second.seq] and first.seq < second.seq
    assert rows[1].metrics == {"loss": 0.25, "wape": 1.01}
    assert store.rounds(campaign_id, after_seq=first.seq) == [second]
    assert store.rounds(campaign_id, after_seq=second.seq) == []
    rounds_audited = [e for e in audit.events() if e.action == "round"]
    assert len(rounds_audited) == 3
    assert rounds_audited[-1].details["metrics"] == {"loss": 0.25, "wape": 1.01}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"round": 3}, "beyond"),
        ({"round": -1}, "round must be"),
        ({"stage": "evaluate"}, "stage must be"),
        ({"stage": "statistics"}, "statistics round"),
        ({"attempt": 0}, "attempt"),
        ({"status": "great"}, "round status"),
        ({"participants": -1}, "participants"),
        ({"metrics": {"loss": float("inf")}}, "JSON"),
    ],
)
def test_bad_round_reports_are_refused(
    tmp_path: Path, values: dict[str, object], message: str
) -> None:
    """Validation does not depend on the backend: SQLite only, to keep the suite quick."""
    with open_test_db("sqlite", tmp_path) as db:
        check_bad_round(CampaignStore(db, AuditLog(db)), values, message)


def check_bad_round(store: CampaignStore, values: dict[str, object], message: str) -> None:
    campaign_id = create(store, rounds=2)
    store.mark_running(campaign_id, 1)
    report: dict[str, object] = {
        "round": 1,
        "stage": "train",
        "attempt": 1,
        "status": "aggregated",
        "participants": 5,
        "dropouts": 0,
        "metrics": {},
    }
    report.update(values)
    with pytest.raises(ValueError, match=message):
        store.record_round(campaign_id, **report)  # type: ignore[arg-type]
    assert store.rounds(campaign_id) == []


def test_interrupted_lists_running_campaigns(store: CampaignStore) -> None:
    running = create(store)
    store.mark_running(running, 1)
    ended = create(store)
    store.mark_running(ended, 2)
    store.finish(ended)
    create(store)  # pending
    assert [c.id for c in store.interrupted()] == [running]
