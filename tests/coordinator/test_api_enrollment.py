"""Enrollment, enrollment tokens and token refresh over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from coordinator.auth import CredentialService, Role
from coordinator.services.enrollment import EnrollmentRateLimiter, EnrollmentService
from tests.coordinator.test_api_support import API, World, build_world, enroll
from tests.coordinator.test_storage_support import START, FakeClock, ecdsa_key, ed25519_key

ENROLLMENT_KEYS = {
    "retailer_id",
    "retailer_name",
    "access_token",
    "refresh_token",
    "access_expires_at",
    "refresh_expires_at",
    "ca_certificate",
    "ca_fingerprint",
    "superlink_address",
    "taxonomy_version",
    "flower_node_id",
    "registration",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path, populate=False)
    yield built
    built.close()


@pytest.fixture(scope="module")
def checked_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Shared by tests whose requests are all refused (nothing is stored)."""
    built = build_world(Path(tmp_path_factory.mktemp("api-token-refusals")), populate=False)
    yield built
    built.close()


def _token(world: World, name: str = "Corner Shop", **extra: object) -> str:
    response = world.client.post(
        f"{API}/tokens", json={"retailer": name, **extra}, headers=world.headers("admin")
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def test_enrollment_returns_credentials_ca_and_pending_registration(world: World) -> None:
    result = enroll(world, "Corner Shop")
    assert set(result) == ENROLLMENT_KEYS
    assert result["retailer_name"] == "Corner Shop"
    assert result["ca_certificate"] == world.coord.ca_certificate
    assert result["superlink_address"] is None and result["flower_node_id"] is None
    assert result["registration"].startswith("pending: ")  # no SuperLink in these tests
    me = world.client.get(
        f"{API}/me", headers={"Authorization": f"Bearer {result['access_token']}"}
    ).json()
    assert (me["role"], me["retailer_id"]) == ("retailer", result["retailer_id"])


def test_token_reuse_is_refused_with_the_reason(world: World) -> None:
    token = _token(world)
    first = world.client.post(f"{API}/enroll", json={"token": token, "public_key": ecdsa_key()})
    again = world.client.post(f"{API}/enroll", json={"token": token, "public_key": ecdsa_key()})
    assert first.status_code == 201
    assert again.status_code == 403
    assert "already used" in again.json()["detail"]
    assert len(world.coord.enrollment.list_retailers()) == 1


def test_unknown_token_and_unacceptable_key_are_403(world: World) -> None:
    unknown = world.client.post(
        f"{API}/enroll", json={"token": "rip_e_nope", "public_key": ecdsa_key()}
    )
    assert unknown.status_code == 403 and "unknown enrollment token" in unknown.json()["detail"]
    bad_key = world.client.post(
        f"{API}/enroll", json={"token": _token(world), "public_key": ed25519_key()}
    )
    assert bad_key.status_code == 403 and "ECDSA" in bad_key.json()["detail"]


def test_expired_token_is_refused(world: World) -> None:
    clock = FakeClock()
    world.coord.enrollment = EnrollmentService(
        world.coord.db, world.coord.audit, world.coord.credentials, clock=clock
    )
    token = _token(world, expires_in_seconds=3600)
    clock.advance(hours=1, seconds=1)
    response = world.client.post(f"{API}/enroll", json={"token": token, "public_key": ecdsa_key()})
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_rate_limit_gives_429_with_retry_after(world: World) -> None:
    world.coord.rate_limiter = EnrollmentRateLimiter(2, clock=lambda: 100.0)
    codes = [
        world.client.post(
            f"{API}/enroll", json={"token": "rip_e_guess", "public_key": ecdsa_key()}
        ).status_code
        for _ in range(3)
    ]
    assert codes == [403, 403, 429]
    limited = world.client.post(
        f"{API}/enroll", json={"token": _token(world), "public_key": ecdsa_key()}
    )
    assert limited.status_code == 429  # even a valid token waits: the limit is per source
    assert limited.headers["Retry-After"] == "60"
    assert "try again" in limited.json()["detail"]


def test_token_defaults_to_seven_days_and_is_audited(world: World) -> None:
    clock = FakeClock()
    world.coord.enrollment = EnrollmentService(
        world.coord.db, world.coord.audit, world.coord.credentials, clock=clock
    )
    response = world.client.post(
        f"{API}/tokens", json={"retailer": "  Corner   Shop "}, headers=world.headers("admin")
    )
    body = response.json()
    assert response.status_code == 201
    assert body["retailer"] == "Corner Shop"
    assert body["expires_at"].startswith((START + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"))
    assert body["token"].startswith("rip_e_")
    events = world.coord.audit.events(limit=1000)
    created = [e for e in events if e.action == "enrollment.token_created"]
    assert [(e.actor, e.details["retailer_name"]) for e in created] == [
        ("alice-admin", "Corner Shop")
    ]
    assert all(body["token"] not in str(e.to_json()) for e in events)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"retailer": "Shop", "expires_in_seconds": 90 * 24 * 3600}, 422, "expires_in_seconds"),
        ({"retailer": "Shop", "expires_in_seconds": 0}, 422, "expires_in_seconds"),
        ({"retailer": "Shop", "expires_in_seconds": "3600"}, 422, "expires_in_seconds"),
        ({"retailer": ""}, 422, "retailer"),
        ({"retailer": "Bad\x07name"}, 400, "control characters"),
    ],
)
def test_token_request_validation(
    checked_world: World, body: dict[str, object], status: int, fragment: str
) -> None:
    headers = checked_world.headers("admin")
    response = checked_world.client.post(f"{API}/tokens", json=body, headers=headers)
    assert response.status_code == status
    assert fragment in response.json()["detail"]


