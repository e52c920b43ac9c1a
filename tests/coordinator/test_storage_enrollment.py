"""Enrollment: single-use expiring tokens, node keys, concurrency, the register, rate limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from coordinator.audit import AuditLog
from coordinator.auth import CredentialService, Principal, Role, token_hash
from coordinator.db import Database, NotFoundError
from coordinator.db import schema as t
from coordinator.services.enrollment import (
    Enrollment,
    EnrollmentRateLimiter,
    EnrollmentRefused,
    EnrollmentService,
    key_fingerprint,
    normalise_node_key,
)
from tests.coordinator.test_storage_support import (
    BACKENDS,
    FakeClock,
    ecdsa_key,
    ed25519_key,
    open_test_db,
    rsa_key,
)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class World:
    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.audit = AuditLog(db, clock)
        self.credentials = CredentialService(db, clock=clock, audit=self.audit)
        self.service = EnrollmentService(db, self.audit, self.credentials, clock)


@pytest.fixture
def world(db: Database, clock: FakeClock) -> World:
    return World(db, clock)


def test_a_token_enrolls_one_retailer_with_a_working_credential(
    world: World, clock: FakeClock
) -> None:
    token, expires = world.service.create_token("  Corner   Shop ", timedelta(days=2), actor="ops")
    assert token.startswith("rip_e_") and expires == clock.now + timedelta(days=2)
    key = ecdsa_key(comment="node@shop")
    clock.advance(hours=1)
    enrolled = world.service.enroll(token, key, source="10.0.0.7")
    assert isinstance(enrolled, Enrollment)
    assert enrolled.retailer_name == "Corner Shop"
    principal = world.credentials.authenticate(enrolled.access_token)
    assert principal == Principal(
        enrolled.credential_id, Role.RETAILER, enrolled.retailer_id, "Corner Shop"
    )
    retailer = world.service.retailer(enrolled.retailer_id)
    assert retailer is not None
    assert retailer.node_public_key == key.rsplit(" ", 1)[0]  # stored without the comment
    assert retailer.status == "active" and retailer.flower_node_id is None
    assert retailer.key_fingerprint.startswith("SHA256:")
    assert world.service.list_retailers() == [retailer]
    assert world.service.active_node_keys() == [retailer.node_public_key]
    with world.db.session(readonly=True) as session:
        row = session.scalars(select(t.EnrollmentToken)).one()
    assert row.token_hash == token_hash(token)
    assert row.used_at == clock.now and row.used_by_retailer_id == enrolled.retailer_id
    events = world.audit.events()
    assert [e.action for e in events] == ["enrollment.token_created", "enrollment.enrolled"]
    assert token not in str([e.to_json() for e in events])
    assert world.audit.verify().ok


def test_a_used_token_is_refused_with_the_reason(world: World) -> None:
    token, _ = world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    world.service.enroll(token, ecdsa_key(), source="a")
    with pytest.raises(EnrollmentRefused, match="already used") as refused:
        world.service.enroll(token, ecdsa_key(), source="b")
    assert "new one" in refused.value.reason
    last = world.audit.events()[-1]
    assert last.action == "enrollment.refused"
    assert last.details == {"reason": refused.value.reason, "source": "b"}
    assert token not in str(last.to_json())
    assert len(world.service.list_retailers()) == 1


def test_an_expired_token_is_refused(world: World, clock: FakeClock) -> None:
    token, _ = world.service.create_token("Shop", timedelta(minutes=30), actor="ops")
    clock.advance(minutes=30)
    with pytest.raises(EnrollmentRefused, match="expired"):
        world.service.enroll(token, ecdsa_key(), source="a")
    assert world.service.list_retailers() == []


def test_unknown_tokens_are_refused(world: World) -> None:
    world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    for token in ("", "rip_e_" + "x" * 43, "garbage", "rip_e_" + "y" * 500):
        with pytest.raises(EnrollmentRefused, match="unknown enrollment token"):
            world.service.enroll(token, ecdsa_key(), source="a")
    assert [e.subject for e in world.audit.events()][-1] == "enrollment"


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (ed25519_key, "ECDSA"),
        (rsa_key, "ECDSA"),
        (lambda: "", "no node public key"),
        (lambda: "ecdsa-sha2-nistp256 AAAAnotbase64!!", "not a valid OpenSSH"),
        (lambda: "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----", "single"),
        (lambda: ecdsa_key() + "\n" + ecdsa_key(), "single"),
        (lambda: "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "valid OpenSSH|unsupported"),
    ],
)
def test_bad_keys_are_refused_and_the_token_stays_usable(
    world: World, make_key: object, message: str
) -> None:
    token, _ = world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    with pytest.raises(EnrollmentRefused, match=message):
        world.service.enroll(token, make_key(), source="a")  # type: ignore[operator]
    assert world.service.enroll(token, ecdsa_key(), source="a").retailer_name == "Shop"


def test_every_nist_curve_is_accepted_and_spellings_normalise() -> None:
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
        key = ecdsa_key(curve)
        assert normalise_node_key(f"  {key} laptop  ") == key
    key = ecdsa_key()
    assert key_fingerprint(key) == key_fingerprint(normalise_node_key(key + " other-comment"))
    p384 = ecdsa_key(ec.SECP384R1()).split()[1]
    with pytest.raises(EnrollmentRefused, match="not a valid"):
        normalise_node_key("ecdsa-sha2-nistp256 " + p384)  # label and contents disagree


def test_a_registered_key_cannot_enroll_twice(world: World) -> None:
    key = ecdsa_key()
    first, _ = world.service.create_token("Shop A", timedelta(hours=1), actor="ops")
    second, _ = world.service.create_token("Shop B", timedelta(hours=1), actor="ops")
    world.service.enroll(first, key, source="a")
    with pytest.raises(EnrollmentRefused, match="already registered"):
        world.service.enroll(second, key + " another-comment", source="a")
    assert world.service.enroll(second, ecdsa_key(), source="a").retailer_name == "Shop B"


def test_token_creation_is_validated(world: World) -> None:
    token, _ = world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    world.service.enroll(token, ecdsa_key(), source="a")
    with pytest.raises(ValueError, match="already enrolled"):
        world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    with pytest.raises(ValueError, match="empty"):
        world.service.create_token("   ", timedelta(hours=1), actor="ops")
    with pytest.raises(ValueError, match="30 days"):
        world.service.create_token("Other", timedelta(days=31), actor="ops")
    with pytest.raises(ValueError, match="30 days"):
        world.service.create_token("Other", timedelta(0), actor="ops")
    with pytest.raises(ValueError, match="control"):
        world.service.create_token("Bad\x07name", timedelta(hours=1), actor="ops")


def test_concurrent_use_of_one_token_enrolls_exactly_once(world: World) -> None:
    token, _ = world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def attempt(source: str) -> None:
        key = ecdsa_key()
        start.wait()
        try:
            outcomes.append(world.service.enroll(token, key, source=source))
        except EnrollmentRefused as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=attempt, args=(f"s{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    successes = [o for o in outcomes if isinstance(o, Enrollment)]
    refusals = [o for o in outcomes if isinstance(o, EnrollmentRefused)]
    assert len(successes) == 1 and len(refusals) == 1, outcomes
    assert "already used" in refusals[0].reason
    assert len(world.service.list_retailers()) == 1
    assert world.audit.verify().ok


def test_flower_node_ids_and_revocation(world: World) -> None:
    token, _ = world.service.create_token("Shop", timedelta(hours=1), actor="ops")
    enrolled = world.service.enroll(token, ecdsa_key(), source="a")
    node_id = 2**64 - 1  # Flower ids are unsigned 64-bit: beyond a signed BIGINT
    assert world.service.set_flower_node_id(enrolled.retailer_id, node_id).flower_node_id == node_id
    record = world.service.retailer(enrolled.retailer_id)
    assert record is not None and record.flower_node_id == node_id
    other, _ = world.service.create_token("Other", timedelta(hours=1), actor="ops")
    second = world.service.enroll(other, ecdsa_key(), source="a")
    with pytest.raises(ValueError, match="another retailer"):
        world.service.set_flower_node_id(second.retailer_id, node_id)
    with pytest.raises(ValueError, match="64-bit"):
        world.service.set_flower_node_id(second.retailer_id, -1)
    with pytest.raises(NotFoundError):
        world.service.set_flower_node_id(999, 5)
    assert world.service.retailer(999) is None
    revoked = world.service.revoke_retailer(enrolled.retailer_id, actor="ops")
    assert revoked.status == "revoked"
    assert world.credentials.authenticate(enrolled.access_token) is None
    assert world.credentials.authenticate(second.access_token) is not None
    assert world.service.active_node_keys() == [world.service.list_retailers()[1].node_public_key]
    assert world.audit.events()[-1].details["credentials_revoked"] == 1
    assert world.audit.verify().ok


def test_rate_limiter_allows_a_sliding_window_per_source() -> None:
    now = [0.0]
    limiter = EnrollmentRateLimiter(3, timedelta(seconds=60), clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.check("b")  # sources are counted apart
    now[0] = 59.9
    assert not limiter.check("a")
    now[0] = 60.0  # the first three attempts leave the window
    assert [limiter.check("a") for _ in range(4)] == [True, True, True, False]
    with pytest.raises(ValueError):
        EnrollmentRateLimiter(0)


def test_rate_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = EnrollmentRateLimiter(1, timedelta(seconds=10), clock=lambda: now[0], max_sources=10)
    for index in range(100):
        now[0] = index * 0.01
        assert limiter.check(f"source-{index}")
    assert len(limiter._attempts) <= 10
