"""NodeService: status of a prepared node without a coordinator, then real processes.

The real-process test starts a SuperLink (TLS, node authentication), one node with
``NodeService.start()`` (SuperNode in ``--isolation process`` plus the trusted runner, under
the node supervisor), submits a tampered campaign app (refused, visible in
``retail-node status --json``), stops the SuperLink (the node reports "coordinator
unreachable"), starts it again on the same port (the node reconnects) and finally stops the
node, leaving no process that names the node directory.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from coordinator.config import DATABASE_URL_ENV, CoordinatorConfig, free_port
from coordinator.flower_app import APP_DIR
from coordinator.flower_control import FlowerControl
from coordinator.pki import write_pki
from coordinator.superlink import SuperLinkSupervisor
from shared.federation.node import CANONICAL_FILE
from shared.ingest import ImportOptions, import_file
from shared.node_runtime.events import EventKind, read_events
from shared.node_runtime.flower_runner import runner_pid
from shared.node_runtime.service import ENROLL_FIRST, NO_DATA, NodeNotReady, NodeService
from shared.node_runtime.supervisor import CONNECTION_EVENT, SECRET_FILE, read_state
from shared.privacy import PrivacyLedger
from shared.schema import Task
from shared.synthetic import generate_demo
from tests.enrollment_helpers import write_enrollment
from tests.process_helpers import processes_naming, wait_for


def _frame(root: Path) -> object:
    manifest = generate_demo(root / "exports", retailers=1, seed=5, scale=0.3)
    frame = import_file(manifest.retailers[0].path, options=ImportOptions()).frame
    assert frame is not None
    return frame


def _enroll(node_dir: Path, ca_pem: Path, superlink: str) -> str:
    """What `retail-node enroll` stores, written directly; returns the node's public key."""
    return write_enrollment(node_dir, ca_pem, superlink)[1]


# -- without a coordinator -------------------------------------------------------------------


def test_status_of_a_prepared_node_that_is_not_running(tmp_path: Path) -> None:
    service = NodeService(tmp_path / "node")
    with pytest.raises(NodeNotReady, match="enroll first"):
        service.check_ready()
    with pytest.raises(NodeNotReady) as caught:
        service.prepare()
    assert str(caught.value) == NO_DATA

    service.prepare(_frame(tmp_path), "shop-7", (Task.DEMAND_PRICING,))  # type: ignore[arg-type]
    assert (service.node_dir / CANONICAL_FILE).is_file()
    assert service.prepare() == service.node_dir
    with pytest.raises(NodeNotReady) as caught:
        service.check_ready()
    assert str(caught.value) == ENROLL_FIRST

    status = service.status()
    assert not status.enrolled and status.coordinator is None
    assert status.prepared and status.name == "shop-7"
    assert not status.running and not status.connected
    assert status.connection == "not running" and status.pids == {}
    assert status.ledger is not None
    with PrivacyLedger.in_data_dir(service.node_dir) as ledger:
        budget = ledger.status()
    assert status.ledger["spent"] == 0.0
    assert status.ledger["cap"] == budget.total_epsilon == status.ledger["remaining"]
    assert status.consent[Task.DEMAND_PRICING.value] is True
    assert status.consent[Task.BUNDLES.value] is False
    assert status.model_version is None and status.current_run is None
    assert json.loads(json.dumps(status.to_json()))["connection"] == "not running"
    assert service.leave() == f"no node is running in {service.node_dir}"


# -- real processes --------------------------------------------------------------------------


def _tampered_app(root: Path) -> Path:
    """The campaign app with its ClientApp pointed at a module inside the FAB."""
    app_dir = root / "retail-campaign"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = app_dir / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    assert 'clientapp = "shared.federation.client_app:app"' in text
    pyproject.write_text(
        text.replace(
            'clientapp = "shared.federation.client_app:app"', 'clientapp = "evil_clientapp:app"'
        ),
        "utf-8",
    )
    (app_dir / "evil_clientapp.py").write_text(
        "from flwr.client import ClientApp\napp = ClientApp(client_fn=lambda context: None)\n"
    )
    return app_dir