def test_token_for_an_enrolled_name_is_refused(world: World) -> None:
    enroll(world, "Corner Shop")
    response = world.client.post(
        f"{API}/tokens", json={"retailer": "Corner Shop"}, headers=world.headers("admin")
    )
    assert response.status_code == 400
    assert "already enrolled" in response.json()["detail"]


def test_refresh_rotates_and_old_tokens_stop_working(world: World) -> None:
    result = enroll(world, "Corner Shop")
    rotated = world.client.post(
        f"{API}/auth/refresh", json={"refresh_token": result["refresh_token"]}
    )
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["token_type"] == "bearer"  # noqa: S105 - the OAuth token type
    assert new["access_token"] != result["access_token"]
    assert new["refresh_token"] != result["refresh_token"]
    reused = world.client.post(
        f"{API}/auth/refresh", json={"refresh_token": result["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "sign in again" in reused.json()["detail"]

    def me(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return world.client.get(f"{API}/me", headers=headers).status_code

    assert (me(result["access_token"]), me(new["access_token"])) == (401, 200)


def test_refresh_with_garbage_or_wrong_type_is_401_or_422(world: World) -> None:
    garbage = world.client.post(f"{API}/auth/refresh", json={"refresh_token": "rip_r_nope"})
    assert garbage.status_code == 401
    access_as_refresh = world.client.post(
        f"{API}/auth/refresh", json={"refresh_token": world.tokens["admin"]}
    )
    assert access_as_refresh.status_code == 401
    wrong_type = world.client.post(f"{API}/auth/refresh", json={"refresh_token": 12})
    assert wrong_type.status_code == 422


def test_expired_access_token_is_401(world: World) -> None:
    clock = FakeClock()
    world.coord.credentials = CredentialService(
        world.coord.db, access_ttl=timedelta(hours=1), clock=clock, audit=world.coord.audit
    )
    issued = world.coord.credentials.issue(Role.ADMIN, name="temp-admin")
    headers = {"Authorization": f"Bearer {issued.access_token}"}
    assert world.client.get(f"{API}/me", headers=headers).status_code == 200
    clock.advance(hours=1)
    expired = world.client.get(f"{API}/me", headers=headers)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoking_a_retailer_cuts_its_credentials(world: World) -> None:
    result = enroll(world, "Corner Shop")
    headers = {"Authorization": f"Bearer {result['access_token']}"}
    assert world.client.get(f"{API}/me", headers=headers).status_code == 200
    revoked = world.client.post(
        f"{API}/retailers/{result['retailer_id']}/revoke", headers=world.headers("admin")
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert world.client.get(f"{API}/me", headers=headers).status_code == 401
    refresh = world.client.post(
        f"{API}/auth/refresh", json={"refresh_token": result["refresh_token"]}
    )
    assert refresh.status_code == 401
    unknown = world.client.post(f"{API}/retailers/999/revoke", headers=world.headers("admin"))
    assert unknown.status_code == 404


def test_enrollment_outcomes_are_counted(world: World) -> None:
    enroll(world, "Corner Shop")
    world.client.post(f"{API}/enroll", json={"token": "rip_e_x", "public_key": ecdsa_key()})
    metrics = world.client.get("/metrics").text
    assert 'coordinator_enrollment_attempts_total{outcome="enrolled"} 1.0' in metrics
    assert 'coordinator_enrollment_attempts_total{outcome="refused"} 1.0' in metrics
    assert 'coordinator_enrollment_attempts_total{outcome="rate_limited"} 0.0' in metrics


def test_the_ca_is_public_so_an_owner_can_confirm_it_before_enrolling(world: World) -> None:
    from coordinator.pki import fingerprint

    response = world.client.get(f"{API}/ca")
    assert response.status_code == 200
    body = response.json()
    assert body["ca_certificate"] == world.coord.ca_certificate
    assert body["ca_fingerprint"] == fingerprint(world.coord.ca_certificate.encode("ascii"))
    assert world.coord.enrollment.list_retailers() == []  # nothing is spent or created
