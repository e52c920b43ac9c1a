"""Audit log: hash chain, tamper detection (edit, deletion, reordering), guards, pruning."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, delete, select, update

from coordinator.audit import AuditIntegrityError, AuditLog, event_hash
from coordinator.db import Database, open_database
from coordinator.db import schema as t
from tests.coordinator.test_storage_support import (
    BACKENDS,
    FakeClock,
    drop_audit_guards,
    open_test_db,
)

events_table = cast(Table, t.AuditEvent.__table__)
anchor_table = cast(Table, t.AuditAnchor.__table__)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def fill(log: AuditLog, clock: FakeClock, count: int) -> None:
    for index in range(count):
        clock.advance(minutes=1)
        log.append("admin", "thing.happen", f"thing:{index % 3}", {"index": index, "x": 0.1})


def tamper(db: Database, statement: Any) -> None:
    drop_audit_guards(db)
    with db.engine.begin() as connection:
        connection.execute(statement)


def test_appended_events_form_a_verifiable_chain(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 5)
    events = log.events(limit=100)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == t.GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    first = events[0]
    assert first.hash == event_hash(
        t.GENESIS_HASH, 1, first.at, first.actor, first.action, first.subject, first.details
    )
    assert first.at == clock.now - timedelta(minutes=4)
    report = log.verify()
    assert report.ok and report.events == 5 and report.problems == []
    assert (report.anchor_seq, report.head_seq) == (0, 5)


def test_an_edited_event_is_reported(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 5)
    tamper(db, update(events_table).where(events_table.c.seq == 3).values(details={"index": 99}))
    report = log.verify()
    assert not report.ok
    assert report.problems == ["event 3: content does not match its hash (edited)"]


def test_a_deleted_event_is_reported(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 5)
    tamper(db, delete(events_table).where(events_table.c.seq == 2))
    report = log.verify()
    assert not report.ok and report.events == 4
    assert any("2 missing" in problem for problem in report.problems)


def test_deleting_the_newest_events_is_reported(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 5)
    tamper(db, delete(events_table).where(events_table.c.seq >= 4))
    report = log.verify()
    assert not report.ok
    assert any("4..5 missing" in problem for problem in report.problems)


def test_swapped_events_are_reported(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 5)
    drop_audit_guards(db)
    with db.engine.begin() as connection:
        connection.execute(update(events_table).where(events_table.c.seq == 2).values(seq=-2))
        connection.execute(update(events_table).where(events_table.c.seq == 3).values(seq=2))
        connection.execute(update(events_table).where(events_table.c.seq == -2).values(seq=3))
    report = log.verify()
    assert not report.ok
    assert any("event 2" in problem for problem in report.problems)


def test_the_database_refuses_to_rewrite_history(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 3)
    attempts = [
        update(events_table).where(events_table.c.seq == 1).values(actor="mallory"),
        delete(events_table).where(events_table.c.seq == 3),
        update(anchor_table).values(head_seq=1),
        delete(anchor_table),
    ]
    for statement in attempts:
        with pytest.raises(Exception, match=r"append-only|pruning|anchor"), db.engine.begin() as c:
            c.execute(statement)
    assert log.verify().ok


def test_an_event_appended_in_a_rolled_back_transaction_leaves_no_trace(
    db: Database, clock: FakeClock
) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 2)
    with pytest.raises(RuntimeError), db.session() as session:
        log.append_in(session, "admin", "campaign.create", "campaign:1", {})
        raise RuntimeError("the change this event records failed")
    assert log.append("admin", "next", "x", {}).seq == 3
    assert log.verify().ok


def test_prune_moves_the_anchor_and_the_chain_still_verifies(
    db: Database, clock: FakeClock
) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 6)  # at = START + 1..6 minutes
    cutoff = clock.now - timedelta(minutes=2, seconds=30)  # events 1..3 are older
    assert log.prune(cutoff) == 3
    report = log.verify()
    assert report.ok, report.problems
    assert (report.anchor_seq, report.head_seq) == (3, 7)  # 7: the audit.prune event
    assert [e.seq for e in log.events()] == [4, 5, 6, 7]
    assert log.events(after_seq=6)[0].action == "audit.prune"
    assert log.prune(cutoff) == 0
    fill(log, clock, 2)
    assert log.verify().ok
    # Once pruned, the events may be deleted; newer ones still may not.
    with pytest.raises(Exception, match="pruning"), db.engine.begin() as connection:
        connection.execute(delete(events_table).where(events_table.c.seq == 4))


def test_prune_refuses_to_launder_a_tampered_stretch(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 4)
    tamper(db, update(events_table).where(events_table.c.seq == 1).values(actor="mallory"))
    with pytest.raises(AuditIntegrityError, match="event 1"):
        log.prune(clock.now + timedelta(days=1))
    assert log.count() == 4


def test_events_page_and_filter_by_subject(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    fill(log, clock, 7)
    assert [e.seq for e in log.events(limit=3)] == [1, 2, 3]
    assert [e.seq for e in log.events(limit=3, after_seq=3)] == [4, 5, 6]
    assert [e.seq for e in log.events(subject="thing:1")] == [2, 5]
    assert log.events(limit=1)[0].to_json()["details"] == {"index": 0, "x": 0.1}
    with pytest.raises(ValueError, match="limit"):
        log.events(limit=0)


def test_bad_events_are_refused(db: Database, clock: FakeClock) -> None:
    log = AuditLog(db, clock)
    with pytest.raises(ValueError, match="JSON"):
        log.append("admin", "a", "s", {"x": float("nan")})
    with pytest.raises(ValueError, match="actor"):
        log.append("", "a", "s", {})
    with pytest.raises(ValueError, match="action"):
        log.append("admin", "a" * 101, "s", {})
    assert log.count() == 0 and log.verify().ok


def test_concurrent_appends_keep_one_unbroken_chain(db: Database) -> None:
    log = AuditLog(db)
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        start.wait()
        try:
            for index in range(10):
                log.append(name, "write", "race", {"i": index})
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    report = log.verify()
    assert report.ok, report.problems
    assert report.events == 40 and report.head_seq == 40


# -- Property 14 ---------------------------------------------------------------------------

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(str.strip)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_events = st.lists(
    st.tuples(_text, _text, _text, st.dictionaries(st.text(max_size=6), _json, max_size=3)),
    min_size=1,
    max_size=8,
)
_tampering = st.tuples(
    st.sampled_from(
        ["delete", "swap", "actor", "action", "subject", "details", "at", "prev_hash", "hash"]
    ),
    st.integers(min_value=0, max_value=1_000),
)


@pytest.fixture
def scratch_db() -> Iterator[Database]:
    """One in-memory database for every example of the property, guards removed so each
    example can tamper and ``reset`` can start the next one from an empty log."""
    with open_database("sqlite://") as database:
        drop_audit_guards(database)
        yield database


def reset(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(events_table))
        connection.execute(
            update(anchor_table).values(
                seq=0, hash=t.GENESIS_HASH, head_seq=0, head_hash=t.GENESIS_HASH
            )
        )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(events=_events, tampering=_tampering, minutes=st.lists(st.integers(0, 10**6), max_size=10))
def test_property_any_single_edit_or_deletion_is_reported(
    scratch_db: Database,
    events: list[tuple[str, str, str, dict[str, Any]]],
    tampering: tuple[str, int],
    minutes: list[int],
) -> None:
    """Feature: retail-intelligence-platform, Property 14: Comprehensive Audit and Monitoring.

    For any sequence of appended events, the untouched log verifies; after any single edit of
    one stored field, deletion of one event or swap of two events, ``verify`` reports it."""
    kind, pick = tampering
    clock = FakeClock()
    db = scratch_db
    reset(db)
    log = AuditLog(db, clock)
    for index, (actor, action, subject, details) in enumerate(events):
        clock.advance(minutes=minutes[index] if index < len(minutes) else 1)
        log.append(actor, action, subject, details)
    assert log.verify().ok
    seq = pick % len(events) + 1
    with db.engine.connect() as connection:
        row = connection.execute(select(events_table).where(events_table.c.seq == seq)).one()
    where = events_table.c.seq == seq
    if kind == "delete":
        statements: list[Any] = [delete(events_table).where(where)]
    elif kind == "swap":
        if len(events) < 2:
            return
        other = seq % len(events) + 1
        statements = [
            update(events_table).where(where).values(seq=-1),
            update(events_table).where(events_table.c.seq == other).values(seq=seq),
            update(events_table).where(events_table.c.seq == -1).values(seq=other),
        ]
    elif kind == "details":
        statements = [update(events_table).where(where).values(details={"was": row.details})]
    elif kind == "at":
        statements = [
            update(events_table).where(where).values(at=row.at + timedelta(microseconds=1))
        ]
    elif kind in ("prev_hash", "hash"):
        value = getattr(row, kind)
        flipped = ("1" if value[0] == "0" else "0") + value[1:]
        statements = [update(events_table).where(where).values({kind: flipped})]
    else:
        statements = [update(events_table).where(where).values({kind: getattr(row, kind) + "~"})]
    with db.engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)
    report = log.verify()
    assert not report.ok
    assert report.problems
