"""Campaigns against a real daemon: ``serve`` as a process with its real SuperLink, SuperExec and
ServerApp processes (TLS, SuperNode authentication), driven through the admin CLI and the API.

1. With no node connected, a one-round campaign runs on the SuperLink: the ServerApp's
   participation query finds nobody, records round 1 as "skipped" in the database (through its
   own database sink, in the ``flwr-serverapp`` process), publishes no model, its run finishes,
   and the daemon's poll loop marks the campaign "finished".
2. ``serve`` is SIGKILLed while a campaign's ServerApp is running: its SuperLink family (own
   sessions) survives it. The restarted daemon ends those leftovers (``run/superlink.pids``),
   fails the interrupted campaign with a clear error, starts a new campaign, and a SIGTERM
   leaves no Flower process of this data directory.

One test on purpose: each daemon start costs seconds and the second part reuses the first's
data directory.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from coordinator.admin_client import AdminClient, Endpoints
from coordinator.cli import main as coordinator_main
from coordinator.superlink import PIDS_FILE

T = TypeVar("T")

START_TIMEOUT = 60.0  # serve until /readyz answers
RUN_TIMEOUT = 90.0  # a submitted run until its ServerApp has done its work (imports torch)
STOP_TIMEOUT = 30.0
FLOWER = ("flower-superlink", "flower-superexec", "flwr-serverapp")
KILLED_MESSAGE = "interrupted: the coordinator or its SuperLink restarted"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def flower_processes(data_dir: Path) -> dict[int, str]:
    """Live Flower processes of this data dir (their command lines name its files): pid to
    console script name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = _cmdline(pid)
        names = [Path(a).name for a in args[:2]]
        script = next((n for n in names if n in FLOWER), None)
        if script and any(str(data_dir) in a for a in args) and _alive(pid):
            found[pid] = script
    return found


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any]:
    code = coordinator_main([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, json.loads(out)


@contextlib.contextmanager
def daemon(data_dir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``retail-coordinator serve`` as a child process, SIGTERMed at the end if still there."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "serve", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=Path(__file__).resolve().parents[2],
        )
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


def wait_for(
    what: str,
    check: Callable[[], T | None],
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode} before {what}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def ready_endpoints(data_dir: Path, proc: subprocess.Popen[bytes]) -> Endpoints | None:
    endpoints = Endpoints.read(data_dir)
    if endpoints is None or endpoints.pid != proc.pid:
        return None
    try:
        ok = httpx.get(f"{endpoints.api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return None
    return endpoints if ok else None


def campaign(capsys: pytest.CaptureFixture[str], data_dir: Path, campaign_id: int) -> Any:
    code, rows = cli_json(capsys, "campaign", "list", "--data-dir", data_dir)
    assert code == 0, rows
    return next(row for row in rows if row["id"] == campaign_id)


def rounds(data_dir: Path, campaign_id: int) -> list[dict[str, Any]]:
    with AdminClient(data_dir) as client:
        return list(client.call("GET", f"/campaigns/{campaign_id}/rounds"))


def start_campaign(
    capsys: pytest.CaptureFixture[str], data_dir: Path, rounds: int, epsilon: float
) -> Any:
    code, started = cli_json(
        capsys, "campaign", "start", "--data-dir", data_dir, "--rounds", str(rounds),
        "--epsilon", str(epsilon), "--tasks", "demand_pricing",
    )  # fmt: skip
    assert code == 0, started
    assert started["status"] == "running" and isinstance(started["flower_run_id"], int)
    return started


def audit_ok(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    code, audit = cli_json(capsys, "audit", "verify", "--data-dir", data_dir)
    assert code == 0 and audit["ok"] is True and audit["problems"] == [], audit


def models(data_dir: Path) -> int:
    from coordinator.config import load
    from coordinator.runtime import Coordinator

    coord = Coordinator.open(load(data_dir))
    try:
        return len(coord.models.list())
    finally:
        coord.close()


@pytest.mark.slow  # about 75-95 s on 2 cores: two daemon starts, three ServerApp runs
def test_campaigns_run_on_the_live_superlink_and_survive_a_killed_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, float] = {}
    begin = time.monotonic()
    data_dir = tmp_path / "coordinator"
    code, _ = cli_json(capsys, "init", "--data-dir", data_dir)
    assert code == 0
    log = tmp_path / "serve.log"

    # -- 1. one round with no node connected: skipped, recorded, finished ---------------------
    with daemon(data_dir, log) as first:
        wait_for("/readyz", lambda: ready_endpoints(data_dir, first), first, log, START_TIMEOUT)
        timings["serve_ready"] = time.monotonic() - begin
        step = time.monotonic()
        one = start_campaign(capsys, data_dir, rounds=1, epsilon=1)
        done = wait_for(
            "the campaign finished",
            lambda: (row := campaign(capsys, data_dir, one["id"]))["status"] != "running" and row,
            first,
            log,
            RUN_TIMEOUT,
        )
        timings["one_round_campaign"] = time.monotonic() - step
        assert done["status"] == "finished", done
        assert done["error"] is None and done["finished_at"] is not None
        [row] = rounds(data_dir, one["id"])
        assert (row["round"], row["stage"], row["status"]) == (1, "train", "skipped")
        assert row["participants"] == 0 and row["attempt"] == 1
        assert models(data_dir) == 0  # nothing aggregated: no model published
        audit_ok(capsys, data_dir)

        # -- 2. a long campaign, its ServerApp running, and the daemon SIGKILLed ---------------
        step = time.monotonic()
        # 200 rounds of 0.05: the most a campaign allows; each skipped round takes ~0.1 s.
        long = start_campaign(capsys, data_dir, rounds=200, epsilon=10)
        wait_for("round 1 recorded", lambda: rounds(data_dir, long["id"]), first, log, RUN_TIMEOUT)
        assert "flwr-serverapp" in flower_processes(data_dir).values()
        assert campaign(capsys, data_dir, long["id"])["status"] == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(STOP_TIMEOUT)
        timings["kill_after"] = time.monotonic() - step
        # Its SuperLink family is in sessions of its own: a SIGKILL does not reach it.
        leftovers = flower_processes(data_dir)
        assert "flower-superlink" in leftovers.values(), leftovers
        recorded = json.loads((data_dir / PIDS_FILE).read_text())["pids"]
        assert set(recorded) & set(leftovers)

    # -- the restarted daemon ends the leftovers and fails the interrupted campaign -----------
    step = time.monotonic()
    with daemon(data_dir, log) as second:
        wait_for("/readyz", lambda: ready_endpoints(data_dir, second), second, log, START_TIMEOUT)
        timings["restart_ready"] = time.monotonic() - step
        assert not set(leftovers) & set(flower_processes(data_dir)), "first daemon's Flower left"
        assert not any(_alive(pid) for pid in leftovers)
        failed = wait_for(
            "the interrupted campaign failed",
            lambda: (row := campaign(capsys, data_dir, long["id"]))["status"] != "running" and row,
            second,
            log,
            RUN_TIMEOUT,
        )
        assert failed["status"] == "failed", failed
        # recover() at start-up: the run's ServerApp died with the first daemon's family, so
        # the run is stopped and the campaign failed with the clear "interrupted" message.
        assert KILLED_MESSAGE in failed["error"]
        assert all(r["status"] == "skipped" for r in rounds(data_dir, long["id"]))
        code, rows = cli_json(capsys, "campaign", "list", "--data-dir", data_dir)
        assert code == 0 and [r["id"] for r in rows if r["status"] == "running"] == []
        audit_ok(capsys, data_dir)

        # A new campaign starts on the new SuperLink.
        again = start_campaign(capsys, data_dir, rounds=1, epsilon=1)
        assert again["id"] > long["id"]
        current = set(flower_processes(data_dir))

        step = time.monotonic()
        second.send_signal(signal.SIGTERM)
        assert second.wait(STOP_TIMEOUT) == 0, log.read_text()[-4000:]
        timings["stop"] = time.monotonic() - step
    assert current and not any(_alive(pid) for pid in current)
    assert flower_processes(data_dir) == {}
    assert not (data_dir / PIDS_FILE).exists()
    assert not Endpoints.path(data_dir).exists()
    timings["total"] = time.monotonic() - begin
    print("daemon campaign timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))
