"""``retail-node enroll`` and ``shared.enrollment``: a node joins a coordinator served on loopback.

The coordinator here is the real API (``create_app``) over a real database and PKI, served by
uvicorn in a thread, without a SuperLink (so registration is "pending"); the daemon test covers
the SuperLink side. Checked: what is stored and with which permissions, the printed CA
fingerprint, refusals with the server's reason (used token, rate limit), an unreachable
coordinator, usage errors, and that nothing half-written is ever left behind. The private key
goes to a test keyring (keyrings.alt's file backend; no Secret Service runs here) unless a test
chooses another store with --key-store.
"""

from __future__ import annotations

import contextlib
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from fastapi import FastAPI

from coordinator.api import create_app
from coordinator.config import CoordinatorConfig, free_port
from coordinator.pki import fingerprint, write_pki
from coordinator.runtime import Coordinator
from desktop_client.node_cli import main
from shared.enrollment import (
    CA_FILE,
    CREDENTIALS_FILE,
    ENROLLMENT_DIR,
    KEY_FILE,
    PUBLIC_KEY_FILE,
    EnrollmentError,
    enroll,
    fetch_coordinator_ca,
    load_enrollment,
    normalise_api_url,
)
from shared.secret_store import (
    ENCRYPTED_KEY_FILE,
    SERVICE,
    KeyStore,
    SecretStoreError,
    load_node_key,
)
from tests.keyring_support import use_no_keyring, use_test_keyring

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


