"""The Privacy page driven as a shop owner would: consent, budget, cap, export, delete, ask."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.privacy import PrivacyPage
from desktop_client.viewmodels.data_import import DataImportViewModel
from shared.enrollment import CREDENTIALS_FILE, enrollment_dir
from shared.federation.node import CANONICAL_FILE
from shared.privacy import LEDGER_FILENAME, PrivacyLedger, release_id_for
from shared.schema import Task
from shared.synthetic import generate_demo
from tests.coordinator.test_api_support import World, build_world

WAIT_MS = 60_000  # a hang guard for a loaded machine, not a timing assertion


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=5, scale=0.1)
    return manifest.retailers[1].path


def charge(node: Path, run: int, server_round: int) -> None:
    """A committed training release, as the node's runtime records one."""
    with PrivacyLedger.in_data_dir(node) as ledger:
        ledger.grant_consent(Task.DEMAND_PRICING)
        release = release_id_for(run, server_round, Task.DEMAND_PRICING)
        ledger.reserve(release, Task.DEMAND_PRICING, 1.1, 0.05, 40)
        ledger.commit(release)


def make_page(qtbot: QtBot, node: Path, viewer: bool = False) -> PrivacyPage:
    page = PrivacyPage(AppContext(node_dir=node, viewer=viewer))
    qtbot.addWidget(page)
    page.show()
    return page


def refreshed(qtbot: QtBot, page: PrivacyPage) -> str:
    """Show the page and wait for the next-round line (priced in the background)."""
    with qtbot.waitSignal(page.cost_updated, timeout=WAIT_MS) as priced:
        page.refresh()
    return str(priced.args[0])


def test_ticking_consent_changes_the_ledger(qtbot: QtBot, tmp_path: Path) -> None:
    page = make_page(qtbot, tmp_path)
    text = refreshed(qtbot, page)
    assert "unknown until a campaign is offered" in text and "not enrolled" in text
    changed: list[bool] = []
    page.context.signals.consent_changed.connect(lambda: changed.append(True))
    box = page.consent_boxes[Task.BUNDLES]
    assert not box.isChecked()
    with qtbot.waitSignal(page.cost_updated, timeout=WAIT_MS):
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=box.rect().bottomLeft() / 2)
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.has_consent(Task.BUNDLES)
        assert not ledger.has_consent(Task.DEMAND_PRICING)
    assert changed == [True]
    assert "bundle suggestions" in page.message_label.text()
    with qtbot.waitSignal(page.cost_updated, timeout=WAIT_MS):
        box.setChecked(False)  # as Space on the focused box does
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        assert not ledger.has_consent(Task.BUNDLES)


def test_budget_gauge_chart_and_lowering_the_cap(qtbot: QtBot, tmp_path: Path) -> None:
    charge(tmp_path, 4, 1)
    charge(tmp_path, 4, 2)
    page = make_page(qtbot, tmp_path)
    refreshed(qtbot, page)
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        spent = ledger.spent_epsilon()
    assert f"ε spent {spent:.2f}" in page.gauge.text() and "cap 10.00" in page.gauge.text()
    heights = list(page.bars.opts["height"])
    assert len(heights) == 2 and sum(heights) == pytest.approx(spent)
    assert "Run 4, round 2" in page.spending_label.text()
    assert page.cap_spin.minimum() == pytest.approx(round(spent, 2), abs=0.01)
    assert page.cap_spin.maximum() == 10.0  # never above the current cap
    page.cap_spin.clear()
    qtbot.keyClicks(page.cap_spin, "6.5")
    with qtbot.waitSignal(page.cost_updated, timeout=WAIT_MS):
        qtbot.mouseClick(page.cap_button, Qt.MouseButton.LeftButton)
    with PrivacyLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.cap_epsilon == 6.5
    assert "cap 6.50" in page.gauge.text()
    assert page.cap_spin.maximum() == 6.5


def test_export_my_data(qtbot: QtBot, tmp_path: Path, export_file: Path) -> None:
    node = tmp_path / "node"
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(export_file))
    vm.use_data()
    charge(node, 1, 1)
    page = make_page(qtbot, node)
    target = tmp_path / "exports" / "mine.zip"
    with qtbot.waitSignal(page.exported, timeout=WAIT_MS):
        page.export_to(target)  # what the save dialog's accept calls
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
    assert {"data/canonical.csv", "ledger/releases.csv", "consent/current.csv"} <= names
    assert str(target) in page.message_label.text()


