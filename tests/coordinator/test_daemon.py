"""The coordinator daemon end to end: ``init``, ``serve`` as a real process (real SuperLink with
TLS and SuperNode authentication on free loopback ports), an admin-made token, a node enrolled
with ``retail-node enroll`` whose key the SuperLink then knows, the token refused the second
time, the audit chain intact, a second daemon refused, JSON logs, and a SIGTERM that leaves
nothing running.

One test on purpose: starting a SuperLink costs seconds and every step builds on the last.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.admin_client import Endpoints
from coordinator.cli import main as coordinator_main
from coordinator.flower_control import FlowerControl
from coordinator.pki import fingerprint
from desktop_client.node_cli import main as node_main
from shared.enrollment import CREDENTIALS_FILE, ENROLLMENT_DIR, PUBLIC_KEY_FILE

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def _processes_mentioning(*texts: str) -> list[str]:
    """Live processes (not this one) whose command line contains any of ``texts``: the
    SuperLink and SuperExec are started with the data dir's paths and the SuperLink port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmd = _cmdline(int(entry.name))
        if any(text in cmd for text in texts) and _alive(int(entry.name)):
            found.append(f"{entry.name}: {cmd}")
    return found


def run_json(capsys: pytest.CaptureFixture[str], main: Any, *argv: str | Path) -> tuple[int, Any]:
    code = main([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, json.loads(out)


@contextlib.contextmanager
def daemon(data_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``retail-coordinator serve`` as a child process; killed (with its own SuperLink
    cleanup skipped) only if the test failed before stopping it."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "serve", "--data-dir", str(data_dir),
             "--log-json"],
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode} before {what}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


def _ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow  # about 15 s; runs in every `make test` (nothing deselects slow)
def test_daemon_enrolls_a_node_with_the_superlink_and_stops_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, float] = {}
    begin = time.monotonic()
    data_dir = tmp_path / "coordinator"
    code, init = run_json(capsys, coordinator_main, "init", "--data-dir", data_dir)
    assert code == 0
    timings["init"] = time.monotonic() - begin

    log = tmp_path / "serve.log"
    started = time.monotonic()
    with daemon(data_dir, log) as proc:
        endpoints = _wait_for("run/endpoints.json", lambda: Endpoints.read(data_dir), proc, log)
        assert endpoints.pid == proc.pid
        assert endpoints.api_url.startswith("http://127.0.0.1:")
        assert endpoints.superlink_address.startswith("127.0.0.1:")
        _wait_for("/readyz 200", lambda: _ready(endpoints.api_url), proc, log)
        timings["serve_ready"] = time.monotonic() - started
        assert proc.stdout is not None
        announced = [proc.stdout.readline().decode().strip() for _ in range(2)]
        assert announced == [
            f"API: {endpoints.api_url}",
            f"SuperLink: {endpoints.superlink_address}",
        ]
        superlink_port = endpoints.superlink_address.rsplit(":", 1)[1]

        # An admin makes a token through the admin CLI (over the API, with the stored credential).
        code, token = run_json(
            capsys, coordinator_main, "token", "create", "--data-dir", data_dir,
            "--retailer", "Corner Shop", "--expires", "1h",
        )  # fmt: skip
        assert code == 0, token

        # The retailer enrolls its node with it.
        node = tmp_path / "node"
        step = time.monotonic()
        code, enrolled = run_json(
            capsys, node_main, "enroll", endpoints.api_url, "--token", token["token"],
            "--data-dir", node, "--key-store", "file",  # a server's node: no password store
        )  # fmt: skip
        timings["enroll"] = time.monotonic() - step
        assert code == 0, enrolled
        assert enrolled["registration"] == "registered"
        assert isinstance(enrolled["flower_node_id"], int)
        assert enrolled["ca_fingerprint"] == init["ca_fingerprint"]
        assert enrolled["superlink_address"] == endpoints.superlink_address
        ca = (data_dir / "pki" / "ca.pem").read_bytes()
        assert fingerprint(ca) == enrolled["ca_fingerprint"]
        stored = json.loads((node / ENROLLMENT_DIR / CREDENTIALS_FILE).read_text())
        assert stored["flower_node_id"] == enrolled["flower_node_id"]

        # The SuperLink itself admits exactly this key under that node id.
        public_line = (node / ENROLLMENT_DIR / PUBLIC_KEY_FILE).read_text().strip()
        with FlowerControl(endpoints.superlink_address, ca) as control:
            assert control.node_id_for_key(public_line) == enrolled["flower_node_id"]

        # The token works once.
        code, refused = run_json(
            capsys, node_main, "enroll", endpoints.api_url, "--token", token["token"],
            "--data-dir", tmp_path / "intruder", "--key-store", "file",
        )  # fmt: skip
        assert code == 1
        assert "already used" in refused["error"]
        assert not (tmp_path / "intruder" / ENROLLMENT_DIR).exists()

        code, retailers = run_json(
            capsys, coordinator_main, "retailers", "list", "--data-dir", data_dir
        )
        assert code == 0
        assert [(r["name"], r["flower_node_id"]) for r in retailers] == [
            ("Corner Shop", enrolled["flower_node_id"])
        ]
        code, status = run_json(capsys, coordinator_main, "status", "--data-dir", data_dir)
        assert code == 0 and status["superlink"]["reachable"] is True
        assert status["retailers"]["registered_with_superlink"] == 1
        code, audit = run_json(capsys, coordinator_main, "audit", "verify", "--data-dir", data_dir)
        assert code == 0 and audit["ok"] is True and audit["problems"] == []
        actions = _audit_actions(data_dir)
        assert {"enrollment.enrolled", "enrollment.refused", "retailer.flower_node_id"} <= actions

        # A second daemon on the same directory is refused (the first holds its lock).
        second = subprocess.run(
            [sys.executable, "-m", "coordinator.cli", "serve", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stderr
        assert "already serves" in second.stderr
        assert Endpoints.read(data_dir) == endpoints

        # SIGTERM: a clean exit, nothing left behind.
        step = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0, log.read_text()
        timings["stop"] = time.monotonic() - step
    assert not Endpoints.path(data_dir).exists()
    assert _processes_mentioning(str(data_dir), f"127.0.0.1:{superlink_port}") == []

    # The admin CLI now says the daemon is not running.
    code, after = run_json(capsys, coordinator_main, "status", "--data-dir", data_dir)
    assert code == 1 and "retail-coordinator serve --data-dir" in after["error"]

    # --log-json: every line the daemon logged is one JSON object.
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("path") == "/api/v1/enroll" and r.get("status") == 201 for r in records)
    timings["total"] = time.monotonic() - begin
    print("daemon test timings (s):", json.dumps({k: round(v, 2) for k, v in timings.items()}))


def test_the_daemon_names_the_progress_sinks_environment_variable() -> None:
    from coordinator.progress import DATA_DIR_ENV
    from coordinator.serve import DATA_DIR_ENV as SERVE_DATA_DIR_ENV

    assert SERVE_DATA_DIR_ENV == DATA_DIR_ENV


def _audit_actions(data_dir: Path) -> set[str]:
    from coordinator.config import load
    from coordinator.runtime import Coordinator

    coord = Coordinator.open(load(data_dir))
    try:
        return {event.action for event in coord.audit.events(limit=1000)}
    finally:
        coord.close()
