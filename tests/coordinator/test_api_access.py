"""Who may call what: every authenticated endpoint against every kind of caller.

Anonymous and garbage tokens get 401 with ``WWW-Authenticate: Bearer``; a valid credential of
the wrong role, or a retailer asking for another retailer's records, gets 403; the roles the
endpoint serves get their success code. A coverage test makes sure no endpoint of the app is
missing from the matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.coordinator.test_api_support import (
    API,
    PRINCIPALS,
    World,
    build_world,
    unique_name,
)

ALL = frozenset({"admin", "viewer", "retailer", "other_retailer"})
ADMIN = frozenset({"admin"})
ADMIN_VIEWER = frozenset({"admin", "viewer"})
ADMIN_VIEWER_SELF = frozenset({"admin", "viewer", "retailer"})  # "retailer" is retailer A
RETAILERS = frozenset({"retailer", "other_retailer"})
ADMIN_RETAILERS = frozenset({"admin", "retailer", "other_retailer"})

# Endpoints without authentication, tested in their own files.
PUBLIC = {
    ("POST", f"{API}/enroll"),
    ("GET", f"{API}/ca"),
    ("POST", f"{API}/auth/refresh"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    path: Callable[[World], str]
    allowed: frozenset[str]
    success: int = 200
    body: Callable[[World], Any] | None = None


def _fresh_campaign(world: World) -> str:
    record = world.coord.campaigns.create(
        rounds=1, epsilon=1.0, tasks=["forecasting"], created_by="test"
    )
    return f"{API}/campaigns/{record.id}/cancel"


CASES = [
    Case("GET", f"{API}/me", lambda w: f"{API}/me", ALL),
    Case(
        "POST",
        f"{API}/tokens",
        lambda w: f"{API}/tokens",
        ADMIN,
        201,
        lambda w: {"retailer": unique_name()},
    ),
    Case("GET", f"{API}/retailers", lambda w: f"{API}/retailers", ADMIN_VIEWER),
    Case(
        "GET",
        f"{API}/retailers/{{retailer_id}}",
        lambda w: f"{API}/retailers/{w.retailer_a}",
        ADMIN_VIEWER_SELF,
    ),
    Case(
        "POST",
        f"{API}/retailers/{{retailer_id}}/revoke",
        lambda w: f"{API}/retailers/{w.victim}/revoke",
        ADMIN,
    ),
    Case(
        "POST",
        f"{API}/campaigns",
        lambda w: f"{API}/campaigns",
        ADMIN,
        201,
        lambda w: {"rounds": 2, "epsilon": 1.0, "tasks": ["demand_pricing"]},
    ),
    Case("GET", f"{API}/campaigns", lambda w: f"{API}/campaigns", ALL),
    Case(
        "GET",
        f"{API}/campaigns/{{campaign_id}}",
        lambda w: f"{API}/campaigns/{w.campaign_id}",
        ALL,
    ),
    Case("POST", f"{API}/campaigns/{{campaign_id}}/cancel", _fresh_campaign, ADMIN),
    Case(
        "GET",
        f"{API}/campaigns/{{campaign_id}}/rounds",
        lambda w: f"{API}/campaigns/{w.campaign_id}/rounds?after=0",
        ALL,
    ),
    Case(
        "POST",
        f"{API}/ledger",
        lambda w: f"{API}/ledger",
        RETAILERS,
        201,
        lambda w: {"campaign_id": None, "round": 0, "epsilon_spent": 0.5, "epsilon_cap": 10},
    ),
    Case("GET", f"{API}/ledger", lambda w: f"{API}/ledger", ALL),
    Case(
        "GET",
        f"{API}/retailers/{{retailer_id}}/ledger",
        lambda w: f"{API}/retailers/{w.retailer_a}/ledger",
        ADMIN_VIEWER_SELF,
    ),
    Case("GET", f"{API}/models", lambda w: f"{API}/models", ALL),
    Case(
        "GET",
        f"{API}/models/{{version}}",
        lambda w: f"{API}/models/{w.model_version}",
        ALL,
    ),
    Case(
        "GET",
        f"{API}/models/{{version}}/download",
        lambda w: f"{API}/models/{w.model_version}/download",
        ADMIN_RETAILERS,
    ),
    Case("GET", f"{API}/aggregates", lambda w: f"{API}/aggregates?kind=market", ALL),
    Case("GET", f"{API}/audit", lambda w: f"{API}/audit?after=0&limit=10", ADMIN),
    Case("GET", f"{API}/audit/verify", lambda w: f"{API}/audit/verify", ADMIN),
    Case("GET", f"{API}/status", lambda w: f"{API}/status", ADMIN_VIEWER),
    Case(
        "POST",
        f"{API}/deletion-requests",
        lambda w: f"{API}/deletion-requests",
        RETAILERS,
        201,
        lambda w: {"note": "please delete my shop's records"},
    ),
    Case("GET", f"{API}/deletion-requests", lambda w: f"{API}/deletion-requests", ADMIN),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(Path(tmp_path_factory.mktemp("api-access")))
    yield built
    built.close()


def _call(world: World, case: Case, who: str) -> Any:
    body = case.body(world) if case.body is not None else None
    return world.client.request(
        case.method, case.path(world), json=body, headers=world.headers(who)
    )


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_role_matrix(world: World, case: Case, who: str) -> None:
    response = _call(world, case, who)
    if who in ("anonymous", "garbage"):
        expected = 401
    elif who in case.allowed:
        expected = case.success
    else:
        expected = 403
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if expected in (401, 403):
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 20


def test_matrix_covers_every_endpoint(world: World) -> None:
    """Adding a route without adding it here (or to PUBLIC) fails this test."""
    documented = {
        (method.upper(), path)
        for path, operations in world.app.openapi()["paths"].items()
        for method in operations
    }
    covered = {(case.method, case.template) for case in CASES} | PUBLIC
    assert documented == covered


def test_every_authenticated_operation_declares_the_bearer_scheme(world: World) -> None:
    paths = world.app.openapi()["paths"]
    for case in CASES:
        operation = paths[case.template][case.method.lower()]
        assert operation.get("security") == [{"AccessToken": []}], case.template


def test_retailer_cannot_read_another_retailers_record_or_ledger(world: World) -> None:
    for path in (f"/retailers/{world.retailer_b}", f"/retailers/{world.retailer_b}/ledger"):
        response = world.client.get(API + path, headers=world.headers("retailer"))
        assert response.status_code == 403
        assert f"retailer #{world.retailer_a}" in response.json()["detail"]


def test_retailer_cannot_probe_which_retailer_ids_exist(world: World) -> None:
    """An unknown id is 403 for a retailer (as any other id) and 404 only for admins."""
    as_retailer = world.client.get(f"{API}/retailers/99999", headers=world.headers("retailer"))
    as_admin = world.client.get(f"{API}/retailers/99999", headers=world.headers("admin"))
    assert (as_retailer.status_code, as_admin.status_code) == (403, 404)
    assert as_admin.json()["detail"] == "there is no retailer #99999"


def test_wrong_scheme_or_refresh_token_is_401(world: World) -> None:
    for header in (
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        f"Bearer {world.refresh_tokens['admin']}",  # a refresh token is not an access token
        "Bearer " + "x" * 5000,
    ):
        response = world.client.get(f"{API}/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_me_describes_the_principal(world: World) -> None:
    body = world.client.get(f"{API}/me", headers=world.headers("retailer")).json()
    assert body["role"] == "retailer"
    assert body["retailer_id"] == world.retailer_a
    assert body["name"] == "Shop A"
    admin = world.client.get(f"{API}/me", headers=world.headers("admin")).json()
    assert (admin["role"], admin["retailer_id"], admin["name"]) == ("admin", None, "alice-admin")


def test_wrong_role_says_which_role_is_needed(world: World) -> None:
    response = world.client.get(f"{API}/audit/verify", headers=world.headers("viewer"))
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "this needs the admin role; this credential has the viewer role"
    )
