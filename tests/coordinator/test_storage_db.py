"""Coordinator database: migrations, SQLite settings, sessions, URL masking, UTC handling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from coordinator.db import Database, DatabaseError, migrate, open_database
from coordinator.db import schema as t
from coordinator.db.database import alembic_config
from tests.coordinator.test_storage_support import BACKENDS, START, open_test_db

TABLES = {
    "retailers",
    "enrollment_tokens",
    "credentials",
    "campaigns",
    "round_progress",
    "ledger_reports",
    "model_versions",
    "aggregates",
    "audit_events",
    "audit_anchor",
}


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


def test_migrations_create_every_table_and_match_the_models(db: Database) -> None:
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, t.Base.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            "0001_initial"
        )
        anchor = connection.execute(text("SELECT seq, hash, head_seq FROM audit_anchor")).all()
    assert anchor == [(0, t.GENESIS_HASH, 0)]


def test_opening_twice_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'c.sqlite'}"  # the parent folder is created
    with open_database(url) as first, first.session() as session:
        session.add(
            t.Campaign(
                status="pending",
                rounds=3,
                epsilon=1.0,
                tasks="forecasting",
                created_by="admin",
                created_at=START,
            )
        )
    with open_database(url) as second:
        with second.session(readonly=True) as session:
            assert session.scalar(select(t.Campaign.rounds)) == 3
        with second.engine.connect() as connection:
            anchors = connection.execute(text("SELECT count(*) FROM audit_anchor")).scalar()
            versions = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar()
        assert (anchors, versions) == (1, 1)


def test_downgrade_to_nothing_and_upgrade_again(db: Database) -> None:
    with db.engine.connect() as connection, connection.begin():
        command.downgrade(alembic_config(connection), "base")
    assert not TABLES & set(inspect(db.engine).get_table_names())
    migrate(db.engine)
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def test_a_schema_from_a_newer_version_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    with open_database(url) as db, db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(DatabaseError, match="newer coordinator"):
        open_database(url)


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    with (
        open_database(f"sqlite:///{tmp_path / 'c.sqlite'}") as db,
        db.engine.connect() as connection,
    ):
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(Exception, match=r"(?i)foreign key"), db.session() as session:
        session.add(
            t.LedgerReport(
                retailer_id=999,
                campaign_id=None,
                round=1,
                epsilon_spent=0.1,
                epsilon_cap=5.0,
                reported_at=START,
            )
        )


def test_session_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    def campaign() -> t.Campaign:
        return t.Campaign(
            status="pending",
            rounds=1,
            epsilon=1.0,
            tasks="bundles",
            created_by="a",
            created_at=START,
        )

    with pytest.raises(RuntimeError), db.session() as session:
        session.add(campaign())
        session.flush()
        raise RuntimeError("boom")
    with db.session() as session:
        session.add(campaign())
    with db.session(readonly=True) as session:
        assert len(session.scalars(select(t.Campaign)).all()) == 1


def test_timestamps_come_back_as_aware_utc(db: Database) -> None:
    eastern = datetime(2026, 3, 1, 8, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    with db.session() as session:
        session.add(
            t.Campaign(
                status="pending",
                rounds=1,
                epsilon=1.0,
                tasks="bundles",
                created_by="a",
                created_at=eastern,
            )
        )
    with db.session(readonly=True) as session:
        stored = session.scalars(select(t.Campaign.created_at)).one()
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 1, 13, 30, 0, 123456, tzinfo=UTC)


def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="timezone-aware"), db.session() as session:
        session.add(
            t.Campaign(
                status="pending",
                rounds=1,
                epsilon=1.0,
                tasks="bundles",
                created_by="a",
                created_at=datetime(2026, 3, 1),  # naive on purpose
            )
        )
        session.flush()


def test_url_hides_the_password_and_ping_reflects_the_connection(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert db.ping()
    assert "c.sqlite" in repr(db)
    db.close()


def test_unreachable_postgres_error_hides_the_password() -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")
    secret = "postgresql+psycopg://alice:s3cret-pw@127.0.0.1:1/none"  # noqa: S105 - a fake
    with pytest.raises(DatabaseError) as refused:
        open_database(secret)
    assert "s3cret-pw" not in str(refused.value)
    assert "***" in str(refused.value)


def test_postgres_url_is_masked_in_repr() -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")
    from coordinator.db import create_database_engine

    engine = create_database_engine("postgresql+psycopg://alice:s3cret-pw@db.example/coord")
    try:
        db = Database(engine)
        assert "s3cret-pw" not in repr(db) and "s3cret-pw" not in str(db.url)
        assert "***" in repr(db)
    finally:
        engine.dispose()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="cannot open or migrate"):
        open_database(f"sqlite:///{path}")
