"""Credentials: issue, authenticate, refresh (rotation), revoke, expiry, role rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, select

from coordinator.audit import AuditLog
from coordinator.auth import (
    ACCESS_PREFIX,
    REFRESH_PREFIX,
    AuthError,
    CredentialService,
    Principal,
    Role,
    token_hash,
)
from coordinator.db import Database, open_database
from coordinator.db import schema as t
from tests.coordinator.test_storage_support import BACKENDS, START, FakeClock, open_test_db


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def add_retailer(db: Database, name: str = "Corner Shop", status: str = "active") -> int:
    with db.session() as session:
        return int(
            session.execute(
                insert(t.Retailer)
                .values(
                    name=name,
                    node_public_key=f"ecdsa-sha2-nistp256 {name}",
                    status=status,
                    created_at=START,
                )
                .returning(t.Retailer.id)
            ).scalar_one()
        )


def test_issued_tokens_authenticate_as_their_principal(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    retailer = add_retailer(db)
    admin = service.issue(Role.ADMIN, name="ops")
    node = service.issue("retailer", name="Corner Shop", retailer_id=retailer)
    assert admin.access_token.startswith(ACCESS_PREFIX)
    assert admin.refresh_token.startswith(REFRESH_PREFIX)
    assert admin.access_expires_at == clock.now + timedelta(hours=1)
    assert admin.refresh_expires_at == clock.now + timedelta(days=30)
    assert service.authenticate(admin.access_token) == Principal(
        admin.credential_id, Role.ADMIN, None, "ops"
    )
    assert service.authenticate(node.access_token) == Principal(
        node.credential_id, Role.RETAILER, retailer, "Corner Shop"
    )
    # Only hashes are stored.
    with db.session(readonly=True) as session:
        stored = session.get_one(t.Credential, admin.credential_id)
        assert stored.access_hash == token_hash(admin.access_token)
        assert admin.access_token not in (stored.access_hash, stored.refresh_hash)


def test_anything_but_a_live_access_token_is_refused(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    issued = service.issue(Role.VIEWER, name="board")
    for wrong in (
        "",
        "nonsense",
        issued.refresh_token,  # a refresh token is not an access token
        issued.access_token + "x",
        issued.access_token[:-1],
        ACCESS_PREFIX + "A" * 43,
        issued.access_token.upper(),
        "x" * 10_000,
    ):
        assert service.authenticate(wrong) is None


def test_access_tokens_expire(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    issued = service.issue(Role.ADMIN, name="ops", access_ttl=timedelta(minutes=5))
    clock.advance(minutes=4, seconds=59)
    assert service.authenticate(issued.access_token) is not None
    clock.advance(seconds=1)
    assert service.authenticate(issued.access_token) is None


def test_refresh_rotates_both_tokens(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    first = service.issue(Role.ADMIN, name="ops")
    clock.advance(hours=2)  # the access token has expired; the refresh token has not
    assert service.authenticate(first.access_token) is None
    second = service.refresh(first.refresh_token)
    assert second.credential_id == first.credential_id
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert second.access_expires_at == clock.now + timedelta(hours=1)
    assert service.authenticate(second.access_token) is not None
    with pytest.raises(AuthError, match="unknown refresh token"):
        service.refresh(first.refresh_token)  # the old one stopped working
    with pytest.raises(AuthError, match="not a refresh token"):
        service.refresh(second.access_token)
    assert service.refresh(second.refresh_token).credential_id == first.credential_id


def test_expired_refresh_tokens_are_refused(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock, refresh_ttl=timedelta(days=2))
    issued = service.issue(Role.VIEWER, name="board")
    clock.advance(days=2)
    with pytest.raises(AuthError, match="expired"):
        service.refresh(issued.refresh_token)


def test_revoked_credentials_stop_working_at_once(db: Database, clock: FakeClock) -> None:
    audit = AuditLog(db, clock)
    service = CredentialService(db, clock=clock, audit=audit)
    keep = service.issue(Role.ADMIN, name="keep")
    drop = service.issue(Role.ADMIN, name="drop", actor="root")
    service.revoke(drop.credential_id, actor="root")
    service.revoke(drop.credential_id)  # idempotent
    assert service.authenticate(drop.access_token) is None
    assert service.authenticate(keep.access_token) is not None
    with pytest.raises(AuthError, match="revoked"):
        service.refresh(drop.refresh_token)
    with pytest.raises(AuthError, match="no credential"):
        service.revoke(12345)
    assert [c.id for c in service.list()] == [keep.credential_id]
    assert len(service.list(include_revoked=True)) == 2
    actions = [(e.actor, e.action) for e in audit.events()]
    assert actions[-1] == ("root", "credential.revoke")
    assert actions.count(("root", "credential.revoke")) == 1
    assert "token" not in str([e.details for e in audit.events()]).lower()
    assert audit.verify().ok


def test_role_and_retailer_must_agree(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    retailer = add_retailer(db)
    with pytest.raises(AuthError, match="must name its retailer"):
        service.issue(Role.RETAILER, name="x")
    with pytest.raises(AuthError, match="must not belong"):
        service.issue(Role.ADMIN, name="x", retailer_id=retailer)
    with pytest.raises(AuthError, match="must not belong"):
        service.issue(Role.VIEWER, name="x", retailer_id=retailer)
    with pytest.raises(AuthError, match="no retailer"):
        service.issue(Role.RETAILER, name="x", retailer_id=retailer + 1)
    with pytest.raises(AuthError, match="unknown role"):
        service.issue("superuser", name="x")
    # The database refuses the same even if this service is bypassed.
    with pytest.raises(Exception, match=r"(?i)check|constraint"), db.session() as session:
        session.execute(
            insert(t.Credential).values(
                role="admin",
                retailer_id=retailer,
                name="x",
                access_hash="a" * 64,
                refresh_hash="b" * 64,
                access_expires_at=START,
                refresh_expires_at=START,
                created_at=START,
            )
        )


def test_revoked_retailers_cannot_authenticate(db: Database, clock: FakeClock) -> None:
    service = CredentialService(db, clock=clock)
    retailer = add_retailer(db)
    issued = service.issue(Role.RETAILER, name="Corner Shop", retailer_id=retailer)
    with db.session() as session:
        session.get_one(t.Retailer, retailer).status = "revoked"
    assert service.authenticate(issued.access_token) is None
    with pytest.raises(AuthError, match="revoked"):
        service.refresh(issued.refresh_token)
    with pytest.raises(AuthError, match="revoked"):
        service.issue(Role.RETAILER, name="again", retailer_id=retailer)


def test_lifetimes_are_validated(db: Database) -> None:
    with pytest.raises(ValueError, match="positive"):
        CredentialService(db, access_ttl=timedelta(0))
    with pytest.raises(ValueError, match="shorter"):
        CredentialService(db, access_ttl=timedelta(days=2), refresh_ttl=timedelta(days=1))
    with pytest.raises(AuthError, match="access lifetime"):
        CredentialService(db).issue(Role.ADMIN, name="x", access_ttl=timedelta(days=365))


# -- Property 2 ----------------------------------------------------------------------------

_specs = st.lists(
    st.tuples(
        st.sampled_from(list(Role)),
        st.sampled_from(["live", "expired", "revoked"]),
        st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and "\x00" not in s),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def scratch_db() -> Iterator[Database]:
    """One in-memory database shared by the property's examples (emptied between them)."""
    with open_database("sqlite://") as database:
        yield database


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs=_specs, strangers=st.lists(st.text(max_size=60), max_size=5))
def test_property_authenticate_returns_exactly_the_issued_principal(
    scratch_db: Database, specs: list[tuple[Role, str, str]], strangers: list[str]
) -> None:
    """Feature: retail-intelligence-platform, Property 2: Secure Authentication and Authorization.

    For any set of issued credentials (any role; live, expired or revoked), ``authenticate``
    returns exactly the principal issued for a live access token, and None for an expired or
    revoked one, for refresh tokens, and for any other string."""
    db = scratch_db
    with db.session() as session:
        session.execute(delete(t.Credential))
        session.execute(delete(t.Retailer))
    clock = FakeClock()
    service = CredentialService(db, clock=clock)
    issued = []
    for index, (role, state, name) in enumerate(specs):
        retailer = add_retailer(db, f"r{index}") if role is Role.RETAILER else None
        ttl = timedelta(minutes=1) if state == "expired" else timedelta(hours=1)
        token = service.issue(role, name=name, retailer_id=retailer, access_ttl=ttl)
        if state == "revoked":
            service.revoke(token.credential_id)
        issued.append((role, state, name, retailer, token))
    clock.advance(minutes=2)
    for role, state, name, retailer, token in issued:
        expected = Principal(token.credential_id, role, retailer, name) if state == "live" else None
        assert service.authenticate(token.access_token) == expected
        assert service.authenticate(token.refresh_token) is None
    live = {token.access_token for *_, token in issued}
    for stranger in strangers:
        if stranger not in live:
            assert service.authenticate(stranger) is None
            assert service.authenticate(ACCESS_PREFIX + stranger) is None
    with db.session(readonly=True) as session:
        assert len(session.scalars(select(t.Credential.id)).all()) == len(specs)