def _superlink(config: CoordinatorConfig, root: Path) -> SuperLinkSupervisor:
    return SuperLinkSupervisor(
        config,
        flwr_home=root / "flwr-home",
        log_path=config.data_dir / "logs" / "superlink.log",
        env={DATABASE_URL_ENV: "sqlite:////nonexistent/progress.sqlite"},
    )


@pytest.mark.slow
def test_a_node_service_connects_refuses_reconnects_and_stops_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from desktop_client.node_cli import main as node_main

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    config = CoordinatorConfig(data_dir=tmp_path / "coordinator", superlink_port=free_port())
    write_pki(config.pki_dir)
    superlink = _superlink(config, tmp_path)
    superlink.start()
    node_dir = tmp_path / "node"
    service = NodeService(node_dir, backoff_max=5.0)
    try:
        public_line = _enroll(node_dir, config.ca_cert, superlink.address)
        service.prepare(_frame(tmp_path), None, ())  # type: ignore[arg-type]  # no consent
        assert superlink.wait_ready(30), superlink.log_path.read_text()
        control = FlowerControl(superlink.address, config.ca_cert)
        control.register_node(public_line, "shop-1")
        timings["superlink up, node registered"] = time.monotonic() - t0

        t1 = time.monotonic()
        service.start()
        logs = node_dir / "run"
        assert wait_for(lambda: service.status().connected, 60), (
            logs / "supernode.log"
        ).read_text()
        timings["start to connected"] = time.monotonic() - t1
        status = service.status()
        assert set(status.pids) == {"owner", "supernode", "runner"}
        assert wait_for(lambda: runner_pid(node_dir) == status.pids["runner"], 30)
        assert ((node_dir / "run" / SECRET_FILE).stat().st_mode & 0o777) == 0o600
        with pytest.raises(NodeNotReady, match="already running"):
            NodeService(node_dir).start()

        t2 = time.monotonic()
        run_id = control.submit_run(
            _tampered_app(tmp_path / "app"),
            {"campaign-id": 66, "rounds": 1, "statistics-epsilon": 0.0, "query-timeout": 60.0},
        )

        def refused() -> bool:
            return any(
                e.kind == EventKind.RUN_REFUSED and e.run_id == run_id
                for e in read_events(node_dir).events
            )

        assert wait_for(refused, 90), (logs / "runner.log").read_text()
        timings["tampered run submitted to refused"] = time.monotonic() - t2
        capsys.readouterr()
        assert node_main(["status", "--json", "--data-dir", str(node_dir)]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["running"] and shown["connection"] == "connected"
        (refusal,) = [r for r in shown["refused_runs"] if r["run_id"] == run_id]
        assert "not a release this node trusts" in refusal["reason"]
        assert shown["coordinator"]["superlink_address"] == superlink.address
        assert shown["ledger"]["spent"] == 0.0
        assert not any(shown["consent"].values())
        control.close()

        t3 = time.monotonic()
        superlink.stop()
        assert wait_for(lambda: service.status().connection == "unreachable", 60), (
            logs / "supernode.log"
        ).read_text()[-3000:]
        timings["superlink stopped to unreachable"] = time.monotonic() - t3
        assert "coordinator unreachable" in service.status().connection_message
        connection = [e for e in read_events(node_dir).events if e.kind == CONNECTION_EVENT]
        assert "coordinator unreachable" in connection[-1].message
        assert connection[-1].data["state"] == "unreachable"

        t4 = time.monotonic()
        superlink = _superlink(config, tmp_path)  # same data dir and port
        superlink.start()
        assert superlink.wait_ready(30)
        assert wait_for(lambda: service.status().connected, 90), (
            logs / "supernode.log"
        ).read_text()[-3000:]
        timings["superlink restarted to reconnected"] = time.monotonic() - t4
        events = read_events(node_dir).events
        states = [e.data.get("state") for e in events if e.kind == CONNECTION_EVENT]
        assert states[-2:] == ["unreachable", "connected"]
    finally:
        t5 = time.monotonic()
        service.stop()
        timings["stop"] = time.monotonic() - t5
        superlink.stop()
        print("\nnode service timings (s):", {k: round(v, 1) for k, v in timings.items()},
              file=sys.stderr)  # fmt: skip
    state = read_state(node_dir)
    assert state is not None and state.state == "stopped"
    assert service.status().connection == "not running"
    assert processes_naming(str(node_dir)) == []
