"""Random request bodies never crash the API or leak internals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.coordinator.test_api_support import API, World, build_world, has_traceback

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
ENROLL_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "token": JSON_SCALARS | st.text(max_size=40).map(lambda s: "rip_e_" + s),
        "public_key": JSON_SCALARS | st.just("ecdsa-sha2-nistp256 AAAA"),
    },
)
LEDGER_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "campaign_id": JSON_SCALARS,
        "round": JSON_SCALARS,
        "epsilon_spent": JSON_SCALARS,
        "epsilon_cap": JSON_SCALARS,
    },
)
RAW_BODIES = st.binary(max_size=60) | st.sampled_from(
    [b"NaN", b'{"round": Infinity}', b"{" * 50, b'{"a": 1e999}', b"\xff\xfe"]
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(Path(tmp_path_factory.mktemp("api-fuzz")))
    yield built
    built.close()


def _check(response: Any) -> None:
    assert response.status_code < 500, response.text
    assert not has_traceback(response.text), response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.sampled_from(["enroll", "ledger"]),
    body=ANY_JSON | ENROLL_BODIES | LEDGER_BODIES,
    raw=st.none() | RAW_BODIES,
)
def test_random_bodies_never_500(world: World, endpoint: str, body: Any, raw: bytes | None) -> None:
    """Feature: retail-intelligence-platform, Property 2: Secure Authentication and Authorization

    Whatever JSON (or non-JSON) is posted to the unauthenticated enrollment endpoint and the
    retailer-only ledger endpoint, the answer is a deliberate 4xx (or 201 for a body that
    happens to be a valid ledger report) with a readable detail, never a 500 or a traceback.
    """
    content = raw if raw is not None else json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if endpoint == "ledger":
        headers |= world.headers("retailer")
    response = world.client.post(f"{API}/{endpoint}", content=content, headers=headers)
    _check(response)
    if endpoint == "enroll":
        assert response.status_code in (400, 403, 422, 429)
    else:
        assert response.status_code in (201, 400, 404, 409, 422)
