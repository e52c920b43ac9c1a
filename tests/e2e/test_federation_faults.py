"""Faults on the real federation: six shops on loopback, one of them joined from the desktop app.

One scenario, on purpose (every federation start costs tens of seconds on 2 cores):

1. A node whose key the coordinator never enrolled cannot join: the SuperLink refuses it and
   the node says so; the SuperLink's node list is unchanged.
2. Shop 1 joins from the desktop app (offscreen): its sales file through the Data page, consent
   on the Privacy page, Join on the Training page. Shops 2-6 join with ``retail-node join``;
   shop 6 has lowered its budget cap below one round's cost.
3. A one-round campaign: shop 6 declines for its budget and the round goes on without it; shop 5
   is SIGKILLed (SuperNode and runner) right after it sent its masked update, and SecAgg+ still
   completes the round over five participants. Every shop that trained is charged exactly once;
   shop 5's supervisor brings it back. Shop 1's Insights page then shows the new model's insights.
4. The coordinator is SIGKILLed during a second campaign and restarted: the nodes report it
   unreachable and reconnect, the campaign is failed cleanly ("interrupted"), the audit chain
   verifies, and the coordinator's ledger mirror agrees with every node's own ledger.
5. Two of five (40% > SecAgg+'s 30% margin) are SIGKILLed after training in a third campaign:
   that attempt fails, no model is published from it, and when the round is retried (the two
   back, re-sending the update they already released) or skipped, nobody is charged twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pytestqt.qtbot import QtBot

from coordinator.admin_client import AdminClient
from coordinator.demo.children import COORDINATOR, processes_under
from coordinator.demo.steps import DemoFederation, DemoNode, DemoOptions
from shared.enrollment import load_enrollment
from shared.node_runtime.events import EventKind, read_events
from shared.node_runtime.service import NodeService
from shared.node_runtime.supervisor import read_state
from shared.privacy import PrivacyLedger
from shared.schema import Task

T = TypeVar("T")

# About 10 minutes on 2 cores (a 6-shop federation, two campaigns, a coordinator restart, every
# shop's insights): too long for CI's 20-minute budget beside the rest, so it runs on request.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("RETAIL_E2E_FAULTS") != "1",
        reason="the fault scenario takes ~10 min: run with RETAIL_E2E_FAULTS=1",
    ),
]
CONNECT = 180.0
CAMPAIGN = 600.0


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def events(node: DemoNode, kind: str) -> list[Any]:
    return [e for e in read_events(node.directory).events if e.kind == kind]


def spent(node: DemoNode) -> float:
    with PrivacyLedger.in_data_dir(node.directory) as ledger:
        return ledger.status().spent_epsilon


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFederation]:
    """Coordinator served, six shops enrolled; shops 2-6 joined through ``retail-node join``."""
    workdir = tmp_path_factory.mktemp("faults") / "federation"
    fed = DemoFederation(
        DemoOptions(workdir=workdir, retailers=6, tasks=("demand_pricing",), scale=0.3),
        progress=lambda line: print(line, flush=True),
    )
    try:
        fed._prepare_workdir()
        endpoints = fed._start_coordinator()
        fed._enroll_nodes(endpoints)
        for node in fed.nodes[1:]:
            fed.join_node(node)
        wait_for(
            "shops 2-6 connected",
            lambda: all(NodeService(n.directory).status().connected for n in fed.nodes[1:]),
            CONNECT,
        )
        yield fed
    finally:
        fed._stop_everything()
        assert processes_under(workdir) == []


def test_faults_on_the_real_federation(federation: DemoFederation, qtbot: QtBot) -> None:
    fed = federation
    shop1, shop5, shop6 = fed.nodes[0], fed.nodes[4], fed.nodes[5]

    # -- 1. an unknown key cannot join ----------------------------------------------------------
    stranger = fed.workdir / "nodes" / "stranger"
    shutil.copytree(fed.nodes[1].directory, stranger, ignore=shutil.ignore_patterns("run*"))
    (stranger / "events.jsonl").unlink(missing_ok=True)
    from shared.enrollment import generate_keypair

    private_pem, _ = generate_keypair()  # a key the coordinator never saw
    key = stranger / "enrollment" / "node.key"
    key.write_bytes(private_pem)
    key.chmod(0o600)
    assert load_enrollment(stranger) is not None
    intruder = fed.children.start("stranger-join", fed.node_command("join", "--data-dir", stranger))
    refused = wait_for(
        "the stranger's refusal",
        lambda: [
            e for e in read_events(stranger).events
            if e.kind == "connection" and e.data.get("state") in ("unreachable", "restarting")
        ],
        90,
    )  # fmt: skip
    assert refused
    assert not NodeService(stranger).status().connected
    with AdminClient(fed.coordinator_dir) as admin:
        names = {r["name"] for r in admin.call("GET", "/retailers")}
        assert "stranger" not in names
    fed.children.stop([intruder])

    # -- 2. shop 1 joins from the desktop app ---------------------------------------------------
    from desktop_client.gui.context import AppContext
    from desktop_client.gui.main_window import MainWindow

    window = MainWindow(AppContext(node_dir=shop1.directory))
    qtbot.addWidget(window)
    window.show()
    data_page = page(window, "data")
    with qtbot.waitSignal(data_page.analysis_finished, timeout=120_000):
        data_page.open_path(shop1.export)
    with qtbot.waitSignal(data_page.data_used, timeout=120_000):
        data_page.use_data()
    page(window, "privacy").set_consent(Task.DEMAND_PRICING, True)
    qtbot.waitUntil(lambda: _has_consent(shop1.directory), timeout=60_000)
    training = page(window, "training")
    qtbot.mouseClick(training.join_button, _left())
    qtbot.waitUntil(lambda: NodeService(shop1.directory).status().connected, timeout=180_000)

    # Shop 6 lowers its cap below what one more round costs: it will decline.
    with PrivacyLedger.in_data_dir(shop6.directory) as ledger:
        ledger.lower_cap(0.05)

    # -- 3. one round: a decline for budget, a node killed after its masked update ------------
    with AdminClient(fed.coordinator_dir) as admin:
        campaign = admin.start_campaign(1, 1.0, ["demand_pricing"])
    trained = wait_for("shop 5's masked update", lambda: events(shop5, EventKind.TRAINED), CAMPAIGN)
    assert trained
    state = read_state(shop5.directory)
    assert state is not None and state.supernode is not None and state.runner is not None
    killed = {state.supernode.pid, state.runner.pid}
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    with AdminClient(fed.coordinator_dir) as admin:
        done = wait_for(
            "the campaign's end",
            lambda: (
                (c := admin.call("GET", f"/campaigns/{campaign['id']}"))["status"] != "running"
                and c
            ),
            CAMPAIGN,
            every=1.0,
        )
        rounds = admin.call("GET", f"/campaigns/{campaign['id']}/rounds")
    assert done["status"] == "finished", done
    final = [r for r in rounds if r["round"] == 1][-1]
    assert final["status"] == "aggregated" and final["participants"] == 5, rounds
    print(f"round 1: {final['participants']} participants, {final['dropouts']} dropouts")
    declined = events(shop6, EventKind.DECLINED)
    assert declined and "budget" in declined[-1].message.lower(), declined
    assert spent(shop6) == 0.0
    for node in fed.nodes[:5]:
        charges = events(node, EventKind.EPSILON_CHARGED)
        assert len(charges) == 1, (node.name, charges)  # once, shop 5 included
    # Shop 5's supervisor restarted its processes.
    wait_for("shop 5 back", lambda: NodeService(shop5.directory).status().connected, CONNECT)
    back = read_state(shop5.directory)
    assert back is not None and back.supernode is not None and back.supernode.pid not in killed
    # The desktop app shows shop 1's insights from the new model (refreshed by its runner).
    wait_for("shop 1's insights", lambda: events(shop1, EventKind.INSIGHTS_REFRESHED), 600)
    insights = page(window, "insights")
    insights.refresh()
    model = NodeService(shop1.directory).status().model_version
    assert model is not None
    qtbot.waitUntil(lambda: model in _texts(insights), timeout=60_000)

    # -- 4. the coordinator killed mid-campaign and restarted ---------------------------------
    with AdminClient(fed.coordinator_dir) as admin:
        second = admin.start_campaign(3, 1.5, ["demand_pricing"])
        wait_for(
            "round 1 of the second campaign",
            lambda: admin.call("GET", f"/campaigns/{second['id']}/rounds"),
            CAMPAIGN,
        )
    serve = next(c for c in fed.children.children if c.name == COORDINATOR)
    os.killpg(serve.process.pid, signal.SIGKILL)  # the daemon; its SuperLink family lives on
    serve.process.wait()
    fed.children.children.remove(serve)
    killed_at = datetime.now(UTC)
    restarted_at = time.monotonic()
    fed._start_coordinator()  # ends the killed daemon's SuperLink family; same ports
    wait_for(
        "every node reconnected",
        lambda: all(NodeService(n.directory).status().connected for n in fed.nodes[:5]),
        CONNECT,
    )
    lost = [
        n.name
        for n in fed.nodes[:5]
        if any(
            e.kind == "connection" and e.at > killed_at and e.data.get("state") == "unreachable"
            for e in read_events(n.directory).events
        )
    ]
    assert lost, "no node noticed the coordinator going away"
    print(
        f"nodes reconnected {time.monotonic() - restarted_at:.1f} s after the restart; "
        f"{len(lost)} reported the coordinator unreachable meanwhile"
    )
    with AdminClient(fed.coordinator_dir) as admin:
        failed = wait_for(
            "the interrupted campaign failed",
            lambda: (
                (c := admin.call("GET", f"/campaigns/{second['id']}"))["status"] != "running" and c
            ),
            120,
        )
        assert failed["status"] == "failed" and "interrupted" in failed["error"], failed
        assert admin.audit_verify()["ok"] is True
        mirror = {
            r["retailer_id"]: r["epsilon_spent"] for r in admin.call("GET", "/ledger")["latest"]
        }
    for node in fed.nodes[:5]:
        enrollment = load_enrollment(node.directory)
        assert enrollment is not None
        own = spent(node)
        mirrored = mirror.get(enrollment.retailer_id)
        undelivered = [
            e for e in events(node, EventKind.ERROR) if e.data.get("step") == "ledger_report"
        ]
        # Equal, unless a report was due while the coordinator was down (then it says so).
        assert mirrored == pytest.approx(own) or (undelivered and (mirrored or 0) < own), (
            node.name, own, mirrored,
        )  # fmt: skip

    # -- 5. two of five killed after training: the attempt fails, nobody is charged twice -------
    shops = fed.nodes[:5]
    victims = fed.nodes[3:5]  # shops 4 and 5
    charges_before = {n.name: len(events(n, EventKind.EPSILON_CHARGED)) for n in shops}
    trained_before = {n.name: len(events(n, EventKind.TRAINED)) for n in victims}
    with AdminClient(fed.coordinator_dir) as admin:
        models_before = len(admin.call("GET", "/models"))
        third = admin.start_campaign(1, 0.5, ["demand_pricing"])
    for victim in victims:
        wait_for(
            f"{victim.name}'s masked update",
            lambda v=victim: len(events(v, EventKind.TRAINED)) > trained_before[v.name],
            CAMPAIGN,
        )
    for victim in victims:
        state = read_state(victim.directory)
        assert state is not None and state.supernode is not None and state.runner is not None
        for pid in (state.supernode.pid, state.runner.pid):
            os.kill(pid, signal.SIGKILL)
    with AdminClient(fed.coordinator_dir) as admin:
        ended = wait_for(
            "the third campaign's end",
            lambda: (
                (c := admin.call("GET", f"/campaigns/{third['id']}"))["status"] != "running" and c
            ),
            CAMPAIGN,
            every=1.0,
        )
        attempts = [
            r for r in admin.call("GET", f"/campaigns/{third['id']}/rounds") if r["round"] == 1
        ]
        models_after = len(admin.call("GET", "/models"))
    print(f"two of five killed: {[(a['attempt'], a['status']) for a in attempts]}, {ended}")
    assert attempts and attempts[0]["status"] == "failed", attempts
    aggregated = [a for a in attempts if a["status"] == "aggregated"]
    assert len(aggregated) <= 1
    # A model is published only for an aggregated attempt, never for the failed one.
    assert models_after == models_before + len(aggregated), (models_before, models_after)
    for node in shops:
        new_charges = len(events(node, EventKind.EPSILON_CHARGED)) - charges_before[node.name]
        assert new_charges <= 1, (node.name, new_charges)  # a retry re-sends, never recharges
    for victim in victims:  # they trained and released once: charged exactly once
        assert len(events(victim, EventKind.EPSILON_CHARGED)) == charges_before[victim.name] + 1

    # Shop 1 leaves from the app, as its owner would: its node stops and leaves no process.
    training = page(window, "training")
    qtbot.waitUntil(training.leave_button.isEnabled, timeout=60_000)
    qtbot.mouseClick(training.leave_button, _left())
    wait_for("shop 1 stopped", lambda: not NodeService(shop1.directory).status().running, 120)
    wait_for("no process left for shop 1", lambda: processes_under(shop1.directory) == [], 60)
    window.close()


def page(window: Any, key: str) -> Any:
    """Show a page of the main window the way a person would, and return its widget."""
    window.open_page(key)
    slot = next(s for s in window.slots if s.spec.key == key)
    return slot.ensure_built()


def _has_consent(node_dir: Path) -> bool:
    with PrivacyLedger.in_data_dir(node_dir) as ledger:
        return ledger.has_consent(Task.DEMAND_PRICING)


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def _texts(widget: Any) -> str:
    from PySide6.QtWidgets import QLabel

    return " ".join(label.text() for label in widget.findChildren(QLabel))