@pytest.fixture(autouse=True)
def test_keyring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Every test here has a working (test) password store unless it removes it."""
    return use_test_keyring(monkeypatch, tmp_path / "keyring-data")


def _private_key(node: Path) -> bytes:
    enrollment = load_enrollment(node)
    assert enrollment is not None
    return load_node_key(enrollment.key_location, None)


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the test API did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Coord:
    url: str
    coord: Coordinator
    fingerprint: str

    def token(self, retailer: str) -> str:
        token, _ = self.coord.enrollment.create_token(retailer, timedelta(hours=1), actor="test")
        return token


def _coordinator(tmp_path: Path, **settings: Any) -> Coordinator:
    config = CoordinatorConfig(data_dir=tmp_path / "coordinator", **settings)
    write_pki(config.pki_dir)
    return Coordinator.open(config)


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coord]:
    coord = _coordinator(tmp_path)
    try:
        with served(create_app(coord)) as url:
            yield Coord(url, coord, fingerprint(coord.config.ca_cert.read_bytes()))
    finally:
        coord.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(node: Path) -> list[str]:
    return sorted(p.name for p in node.iterdir() if p.name.startswith(".")) if node.exists() else []


def test_enroll_stores_key_ca_and_credentials_privately(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str], test_keyring: Any
) -> None:
    node = tmp_path / "node"
    token = coordinator.token("Corner Shop")
    code, out, err = run_cli(
        capsys, "enroll", coordinator.url, "--token", token, "--data-dir", node
    )
    assert code == EXIT_OK, err
    assert coordinator.fingerprint in out  # for the owner to compare with the admin's
    assert "Corner Shop" in out
    assert "registration pending" in out  # no SuperLink in this test
    assert "password store" in out  # auto chose the (test) keyring

    directory = node / ENROLLMENT_DIR
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [CA_FILE, CREDENTIALS_FILE, PUBLIC_KEY_FILE]
    )  # the private key is in the keyring, not in the node directory
    assert _mode(directory) == 0o700
    assert _mode(directory / CREDENTIALS_FILE) == 0o600
    assert _leftovers(node) == []

    # The key pair is an OpenSSH P-384 pair, as Flower's SuperNode authentication loads it.
    saved = json.loads((directory / CREDENTIALS_FILE).read_text())
    assert saved["key_store"] == "keyring" and "PRIVATE KEY" not in json.dumps(saved)
    in_keyring = test_keyring.get_password(SERVICE, f"node-key/{saved['key_id']}")
    assert in_keyring is not None and in_keyring.encode() == _private_key(node)
    private = load_ssh_private_key(_private_key(node), password=None)
    public_line = (directory / PUBLIC_KEY_FILE).read_text().strip()
    assert public_line.startswith("ecdsa-sha2-nistp384 ")
    public = load_ssh_public_key(public_line.encode())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert (directory / CA_FILE).read_bytes() == coordinator.coord.config.ca_cert.read_bytes()

    # The coordinator registered exactly this key for the retailer.
    [retailer] = coordinator.coord.enrollment.list_retailers()
    assert retailer.name == "Corner Shop"
    assert retailer.node_public_key == public_line

    saved = json.loads((directory / CREDENTIALS_FILE).read_text())
    assert saved["api_url"] == coordinator.url
    assert saved["retailer_id"] == retailer.id
    assert saved["ca_fingerprint"] == coordinator.fingerprint
    assert saved["registration"].startswith("pending")
    assert saved["flower_node_id"] is None
    for key in ("access_token", "refresh_token", "taxonomy_version", "superlink_address"):
        assert key in saved
    # The stored access token works against the API.
    me = httpx.get(
        f"{coordinator.url}/api/v1/me",
        headers={"Authorization": f"Bearer {saved['access_token']}"},
    )
    assert me.status_code == 200 and me.json()["retailer_id"] == retailer.id

    loaded = load_enrollment(node)
    assert loaded is not None and loaded.retailer_name == "Corner Shop"


def test_enroll_json_output_has_no_tokens(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = coordinator.token("Json Shop")
    code, out, _ = run_cli(
        capsys, "enroll", coordinator.url, "--token", token, "--data-dir", tmp_path / "n", "--json"
    )
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["ok"] is True
    assert data["retailer_name"] == "Json Shop"
    assert data["ca_fingerprint"] == coordinator.fingerprint
    assert set(data["files"]) == {"ca", "private_key", "public_key", "credentials"}
    assert token not in out and "rip_a_" not in out and "rip_r_" not in out


def test_a_used_token_is_refused_with_the_reason_and_nothing_is_stored(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = coordinator.token("Once Only")
    first = tmp_path / "first"
    assert run_cli(capsys, "enroll", coordinator.url, "--token", token, "--data-dir", first)[0] == 0
    second = tmp_path / "second"
    code, out, err = run_cli(
        capsys, "enroll", coordinator.url, "--token", token, "--data-dir", second
    )
    assert code == EXIT_REFUSED
    assert "already used" in err
    assert "Traceback" not in err
    assert not (second / ENROLLMENT_DIR).exists()
    assert _leftovers(second) == []

    code, out, _ = run_cli(
        capsys, "enroll", coordinator.url, "--token", token, "--data-dir", second, "--json"
    )
    assert code == EXIT_REFUSED
    assert json.loads(out) == {"ok": False, "error": json.loads(out)["error"]}
    assert "already used" in json.loads(out)["error"]


def test_an_enrolled_node_is_not_replaced_without_force(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node"
    assert run_cli(capsys, "enroll", coordinator.url, "--token", coordinator.token("A"),
                   "--data-dir", node)[0] == 0  # fmt: skip
    old_key = _private_key(node)
    old_location = load_enrollment(node).key_location  # type: ignore[union-attr]
    token = coordinator.token("B")
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token", token, "--data-dir", node)
    assert code == EXIT_REFUSED
    assert "already enrolled" in err and "--force" in err
    assert _private_key(node) == old_key
    # The refusal happened before the token was sent: it still works, with --force.
    code, _, err = run_cli(
        capsys, "enroll", coordinator.url, "--token", token, "--data-dir", node, "--force"
    )
    assert code == EXIT_OK, err
    assert _private_key(node) != old_key
    with pytest.raises(SecretStoreError, match="no key for this node"):
        load_node_key(old_location)  # the replaced key left the keyring
    assert (
        json.loads((node / ENROLLMENT_DIR / CREDENTIALS_FILE).read_text())["retailer_name"] == "B"
    )
    assert _leftovers(node) == []


def test_an_unreachable_coordinator_is_a_clear_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node"
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err = run_cli(
        capsys, "enroll", url, "--token", "rip_e_x", "--data-dir", node, "--timeout", "5"
    )
    assert code == EXIT_REFUSED
    assert "cannot reach the coordinator" in err and url in err
    assert "Traceback" not in err
    assert not (node / ENROLLMENT_DIR).exists()
    assert _leftovers(node) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["http://127.0.0.1:9"], "--token"),
        (["ftp://example.org", "--token", "rip_e_x"], "http"),
        (["http://127.0.0.1:9/some/path", "--token", "rip_e_x"], "without a path"),
        (["http://127.0.0.1:9", "--token", "rip_e_x", "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "enroll", *argv, "--data-dir", tmp_path / "n")
    assert code == EXIT_USAGE
    assert message in err
    assert not (tmp_path / "n" / ENROLLMENT_DIR).exists()


def test_missing_url_is_an_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["enroll"])
    assert exit_info.value.code == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


def test_token_from_the_environment(
    coordinator: Coord,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETAIL_NODE_ENROLLMENT_TOKEN", coordinator.token("Env Shop"))
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--data-dir", tmp_path / "n")
    assert code == EXIT_OK, err


def test_rate_limited_enrollment_reports_the_servers_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coord = _coordinator(tmp_path, enrollment_attempts_per_minute=1)
    try:
        with served(create_app(coord)) as url:
            first = run_cli(
                capsys, "enroll", url, "--token", "rip_e_bad", "--data-dir", tmp_path / "a"
            )
            assert first[0] == EXIT_REFUSED and "unknown enrollment token" in first[2]
            code, _, err = run_cli(
                capsys, "enroll", url, "--token", "rip_e_bad", "--data-dir", tmp_path / "b"
            )
    finally:
        coord.close()
    assert code == EXIT_REFUSED
    assert "too many enrollment attempts" in err


def test_expected_fingerprint_mismatch_stores_nothing(coordinator: Coord, tmp_path: Path) -> None:
    node = tmp_path / "node"
    with pytest.raises(EnrollmentError, match="not the one you were given"):
        enroll(
            coordinator.url,
            coordinator.token("Careful Shop"),
            node,
            expected_fingerprint="00:11:22",
        )
    assert not (node / ENROLLMENT_DIR).exists()
    assert _leftovers(node) == []
    # The same fingerprint written differently (lower case, no colons) is accepted.
    result = enroll(
        coordinator.url,
        coordinator.token("Careful Shop 2"),
        node,
        expected_fingerprint=coordinator.fingerprint.replace(":", "").lower(),
    )
    assert result.ca_fingerprint == coordinator.fingerprint


def _mock(handler: Any) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_unusable_answers_are_refused_without_leftovers(coordinator: Coord, tmp_path: Path) -> None:
    node = tmp_path / "node"
    cases: list[tuple[httpx.Response, str]] = [
        (httpx.Response(201, json={"hello": "world"}), "not an enrollment"),
        (httpx.Response(201, text="<html>"), "not an enrollment"),
        (httpx.Response(500, json={"detail": "boom"}), "HTTP 500: boom"),
        (httpx.Response(404, json={"detail": "Not Found"}), "Retail Intelligence coordinator"),
        (httpx.Response(422, json={"detail": [{"msg": "field required"}]}), "field required"),
    ]
    for response, message in cases:
        with pytest.raises(EnrollmentError, match=message):
            enroll(
                "http://coordinator.test",
                "rip_e_x",
                node,
                transport=_mock(lambda _r, r=response: r),
            )
        assert not (node / ENROLLMENT_DIR).exists()
        assert _leftovers(node) == []

    # A CA that does not match the announced fingerprint: tampered in transit.
    real = httpx.post(
        f"{coordinator.url}/api/v1/enroll",
        json={"token": coordinator.token("Probe"), "public_key": _public_line()},
    ).json()
    forged = replace_fingerprint(real)
    with pytest.raises(EnrollmentError, match="does not match the fingerprint"):
        enroll(
            "http://coordinator.test",
            "rip_e_x",
            node,
            transport=_mock(lambda _r: httpx.Response(201, json=forged)),
        )
    assert _leftovers(node) == [] and not (node / ENROLLMENT_DIR).exists()


def replace_fingerprint(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "ca_fingerprint": "AA:" * 31 + "AA"}


def _public_line() -> str:
    from shared.enrollment import generate_keypair

    return generate_keypair()[1]


def test_an_interrupted_write_leaves_the_old_enrollment(
    coordinator: Coord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = tmp_path / "node"
    enroll(coordinator.url, coordinator.token("Stable"), node)
    before = (node / ENROLLMENT_DIR / CREDENTIALS_FILE).read_bytes()

    import shared.enrollment as module

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(module, "_swap_into_place", broken)
    with pytest.raises(OSError, match="disk full"):
        enroll(coordinator.url, coordinator.token("Replacement"), node, force=True)
    assert (node / ENROLLMENT_DIR / CREDENTIALS_FILE).read_bytes() == before
    assert _leftovers(node) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("http://10.0.0.5:8000/", "http://10.0.0.5:8000"),
        ("http://10.0.0.5:8000/api/v1/", "http://10.0.0.5:8000"),
        ("10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("https://coordinator.example", "https://coordinator.example"),
    ],
)
def test_normalise_api_url(given: str, expected: str) -> None:
    assert normalise_api_url(given) == expected


def test_key_store_file_keeps_the_plain_0600_key_file(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = tmp_path / "node"
    code, out, err = run_cli(capsys, "enroll", coordinator.url, "--token",
                             coordinator.token("Server Shop"), "--data-dir", node,
                             "--key-store", "file")  # fmt: skip
    assert code == EXIT_OK, err
    key = node / ENROLLMENT_DIR / KEY_FILE
    assert _mode(key) == 0o600 and str(key) in out
    assert load_ssh_private_key(key.read_bytes(), password=None) is not None
    assert json.loads((node / ENROLLMENT_DIR / CREDENTIALS_FILE).read_text())["key_store"] == "file"


def test_key_store_encrypted_takes_the_passphrase_from_the_environment(
    coordinator: Coord,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = tmp_path / "node"
    monkeypatch.setenv("RETAIL_NODE_PASSPHRASE", "a long passphrase")
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token",
                           coordinator.token("Careful Shop"), "--data-dir", node,
                           "--key-store", "encrypted")  # fmt: skip
    assert code == EXIT_OK, err
    directory = node / ENROLLMENT_DIR
    assert not (directory / KEY_FILE).exists()
    assert _mode(directory / ENCRYPTED_KEY_FILE) == 0o600
    enrollment = load_enrollment(node)
    assert enrollment is not None and enrollment.key_store is KeyStore.ENCRYPTED
    pem = load_node_key(enrollment.key_location, "a long passphrase")
    assert load_ssh_private_key(pem, password=None) is not None


def test_encrypted_without_a_passphrase_or_terminal_is_a_usage_error(
    coordinator: Coord, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = coordinator.token("No Passphrase")
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token", token,
                           "--data-dir", tmp_path / "n", "--key-store", "encrypted")  # fmt: skip
    assert code == EXIT_USAGE  # pytest's stdin is not a terminal: nobody can be asked
    assert "RETAIL_NODE_PASSPHRASE" in err
    assert not (tmp_path / "n" / ENROLLMENT_DIR).exists()


def test_auto_without_a_keyring_explains_the_choices_and_keeps_the_token(
    coordinator: Coord,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_no_keyring(monkeypatch)
    node = tmp_path / "node"
    token = coordinator.token("Headless Shop")
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token", token, "--data-dir", node)
    assert code == EXIT_REFUSED
    assert "No secure password store is available" in err
    assert "--key-store encrypted" in err and "--key-store file" in err
    assert not (node / ENROLLMENT_DIR).exists() and _leftovers(node) == []
    # An explicit keyring choice fails the same way, before the token is sent.
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token", token,
                           "--data-dir", node, "--key-store", "keyring")  # fmt: skip
    assert code == EXIT_REFUSED and "No secure password store" in err
    assert coordinator.coord.enrollment.list_retailers() == []
    # The token was never spent: the owner enrolls with an encrypted file instead.
    monkeypatch.setenv("RETAIL_NODE_PASSPHRASE", "a long passphrase")
    code, _, err = run_cli(capsys, "enroll", coordinator.url, "--token", token,
                           "--data-dir", node, "--key-store", "encrypted")  # fmt: skip
    assert code == EXIT_OK, err


def test_enrollments_from_before_the_key_store_choice_still_load(
    coordinator: Coord, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    enroll(coordinator.url, coordinator.token("Old Shop"), node)  # the library default: file
    path = node / ENROLLMENT_DIR / CREDENTIALS_FILE
    saved = json.loads(path.read_text())
    del saved["key_store"], saved["key_id"]  # what the first releases wrote
    path.write_text(json.dumps(saved))
    loaded = load_enrollment(node)
    assert loaded is not None and loaded.key_store is KeyStore.FILE
    assert load_node_key(loaded.key_location) == (node / ENROLLMENT_DIR / KEY_FILE).read_bytes()


def test_the_ca_can_be_checked_before_a_token_is_spent(coordinator: Coord) -> None:
    ca = fetch_coordinator_ca(coordinator.url + "/api/v1/")
    assert ca.fingerprint == coordinator.fingerprint
    assert ca.api_url == coordinator.url
    assert coordinator.coord.enrollment.list_retailers() == []
    unreachable = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EnrollmentError, match="cannot reach the coordinator"):
        fetch_coordinator_ca(unreachable, timeout=5)
