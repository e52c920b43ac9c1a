"""``ConnectViewModel``: the Connect page's steps without Qt widgets or a network.

The coordinator is an ``httpx.MockTransport`` here (the page test uses a real one): what is
checked is the order of the steps, which problem the owner is told first, and how refusals
are put into words.
"""

# ruff: noqa: S106 - made-up tokens and passphrases
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from desktop_client.viewmodels import connect as module
from desktop_client.viewmodels.connect import (
    ConnectError,
    ConnectViewModel,
    EnrollRequest,
    sentence,
)
from shared.enrollment import CREDENTIALS_FILE, ENROLLMENT_DIR, EnrollmentError
from shared.secret_store import KeyringStatus, KeyStore

WORKS = KeyringStatus(True, "test", "works")
BROKEN = KeyringStatus(False, "none", "No secure password store is available on this computer.")


@pytest.fixture
def ca_pem(tmp_path: Path) -> str:
    from coordinator.config import CoordinatorConfig
    from coordinator.pki import write_pki

    config = CoordinatorConfig(data_dir=tmp_path / "coordinator")
    write_pki(config.pki_dir)
    return config.ca_cert.read_text("ascii")


@pytest.fixture
def viewmodel(tmp_path: Path, ca_pem: str) -> ConnectViewModel:
    """A view-model whose coordinator answers GET /api/v1/ca with a real CA."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/api/v1/ca")
        return httpx.Response(200, json={"ca_certificate": ca_pem})

    return ConnectViewModel(tmp_path / "node", transport=httpx.MockTransport(answer))


def _request(**changes: object) -> EnrollRequest:
    fields: dict[str, object] = {
        "address": "http://coordinator.test:8000",
        "token": "rip_e_token",
        "key_store": KeyStore.KEYRING,
    }
    fields.update(changes)
    return EnrollRequest(**fields)  # type: ignore[arg-type]


def test_problems_come_in_the_order_the_owner_fills_the_page(
    viewmodel: ConnectViewModel,
) -> None:
    assert "check the coordinator" in str(viewmodel.problem(_request(), WORKS))
    ca = viewmodel.check("coordinator.test:8000")  # a bare host:port means http
    assert ca.api_url == "http://coordinator.test:8000" and len(ca.fingerprint) == 95
    assert viewmodel.problem(_request(), WORKS) is None
    assert "token" in str(viewmodel.problem(_request(token="  "), WORKS))
    assert viewmodel.problem(_request(), BROKEN) == BROKEN.explanation
    assert "Still checking" in str(viewmodel.problem(_request(), None))
    encrypted = _request(key_store=KeyStore.ENCRYPTED, passphrase="short", confirmation="short")
    assert "at least 8" in str(viewmodel.problem(encrypted, BROKEN))
    mismatch = _request(key_store=KeyStore.ENCRYPTED, passphrase="long enough", confirmation="x")
    assert "differ" in str(viewmodel.problem(mismatch, BROKEN))
    assert viewmodel.problem(_request(key_store=KeyStore.FILE), BROKEN) is None


def test_another_address_needs_a_new_check(viewmodel: ConnectViewModel) -> None:
    viewmodel.check("http://coordinator.test:8000")
    viewmodel.address_changed("http://coordinator.test:8000/")  # the same coordinator
    assert viewmodel.checked is not None
    viewmodel.address_changed("http://coordinator.test:8001")
    assert viewmodel.checked is None
    with pytest.raises(ConnectError, match="check the coordinator"):
        viewmodel.enroll(_request(address="http://coordinator.test:8001"), WORKS)


def test_a_bad_address_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match=r"^'ftp://x' is not an http\(s\) address"):
        ConnectViewModel(tmp_path).check("ftp://x")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            EnrollmentError("enrollment refused: enrollment token already used", status_code=403),
            "The coordinator refused the token (enrollment token already used).",
        ),
        (
            EnrollmentError("the coordinator's CA fingerprint is AA, not the one you were given"),
            "different certificate from the one you confirmed",
        ),
        (
            EnrollmentError("cannot reach the coordinator at x"),
            "Cannot reach the coordinator at x.",
        ),
    ],
)
def test_refusals_in_plain_words(error: EnrollmentError, expected: str) -> None:
    assert expected in module._explain(error)


def test_sentence() -> None:
    assert sentence("the token is empty") == "The token is empty."
    assert sentence("Done!") == "Done!"
    assert sentence("") == ""


@pytest.mark.parametrize(
    ("store", "words"),
    [
        (None, "plain file"),  # an enrollment from before the choice
        ("file", "plain file"),
        ("encrypted", "passphrase"),
        ("keyring", "password store"),
    ],
)
def test_summary_names_the_key_store(tmp_path: Path, store: str | None, words: str) -> None:
    directory = tmp_path / ENROLLMENT_DIR
    directory.mkdir()
    credentials = {
        "api_url": "http://coordinator.test:8000",
        "retailer_id": 4,
        "retailer_name": "Corner Shop",
        "ca_fingerprint": "AA:BB",
        "registration": "registered",
        "access_expires_at": "2026-01-01T00:00:00+00:00",
        "refresh_expires_at": "2026-02-01T00:00:00+00:00",
    }
    if store is not None:
        credentials["key_store"] = store
    (directory / CREDENTIALS_FILE).write_text(json.dumps(credentials))
    summary = ConnectViewModel(tmp_path).summary()
    assert summary is not None
    assert words in summary.key_store
    assert summary.retailer == "Corner Shop (#4)"
    assert summary.registration == "registered with the federation"
