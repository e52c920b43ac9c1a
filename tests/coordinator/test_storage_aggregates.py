"""Published aggregates: k >= 5 contributors, retention and pruning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from coordinator.db import Database, NotFoundError
from coordinator.db import schema as t
from coordinator.services.aggregates import AggregateStore
from tests.coordinator.test_storage_support import BACKENDS, START, FakeClock, open_test_db


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


def test_fewer_than_five_contributors_are_refused(db: Database) -> None:
    store = AggregateStore(db)
    with pytest.raises(ValueError, match="from 4 retailers: at least 5"):
        store.publish("trends", None, 4, {"x": 1})
    assert store.publish("trends", None, 5, {"x": 1}).contributors == 5
    with pytest.raises(ValueError, match="cannot be below 5"):
        AggregateStore(db, min_contributors=4)
    strict = AggregateStore(db, min_contributors=8)
    with pytest.raises(ValueError, match="at least 8"):
        strict.publish("trends", None, 7, {})
    # The database refuses it too, whatever code writes.
    with pytest.raises(Exception, match=r"(?i)check|constraint"), db.session() as session:
        session.execute(
            insert(t.Aggregate).values(
                kind="trends",
                contributors=3,
                payload={},
                created_at=START,
                expires_at=START,
            )
        )


def test_only_unexpired_aggregates_are_listed_and_prune_removes_the_rest(db: Database) -> None:
    clock = FakeClock()
    store = AggregateStore(db, retention=timedelta(days=90), clock=clock)
    old = store.publish("associations", None, 6, {"pairs": [["milk", "bread", 0.4]]})
    clock.advance(days=30)
    new = store.publish("trends", None, 9, {"categories": {"dairy": 1.02}})
    assert old.expires_at == old.created_at + timedelta(days=90)
    assert store.list() == [new, old]
    assert store.list(kind="trends") == [new]
    later = clock.now + timedelta(days=60)  # old expired (90 days), new has 30 days left
    assert store.list(now=later) == [new]
    assert store.prune(later) == 1
    assert store.list() == [new]
    assert store.prune(later) == 0


def test_payloads_and_campaigns_are_validated(db: Database) -> None:
    store = AggregateStore(db)
    with pytest.raises(ValueError, match="JSON"):
        store.publish("trends", None, 5, {"x": float("nan")})
    with pytest.raises(ValueError, match="kind"):
        store.publish("", None, 5, {})
    with pytest.raises(NotFoundError):
        store.publish("trends", 42, 5, {})
