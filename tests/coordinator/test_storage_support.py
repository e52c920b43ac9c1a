"""Helpers for the coordinator storage tests (no tests here).

Every storage test runs on SQLite in ``tmp_path`` and, when ``RETAIL_TEST_POSTGRES_URL``
names a PostgreSQL database (for example ``postgresql+psycopg://postgres@127.0.0.1/test``),
on PostgreSQL too: each test gets its own schema there (dropped afterwards), so the database
may be shared but should be a throwaway one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from coordinator.db import Database, open_database

POSTGRES_ENV = "RETAIL_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A settable clock: tests move time instead of waiting."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(
            f"{POSTGRES_ENV} is not set; set it to a throwaway PostgreSQL database URL "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the PostgreSQL "
            "variant of the storage tests"
        )
    return url


@contextmanager
def open_test_db(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A freshly migrated database of ``backend``, closed (and on PostgreSQL dropped) after."""
    if backend == "sqlite":
        db = open_database(f"sqlite:///{tmp_path / 'coordinator.sqlite'}")
        try:
            yield db
        finally:
            db.close()
        return
    with postgres_schema(postgres_url_or_skip()) as url:
        db = open_database(url)
        try:
            yield db
        finally:
            db.close()


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections work in a new, private schema, dropped on exit."""
    schema = f"storage_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def ecdsa_key(curve: ec.EllipticCurve | None = None, comment: str = "") -> str:
    """A fresh OpenSSH ECDSA public key line (P-256 unless told), optionally commented."""
    private = ec.generate_private_key(curve or ec.SECP256R1())
    line = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


def ed25519_key() -> str:
    private = ed25519.Ed25519PrivateKey.generate()
    return private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def rsa_key() -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - fast; refused
    return private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


def drop_audit_guards(db: Database) -> None:
    """Remove the append-only triggers, as an attacker with raw database access could."""
    with db.engine.begin() as connection:
        if db.dialect == "sqlite":
            for name in (
                "audit_events_append_only",
                "audit_events_delete_pruned_only",
                "audit_anchor_forward_only",
                "audit_anchor_kept",
            ):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            connection.execute(text("DROP TRIGGER IF EXISTS audit_events_guard ON audit_events"))
            connection.execute(text("DROP TRIGGER IF EXISTS audit_anchor_guard ON audit_anchor"))


def raw(db: Database, sql: str, **params: object) -> None:
    """Run one statement outside every service (tampering, corrupting)."""
    with db.engine.begin() as connection:
        connection.execute(text(sql), params)
