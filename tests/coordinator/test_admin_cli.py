"""``retail-coordinator`` set-up and admin commands: init, credentials, and the API commands.

The admin commands run in-process against the real API (``create_app``) over the data
directory's own database, served by uvicorn in a thread and announced through
``run/endpoints.json`` exactly as the daemon announces itself; only the SuperLink is absent
(the daemon test covers it). Checked: init's refusal and --force, the credential file and its
rotation, duration parsing, the daemon-not-running message, JSON shapes and exit codes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Table, update

from coordinator.admin_client import (
    AdminCredential,
    Endpoints,
    parse_duration,
)
from coordinator.api import create_app
from coordinator.auth import Role
from coordinator.cli import _campaign_tasks, main
from coordinator.config import free_port, load
from coordinator.db import schema as t
from coordinator.pki import fingerprint
from coordinator.runtime import Coordinator
from tests.coordinator.test_storage_support import drop_audit_guards

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any]:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert "Traceback" not in err
    return code, json.loads(out)


@pytest.fixture
def data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "coordinator"
    assert run_cli(capsys, "init", "--data-dir", directory)[0] == EXIT_OK
    return directory


@dataclass
class Daemonless:
    """The API over a data directory, served in a thread and announced in endpoints.json."""

    data_dir: Path
    url: str
    coord: Coordinator


@contextlib.contextmanager
def _served(data_dir: Path) -> Iterator[Daemonless]:
    coord = Coordinator.open(load(data_dir))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(
        uvicorn.Config(create_app(coord), log_config=None, access_log=False, ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    Endpoints(url, "127.0.0.1:1", os.getpid()).write(data_dir)
    try:
        yield Daemonless(data_dir, url, coord)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        coord.close()
        Endpoints.path(data_dir).unlink(missing_ok=True)


@pytest.fixture
def api(data_dir: Path) -> Iterator[Daemonless]:
    with _served(data_dir) as served:
        yield served


# -- init --------------------------------------------------------------------------------------


def test_init_writes_everything_and_prints_the_credential_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "c"
    code, data = run_json(capsys, "init", "--data-dir", directory)
    assert code == EXIT_OK
    assert data["ok"] is True
    assert data["data_dir"] == str(directory)
    assert Path(data["config"]).is_file()
    assert data["ca_fingerprint"] == fingerprint((directory / "pki" / "ca.pem").read_bytes())
    admin = data["admin_credential"]
    assert admin["access_token"].startswith("rip_a_")
    assert admin["refresh_token"].startswith("rip_r_")
    stored = AdminCredential.read(directory)
    assert stored.access_token == admin["access_token"]
    assert stat.S_IMODE(AdminCredential.path(directory).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    coord = Coordinator.open(load(directory))
    try:
        principal = coord.credentials.authenticate(admin["access_token"])
        assert principal is not None and principal.role is Role.ADMIN
        assert coord.audit.verify().ok
    finally:
        coord.close()


def test_init_human_output_shows_fingerprint_and_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "c"
    code, out, _ = run_cli(capsys, "init", "--data-dir", directory)
    assert code == EXIT_OK
    stored = AdminCredential.read(directory)
    assert stored.access_token in out and stored.refresh_token in out
    assert fingerprint((directory / "pki" / "ca.pem").read_bytes()) in out
    assert f"retail-coordinator serve --data-dir {directory}" in out


def test_init_refuses_an_existing_setup_without_force(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_before = (data_dir / "pki" / "ca.pem").read_bytes()
    credential_before = AdminCredential.read(data_dir)
    code, out, err = run_cli(capsys, "init", "--data-dir", data_dir)
    assert code == EXIT_REFUSED
    assert "already holds a coordinator" in err and "--force" in err
    assert out == ""
    assert (data_dir / "pki" / "ca.pem").read_bytes() == ca_before
    assert AdminCredential.read(data_dir) == credential_before

    code, data = run_json(capsys, "init", "--data-dir", data_dir)
    assert code == EXIT_REFUSED and data["ok"] is False and "--force" in data["error"]


def test_init_force_makes_a_new_ca_and_revokes_the_old_admin(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_before = (data_dir / "pki" / "ca.pem").read_bytes()
    old = AdminCredential.read(data_dir)
    code, data = run_json(capsys, "init", "--data-dir", data_dir, "--force")
    assert code == EXIT_OK
    assert (data_dir / "pki" / "ca.pem").read_bytes() != ca_before
    new = AdminCredential.read(data_dir)
    assert new.access_token == data["admin_credential"]["access_token"] != old.access_token
    coord = Coordinator.open(load(data_dir))
    try:
        assert coord.credentials.authenticate(old.access_token) is None
        assert coord.credentials.authenticate(new.access_token) is not None
    finally:
        coord.close()


def test_init_refuses_while_a_daemon_serves_the_directory(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Endpoints("http://127.0.0.1:1", "127.0.0.1:2", os.getpid()).write(data_dir)
    code, _, err = run_cli(capsys, "init", "--data-dir", data_dir, "--force")
    assert code == EXIT_REFUSED and "stop it first" in err


def test_credential_issue_viewer_and_admin(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = AdminCredential.read(data_dir)
    code, viewer = run_json(
        capsys, "credential", "issue", "--data-dir", data_dir, "--role", "viewer", "--name", "ops"
    )
    assert code == EXIT_OK
    assert viewer["role"] == "viewer" and viewer["name"] == "ops" and "file" not in viewer
    assert AdminCredential.read(data_dir) == before  # a viewer does not replace the admin file
    code, admin = run_json(capsys, "credential", "issue", "--data-dir", data_dir)
    assert code == EXIT_OK and admin["file"] == str(AdminCredential.path(data_dir))
    assert AdminCredential.read(data_dir).access_token == admin["access_token"]
    coord = Coordinator.open(load(data_dir))
    try:
        principal = coord.credentials.authenticate(viewer["access_token"])
        assert principal is not None and principal.role is Role.VIEWER
        assert coord.credentials.authenticate(before.access_token) is None  # replaced: revoked
    finally:
        coord.close()


def test_commands_on_an_uninitialised_directory_say_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "serve", "--data-dir", tmp_path / "none")
    assert code == EXIT_REFUSED and "retail-coordinator init" in err
    code, _, err = run_cli(capsys, "status", "--data-dir", tmp_path / "none")
    assert code == EXIT_REFUSED and "retail-coordinator init --data-dir" in err


# -- durations and tasks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1d12h", 129600),
        ("90", 90),
        (" 7D ", 604800),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "d7", "-5m", "1.5h", "0d", "seven days"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_campaign_tasks_accept_the_demand_alias() -> None:
    assert _campaign_tasks("demand,bundles") == ["demand_pricing", "bundles"]
    assert _campaign_tasks("demand_pricing, demand ,forecasting") == [
        "demand_pricing",
        "forecasting",
    ]
    with pytest.raises(ValueError, match="unknown task"):
        _campaign_tasks("demand,telepathy")


def test_usage_errors_exit_2_before_any_request(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "token", "create", "--data-dir", data_dir, "--retailer", "X", "--expires", "soon"
    )
    assert code == EXIT_USAGE and "not a duration" in err
    code, _, err = run_cli(
        capsys, "campaign", "start", "--data-dir", data_dir, "--rounds", "3", "--epsilon", "1",
        "--tasks", "telepathy",
    )  # fmt: skip
    assert code == EXIT_USAGE and "unknown task" in err
    code, _, err = run_cli(
        capsys, "campaign", "start", "--data-dir", data_dir, "--rounds", "0", "--epsilon", "1"
    )
    assert code == EXIT_USAGE and "--rounds" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["token", "create", "--data-dir", str(data_dir)])  # --retailer missing
    assert exit_info.value.code == EXIT_USAGE
    assert "Traceback" not in capsys.readouterr().err


# -- the daemon is not running ----------------------------------------------------------------


def test_no_daemon_is_a_clear_message(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = f"start it with `retail-coordinator serve --data-dir {data_dir}`"
    for argv in (["status"], ["retailers", "list"], ["audit", "verify"], ["campaign", "list"]):
        code, _, err = run_cli(capsys, *argv, "--data-dir", data_dir)
        assert code == EXIT_REFUSED, argv
        assert expected in err, argv
        assert "Traceback" not in err
    code, data = run_json(capsys, "status", "--data-dir", data_dir)
    assert code == EXIT_REFUSED and data["ok"] is False and expected in data["error"]


def test_a_stale_endpoints_file_is_not_running(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Our own pid is alive, but nothing listens on the port: connection refused.
    Endpoints(f"http://127.0.0.1:{free_port()}", "127.0.0.1:1", os.getpid()).write(data_dir)
    code, _, err = run_cli(capsys, "status", "--data-dir", data_dir)
    assert code == EXIT_REFUSED and "is not running" in err and "serve --data-dir" in err
    # A pid that no longer exists.
    Endpoints("http://127.0.0.1:1", "127.0.0.1:1", 2**22 + 12345).write(data_dir)
    code, _, err = run_cli(capsys, "status", "--data-dir", data_dir)
    assert code == EXIT_REFUSED and "is gone" in err


# -- against the API ----------------------------------------------------------------------------


def test_token_create_and_retailers_list_json(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    code, token = run_json(
        capsys, "token", "create", "--data-dir", api.data_dir, "--retailer", "Main  Street",
        "--expires", "2h",
    )  # fmt: skip
    assert code == EXIT_OK
    assert set(token) == {"token", "retailer", "expires_at"}
    assert token["token"].startswith("rip_e_") and token["retailer"] == "Main Street"

    code, retailers = run_json(capsys, "retailers", "list", "--data-dir", api.data_dir)
    assert code == EXIT_OK and retailers == []
    enrolled = httpx.post(
        f"{api.url}/api/v1/enroll",
        json={"token": token["token"], "public_key": _public_key()},
    )
    assert enrolled.status_code == 201
    code, retailers = run_json(capsys, "retailers", "list", "--data-dir", api.data_dir)
    assert code == EXIT_OK
    [retailer] = retailers
    assert retailer["name"] == "Main Street" and retailer["status"] == "active"
    code, out, _ = run_cli(capsys, "retailers", "list", "--data-dir", api.data_dir)
    assert code == EXIT_OK and "Main Street" in out and "pending" in out

    # The same retailer twice: the API's reason, exit 1.
    code, _, err = run_cli(
        capsys, "token", "create", "--data-dir", api.data_dir, "--retailer", "Main Street"
    )
    assert code == EXIT_REFUSED and "already enrolled" in err


def test_token_create_human_output_shows_the_enroll_command(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys,
        "token",
        "create",
        "--data-dir",
        api.data_dir,
        "--retailer",
        "Shop",
        "--expires",
        "1d",
    )
    assert code == EXIT_OK
    assert f"retail-node enroll {api.url} --token rip_e_" in out


def test_status_campaigns_and_audit_json(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    code, status = run_json(capsys, "status", "--data-dir", api.data_dir)
    assert code == EXIT_OK
    assert {"version", "database", "superlink", "retailers", "campaigns"} <= set(status)
    code, out, _ = run_cli(capsys, "status", "--data-dir", api.data_dir)
    assert code == EXIT_OK and api.url in out

    code, campaigns = run_json(capsys, "campaign", "list", "--data-dir", api.data_dir)
    assert code == EXIT_OK and campaigns == []

    # No SuperLink behind this API: starting a campaign is refused (503) with the reason.
    code, data = run_json(
        capsys, "campaign", "start", "--data-dir", api.data_dir, "--rounds", "3",
        "--epsilon", "3", "--tasks", "demand,bundles",
    )  # fmt: skip
    assert code == EXIT_REFUSED and data["ok"] is False and data["error"]

    code, report = run_json(capsys, "audit", "verify", "--data-dir", api.data_dir)
    assert code == EXIT_OK
    assert report["ok"] is True and report["problems"] == [] and report["events"] >= 1
    code, out, _ = run_cli(capsys, "audit", "verify", "--data-dir", api.data_dir)
    assert code == EXIT_OK and "intact" in out


def test_audit_verify_exits_1_and_prints_the_problems_when_tampered(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "token", "create", "--data-dir", api.data_dir, "--retailer", "T")[0] == 0
    drop_audit_guards(api.coord.db)
    events = t.AuditEvent.__table__
    assert isinstance(events, Table)
    with api.coord.db.engine.begin() as connection:
        connection.execute(update(events).where(events.c.seq == 1).values(actor="mallory"))
    code, _, err = run_cli(capsys, "audit", "verify", "--data-dir", api.data_dir)
    assert code == EXIT_REFUSED
    assert "AUDIT LOG BROKEN" in err and "event 1" in err
    code, report = run_json(capsys, "audit", "verify", "--data-dir", api.data_dir)
    assert code == EXIT_REFUSED and report["ok"] is False and report["problems"]


def test_an_expired_access_token_is_refreshed_and_the_file_rotated(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    old = AdminCredential.read(api.data_dir)
    expired = replace(old, access_expires_at="2000-01-01T00:00:00+00:00")
    expired.write(api.data_dir)
    code, _ = run_json(capsys, "status", "--data-dir", api.data_dir)
    assert code == EXIT_OK
    new = AdminCredential.read(api.data_dir)
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token
    assert stat.S_IMODE(AdminCredential.path(api.data_dir).stat().st_mode) == 0o600
    # Rotation: the spent refresh token no longer works.
    spent = httpx.post(f"{api.url}/api/v1/auth/refresh", json={"refresh_token": old.refresh_token})
    assert spent.status_code == 401
    assert run_json(capsys, "status", "--data-dir", api.data_dir)[0] == EXIT_OK


def test_a_rejected_access_token_is_refreshed_once(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file says the access token is valid, but the server does not know it (401).
    stored = AdminCredential.read(api.data_dir)
    replace(stored, access_token="rip_a_" + "x" * 43).write(api.data_dir)
    assert run_json(capsys, "retailers", "list", "--data-dir", api.data_dir)[0] == EXIT_OK
    assert AdminCredential.read(api.data_dir).refresh_token != stored.refresh_token


def test_a_revoked_admin_credential_says_how_to_get_a_new_one(
    api: Daemonless, capsys: pytest.CaptureFixture[str]
) -> None:
    for record in api.coord.credentials.list():
        api.coord.credentials.revoke(record.id)
    code, _, err = run_cli(capsys, "status", "--data-dir", api.data_dir)
    assert code == EXIT_REFUSED
    assert "retail-coordinator credential issue" in err
    AdminCredential.path(api.data_dir).unlink()
    code, _, err = run_cli(capsys, "status", "--data-dir", api.data_dir)
    assert code == EXIT_REFUSED and "not found" in err


def _public_key() -> str:
    from shared.enrollment import generate_keypair

    return generate_keypair()[1]
