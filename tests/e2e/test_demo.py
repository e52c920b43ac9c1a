"""The README's main command on real processes: ``retail-coordinator demo --json``.

A served coordinator (SuperLink with TLS and SuperNode authentication), five synthetic shops
enrolled with ``retail-node enroll`` and joined with ``retail-node join`` (supervised SuperNode +
trusted runner), one campaign of basket statistics and two DP-SGD rounds through SecAgg+, then
every node's insights. The assertions are on the demo's JSON, on the nodes' own ledgers and on
the processes left behind (none). Interrupting the demo (SIGINT, as Ctrl-C) stops everything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from coordinator.demo.children import processes_under
from shared.node_runtime.events import EventKind, read_events
from shared.privacy import PrivacyLedger

RETAILERS = 5
ROUNDS = 2
EPSILON = 3.0
DEMO_TIMEOUT = 900  # generous: a loaded CI machine; the benchmark reports real wall times


def _demo(workdir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "coordinator.cli", "demo", "--workdir", str(workdir),
        "--retailers", str(RETAILERS), "--rounds", str(ROUNDS), "--epsilon", str(EPSILON),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    workdir = tmp_path_factory.mktemp("demo") / "federation"
    done = subprocess.run(
        _demo(workdir, "--json"), capture_output=True, text=True, timeout=DEMO_TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-6000:]
    return workdir, json.loads(done.stdout), done.stderr


def test_the_campaign_ran_every_round_with_every_shop(
    demo: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, progress = demo
    assert summary["campaign"]["status"] == "finished"
    stages = [(r["stage"], r["round"], r["status"], r["participants"]) for r in summary["rounds"]]
    assert stages[0] == ("statistics", 0, "aggregated", RETAILERS)
    training = [s for s in stages if s[0] != "statistics"]
    assert training == [("train", n, "aggregated", RETAILERS) for n in range(1, ROUNDS + 1)]
    # Progress was shown while it ran, one line per finished round.
    assert "all 5 nodes connected" in progress
    assert f"round {ROUNDS} of {ROUNDS}: aggregated, {RETAILERS} participants" in progress


def test_every_shop_spent_its_budget_once_and_the_mirror_agrees(
    demo: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, _ = demo
    assert len(summary["nodes"]) == RETAILERS
    for node in summary["nodes"]:
        node_dir = Path(node["node_dir"])
        with PrivacyLedger.in_data_dir(node_dir) as ledger:
            status = ledger.status()
        # Statistics (a quarter) plus two training rounds: the campaign's ε, never more (the
        # accountant's calibration may leave a sliver unspent).
        assert 0.98 * EPSILON <= status.spent_epsilon <= EPSILON * (1 + 1e-9)
        assert node["epsilon_spent"] == pytest.approx(status.spent_epsilon)
        assert node["mirrored_epsilon_spent"] == pytest.approx(status.spent_epsilon)
        events = read_events(node_dir).events
        charged = [e for e in events if e.kind == EventKind.EPSILON_CHARGED]
        assert [e.round for e in charged] == list(range(ROUNDS + 1))  # round 0: statistics
        reported = [e.round for e in events if e.kind == EventKind.LEDGER_REPORTED]
        assert reported == list(range(ROUNDS + 1))
        assert sum(e.kind == EventKind.INSIGHTS_REFRESHED for e in events) == 1
        assert not [e for e in events if e.kind == EventKind.RUN_REFUSED]


def test_every_shop_has_its_insights_and_a_report(
    demo: tuple[Path, dict[str, Any], str],
) -> None:
    _, summary, _ = demo
    versions = {node["model_version"] for node in summary["nodes"]}
    assert len(versions) == 1 and None not in versions  # one federated model reached everyone
    for node in summary["nodes"]:
        assert set(node["insight_kinds"]) == {"bundles", "forecast", "pricing", "trends", "value"}
        assert node["federated_wape"] > 0 and node["local_wape"] > 0
        report = Path(node["report"])
        assert report.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_nothing_is_left_running(demo: tuple[Path, dict[str, Any], str]) -> None:
    workdir, _, _ = demo
    assert processes_under(workdir) == []


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    workdir = tmp_path / "interrupted"
    log = tmp_path / "demo.log"
    with log.open("w") as err:
        proc = subprocess.Popen(_demo(workdir), stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 300
        while "joining every node" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        time.sleep(3)  # SuperNodes and runners are starting now
        assert processes_under(workdir), "the demo had nothing running to interrupt"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "every process of the demo was stopped" in log.read_text()
    assert "Traceback" not in log.read_text()
    assert processes_under(workdir) == []