def press_when_shown(button_text: str, tick: bool = False) -> None:
    """Answer the next modal message box as the owner would (optionally ticking its box)."""

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        if tick and box.checkBox() is not None:
            box.checkBox().setChecked(True)
        for button in box.buttons():
            if button.text() == button_text:
                button.click()
                return

    QTimer.singleShot(0, answer)


def test_delete_local_copies_after_confirming(
    qtbot: QtBot, tmp_path: Path, export_file: Path
) -> None:
    node = tmp_path / "node"
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(export_file))
    vm.use_data()
    charge(node, 1, 1)
    (enrollment_dir(node)).mkdir()
    (enrollment_dir(node) / CREDENTIALS_FILE).write_text("{}", "utf-8")
    page = make_page(qtbot, node)
    data_changed: list[bool] = []
    page.context.signals.data_changed.connect(lambda: data_changed.append(True))

    press_when_shown("Cancel")
    qtbot.mouseClick(page.erase_button, Qt.MouseButton.LeftButton)
    assert (node / CANONICAL_FILE).exists()  # cancelled: nothing deleted

    press_when_shown("Delete")
    with qtbot.waitSignal(page.erased, timeout=WAIT_MS) as erased:
        qtbot.mouseClick(page.erase_button, Qt.MouseButton.LeftButton)
    assert CANONICAL_FILE in erased.args[0].removed
    assert not (node / CANONICAL_FILE).exists() and not (node / "keys").exists()
    assert (node / LEDGER_FILENAME).exists() and enrollment_dir(node).exists()
    assert data_changed == [True]
    assert "enrollment was kept" in page.message_label.text()


# -- the deletion request against a real coordinator on 127.0.0.1 -----------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    world = build_world(Path(tmp_path_factory.mktemp("privacy-page-api")))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield world, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    world.close()


def test_deletion_request_and_next_round_cost(
    qtbot: QtBot, tmp_path: Path, served: tuple[World, str], export_file: Path
) -> None:
    world, url = served
    node = tmp_path / "node"
    vm = DataImportViewModel(node)
    vm.accept(vm.analyse(export_file))
    vm.use_data()
    enrollment_dir(node).mkdir()
    (enrollment_dir(node) / CREDENTIALS_FILE).write_text(
        json.dumps(
            {
                "api_url": url,
                "access_token": world.tokens["retailer"],
                "refresh_token": world.refresh_tokens["retailer"],
            }
        ),
        "utf-8",
    )
    page = make_page(qtbot, node)
    text = refreshed(qtbot, page)
    assert "without consent" in text  # the running campaign is known; no consent yet
    with qtbot.waitSignal(page.cost_updated, timeout=WAIT_MS) as priced:
        page.consent_boxes[Task.DEMAND_PRICING].setChecked(True)
    assert f"campaign #{world.campaign_id}" in priced.args[0]
    assert "fits your budget" in priced.args[0]

    press_when_shown("&Yes")
    with qtbot.waitSignal(page.deletion_requested, timeout=WAIT_MS) as sent:
        qtbot.mouseClick(page.request_button, Qt.MouseButton.LeftButton)
    assert "recorded" in sent.args[0]
    listed = world.client.get("/api/v1/deletion-requests", headers=world.headers("admin"))
    assert [item["retailer_id"] for item in listed.json()] == [world.retailer_a]


def test_viewer_mode_cannot_change_anything(qtbot: QtBot, tmp_path: Path) -> None:
    page = make_page(qtbot, tmp_path, viewer=True)
    assert page.gauge.text() == "Reading your privacy ledger…"
    with qtbot.waitSignal(page.snapshot_shown, timeout=WAIT_MS):
        page.refresh()
    assert "cap 10.00" in page.gauge.text()
    assert page.title == "Privacy"
    assert not any(box.isEnabled() for box in page.consent_boxes.values())
    assert not page.cap_button.isEnabled() and not page.erase_button.isEnabled()
    assert not page.request_button.isEnabled() and not page.export_button.isEnabled()
    page.set_consent(Task.BUNDLES, True)
    assert not (tmp_path / LEDGER_FILENAME).exists()


def test_the_pages_load_without_torch() -> None:
    """The window must appear before torch loads: the Data and Privacy pages import neither
    torch nor Opacus (the ledger's accountant is loaded on a worker when first needed)."""
    code = (
        "import sys\n"
        "import desktop_client.gui.pages.data, desktop_client.gui.pages.privacy\n"
        "loaded = sorted(m for m in ('torch', 'opacus', 'flwr') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.strip() == ""
