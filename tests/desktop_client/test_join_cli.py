"""``retail-node join``, ``leave`` and ``status``: the messages a shop owner sees, and a real
``join`` subprocess against a coordinator that is not there, stopped by ``leave``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.config import free_port
from coordinator.pki import write_pki
from desktop_client.node_cli import main
from shared.node_runtime.service import NodeService
from shared.schema import Task
from shared.synthetic import generate_demo
from tests.enrollment_helpers import write_enrollment
from tests.process_helpers import processes_naming, wait_for


def _enroll(node_dir: Path, ca_pem: Path, superlink: str) -> None:
    """What `retail-node enroll` stores, written directly."""
    write_enrollment(node_dir, ca_pem, superlink, retailer_id=3, retailer_name="corner-shop")


def test_join_without_enrollment_says_enroll_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["join", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "enroll first with `retail-node enroll URL --token T`" in err
    assert "Traceback" not in err


def test_join_without_data_says_how_to_prepare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = write_pki(tmp_path / "pki")
    _enroll(tmp_path / "node", pki.ca_cert, f"127.0.0.1:{free_port()}")
    assert main(["join", "--data-dir", str(tmp_path / "node")]) == 1
    assert "retail-node join --data FILE" in capsys.readouterr().err


def test_join_with_an_encrypted_key_needs_the_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = write_pki(tmp_path / "pki")
    node = tmp_path / "node"
    _enroll(node, pki.ca_cert, f"127.0.0.1:{free_port()}")
    credentials = node / "enrollment" / "credentials.json"
    credentials.write_text(json.dumps({**json.loads(credentials.read_text()),
                                       "key_store": "encrypted"}))  # fmt: skip
    monkeypatch.delenv("RETAIL_NODE_PASSPHRASE", raising=False)
    assert main(["join", "--data-dir", str(node)]) == 1  # stdin is no terminal: nobody to ask
    err = capsys.readouterr().err
    assert "protected by a passphrase" in err and "RETAIL_NODE_PASSPHRASE" in err
    monkeypatch.setenv("RETAIL_NODE_PASSPHRASE", "a long passphrase")
    assert main(["join", "--data-dir", str(node)]) == 1  # now it gets as far as the data
    assert "retail-node join --data FILE" in capsys.readouterr().err


def test_leave_and_status_with_nothing_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leave", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no node is running in {tmp_path.absolute()}"
    assert main(["status", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "enrolled: no" in out and "connection: not running" in out
    assert main(["status", "--json", "--data-dir", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["enrolled"] is False and data["running"] is False and data["ledger"] is None


@pytest.mark.slow
def test_join_runs_until_leave_and_reports_an_unreachable_coordinator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens on the federation port: the node keeps retrying and says so."""
    manifest = generate_demo(tmp_path / "exports", retailers=1, seed=3, scale=0.3)
    pki = write_pki(tmp_path / "pki")
    node_dir = tmp_path / "node"
    _enroll(node_dir, pki.ca_cert, f"127.0.0.1:{free_port()}")
    command = [
        sys.executable,
        "-m",
        "desktop_client.node_cli",
        "join",
        "--data-dir",
        str(node_dir),
        "--data",
        str(manifest.retailers[0].path),
        "--consent",
        "demand_pricing",
    ]
    out_path = tmp_path / "join.out"
    with out_path.open("wb") as out:
        join = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        service = NodeService(node_dir)
        assert wait_for(lambda: service.status().connection == "unreachable", 60), (
            out_path.read_text()
        )
        status = service.status()
        assert status.running and set(status.pids) == {"owner", "supernode", "runner"}
        assert status.pids["owner"] == join.pid
        assert "coordinator unreachable, retrying in" in status.connection_message
        assert status.consent[Task.DEMAND_PRICING.value] and status.name == "corner-shop"
        assert wait_for(lambda: "coordinator unreachable" in out_path.read_text(), 10)

        capsys.readouterr()
        assert main(["leave", "--data-dir", str(node_dir)]) == 0
        assert capsys.readouterr().out.strip() == f"stopped the node in {node_dir}"
        assert join.wait(30) == 0
    finally:
        if join.poll() is None:
            join.send_signal(signal.SIGTERM)
            join.wait(30)
    printed = out_path.read_text()
    assert "prepared" in printed and "consent: demand_pricing" in printed
    assert "left the federation" in printed
    assert processes_naming(str(node_dir)) == []
    assert main(["status", "--data-dir", str(node_dir)]) == 0
    assert "connection: not running" in capsys.readouterr().out
