"""A real Flower SuperLink under the coordinator's supervisor: TLS, SuperNode authentication,
node registration over the Control API, a submitted campaign run, a crash and restart, and a
stop that leaves no Flower process behind.

One test on purpose: starting a SuperLink costs seconds, and every step builds on the last.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.config import DATABASE_URL_ENV, CoordinatorConfig, free_port
from coordinator.flower_app import APP_DIR
from coordinator.flower_control import FlowerControl, NodeKeyInUse, NodeNotFound
from coordinator.pki import generate_node_keypair, write_pki
from coordinator.superlink import SuperLinkSupervisor, find_executable

DATABASE_URL = "sqlite:////nonexistent/progress-marker.sqlite"


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw if b"=" in entry)
    return {key: value for key, _, value in pairs}


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the SuperLink's port: every
    SuperExec and ServerApp it starts is told the address)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and text in _cmdline(int(entry.name))
        and _alive(int(entry.name))
    ]


def _wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@contextlib.contextmanager
def _supernode(
    address: str, ca: Path, key: Path, data: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        str(find_executable("flower-supernode")),
        "--superlink",
        address,
        "--root-certificates",
        str(ca),
        "--auth-supernode-private-key",
        str(key),
        "--node-config",
        f'data-path="{data}"',
        "--port",
        str(free_port()),
    ]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    env["FLWR_HOME"] = str(data.parent / "supernode-home")
    # The SuperNode starts `flower-superexec` by name: the venv's bin must be on PATH even when
    # the tests run as .venv/bin/pytest without an activated venv (as CI does).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def config(tmp_path: Path) -> CoordinatorConfig:
    config = CoordinatorConfig(data_dir=tmp_path / "coordinator", superlink_port=free_port())
    write_pki(config.pki_dir)
    return config


@pytest.mark.slow  # about 35 s; runs in every `make test` (nothing deselects slow)
def test_supervised_superlink_registers_runs_restarts_and_stops_clean(
    config: CoordinatorConfig, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    supervisor = SuperLinkSupervisor(
        config,
        flwr_home=tmp_path / "flwr-home",
        log_path=config.data_dir / "logs" / "superlink.log",
        env={DATABASE_URL_ENV: DATABASE_URL},
    )
    port_marker = f"127.0.0.1:{config.superlink_port}"
    started = time.monotonic()
    supervisor.start()
    try:
        assert supervisor.wait_ready(30), supervisor.log_path.read_text()
        timings["start to /health 200"] = time.monotonic() - started
        assert supervisor.address == port_marker
        assert supervisor.healthy()
        first_pid = supervisor.pid
        assert first_pid is not None

        # Extra environment reaches the SuperLink (and so what it starts).
        assert _environ(first_pid)[DATABASE_URL_ENV] == DATABASE_URL
        assert _environ(first_pid)["FLWR_HOME"] == str(tmp_path / "flwr-home")

        with FlowerControl(supervisor.address, config.ca_cert) as control:
            # -- registration ----------------------------------------------------------------
            private_pem, public_line = generate_node_keypair()
            key_file = tmp_path / "node.key"
            key_file.write_bytes(private_pem)
            key_file.chmod(0o600)
            t0 = time.monotonic()
            node_id = control.register_node(public_line, "shop-1")
            timings["register node key"] = time.monotonic() - t0
            assert node_id > 0
            nodes = {n.node_id: n for n in control.list_nodes()}
            assert nodes[node_id].name == "shop-1"
            assert nodes[node_id].status == "registered"
            with pytest.raises(NodeKeyInUse):
                control.register_node(public_line, "shop-1 again")
            assert control.node_id_for_key(public_line) == node_id
            _, revoked_line = generate_node_keypair()
            revoked = control.register_node(revoked_line, "shop-2")
            control.unregister_node(revoked)
            assert {n.node_id: n.status for n in control.list_nodes()}[revoked] == "unregistered"
            assert control.node_id_for_key(revoked_line) is None
            with pytest.raises(NodeNotFound):
                control.unregister_node(12345)

            # -- a SuperNode with that key and the CA is admitted, while a campaign run -----
            # -- completes and our ServerApp reports through its progress sink ------------
            node_data = tmp_path / "node-data"
            node_data.mkdir()
            with _supernode(
                supervisor.address,
                config.ca_cert,
                key_file,
                node_data,
                tmp_path / "supernode.log",
            ):
                t0 = time.monotonic()
                finished_run = control.submit_run(
                    APP_DIR,
                    {
                        "campaign-id": 41,
                        "rounds": 1,
                        "query-timeout": 1.0,
                        "statistics-epsilon": 0.0,
                    },
                )
                timings["submit run"] = time.monotonic() - t0
                info = control.run_info(finished_run)
                assert info.fab_id == "retail-intelligence/retail-campaign"
                online = _wait_for(
                    lambda: any(
                        n.node_id == node_id and n.status == "online" for n in control.list_nodes()
                    ),
                    20,
                    0.3,
                )
                assert online, (tmp_path / "supernode.log").read_text()
                timings["SuperNode start to online"] = time.monotonic() - t0
                assert _wait_for(lambda: control.run_info(finished_run).finished, 60, 0.5), (
                    supervisor.log_path.read_text()
                )
                timings["submit to run finished"] = time.monotonic() - t0
            assert control.run_status(finished_run) == "finished:completed"
            logs, _ = control.run_logs(finished_run)
            assert "campaign 41 round 1 attempt 1 (train)" in logs, logs
            assert "campaign 41 model:" in logs, logs

            # -- a second run: its ServerApp process gets the coordinator's environment -----
            def serverapps() -> set[int]:
                return {pid for pid in supervisor.family() if "flwr-serverapp" in _cmdline(pid)}

            def serverapp() -> int | None:
                return min(serverapps() - earlier, default=None)

            earlier = serverapps()  # the finished run's may still be exiting
            t0 = time.monotonic()
            run_id = control.submit_run(APP_DIR, {"campaign-id": 42, "rounds": 1})

            assert _wait_for(lambda: serverapp() is not None, 30), supervisor.log_path.read_text()
            timings["submit to ServerApp process"] = time.monotonic() - t0
            serverapp_pid = serverapp()
            assert serverapp_pid is not None
            assert _environ(serverapp_pid)[DATABASE_URL_ENV] == DATABASE_URL
            assert _wait_for(lambda: control.run_status(run_id) == "running", 10)

            # -- crash: SIGKILL the SuperLink mid-run; it comes back, nothing is orphaned ---
            old_family = supervisor.family()
            assert first_pid in old_family
            assert len(old_family) >= 3  # SuperLink, SuperExec, ServerApp
            t0 = time.monotonic()
            os.kill(first_pid, signal.SIGKILL)
            assert _wait_for(lambda: supervisor.restarts == 1, 20)
            assert supervisor.wait_ready(30), supervisor.log_path.read_text()
            timings["SIGKILL to healthy again"] = time.monotonic() - t0
            assert supervisor.pid not in (None, first_pid)
            assert _wait_for(lambda: not any(_alive(pid) for pid in old_family), 10), [
                (pid, _cmdline(pid)) for pid in old_family if _alive(pid)
            ]
            # state survived: the node key is still registered
            assert node_id in {n.node_id for n in control.list_nodes()}
            assert supervisor.restarts == 1

        # -- stop: no Flower process of this SuperLink is left -------------------------------
        final_family = supervisor.family()
        t0 = time.monotonic()
        supervisor.stop()
        timings["stop"] = time.monotonic() - t0
    finally:
        supervisor.stop()
        print("\nSuperLink timings:", {k: round(v, 2) for k, v in timings.items()}, file=sys.stderr)

    assert not any(_alive(pid) for pid in final_family | old_family)
    assert _processes_mentioning(port_marker) == []
    assert not supervisor.healthy()
    assert "supervisor: starting" in supervisor.log_path.read_text()
