"""A PNG of every page, for people to look at (run under ``xvfb-run`` for real fonts).

Saved in the test's own folder, and also in ``$RETAIL_SCREENSHOT_DIR`` when set:

    RETAIL_SCREENSHOT_DIR=docs/screenshots QT_QPA_PLATFORM=xcb \
        xvfb-run -a pytest tests/desktop_client/gui/test_screenshots.py

Each picture must show something (more than one colour). The node directory holds what a shop
that has trained a while would have: recorded insights and a few rounds in its event stream.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QEventLoop, QSettings
from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.main_window import MainWindow
from shared.node_runtime.events import EventLog
from tests.desktop_client.insight_snapshot import populate
from tests.desktop_client.training_stream import write_connection, write_decline, write_round

SIZE = (1200, 800)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    populate(node_dir)
    log = EventLog(node_dir)
    write_connection(log, "connected", "connected to the coordinator at 127.0.0.1:9092")
    write_decline(log, 11, 1, "no consent for bundles")
    for server_round, loss in enumerate((0.92, 0.81, 0.74, 0.70, 0.68), start=1):
        write_round(log, 12, server_round, loss=loss, spent=0.4 * server_round)
    return node_dir


def _folders(tmp_path: Path) -> list[Path]:
    folders = [tmp_path / "screenshots"]
    extra = os.environ.get("RETAIL_SCREENSHOT_DIR")
    if extra:
        folders.append(Path(extra))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def _settle(milliseconds: int) -> None:
    deadline = QDeadlineTimer(milliseconds)
    while not deadline.hasExpired():
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def _colours(image: QImage, step: int = 7) -> int:
    """Distinct colours on a sampling grid (a blank grab has one)."""
    seen = set()
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            seen.add(image.pixel(x, y))
            if len(seen) > 16:
                return len(seen)
    return len(seen)


def _shoot(qtbot: QtBot, window: MainWindow, folders: list[Path], prefix: str) -> list[Path]:
    saved = []
    for row, slot in enumerate(window.slots):
        window.navigation.setCurrentRow(row)
        qtbot.waitUntil(lambda slot=slot: slot.built, timeout=60_000)
        _settle(1500)  # background reads (insights, status) land and are drawn
        image = window.grab().toImage()
        assert _colours(image) > 1, f"the {slot.spec.key} page is blank"
        name = f"{prefix}{row + 1}-{slot.spec.key}.png"
        for folder in folders:
            assert image.save(str(folder / name)), f"could not write {folder / name}"
        saved.append(folders[0] / name)
    return saved


def test_every_page_has_a_screenshot(qtbot: QtBot, tmp_path: Path, node: Path) -> None:
    folders = _folders(tmp_path)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(AppContext(node_dir=node, settings=settings))
    qtbot.addWidget(window)
    window.resize(*SIZE)
    window.show()
    qtbot.waitExposed(window)
    saved = _shoot(qtbot, window, folders, "owner-")
    assert [p.name for p in saved] == [
        "owner-1-connect.png",
        "owner-2-data.png",
        "owner-3-privacy.png",
        "owner-4-training.png",
        "owner-5-insights.png",
        "owner-6-reports.png",
    ]
    viewer = MainWindow(AppContext(node_dir=node, viewer=True, settings=settings))
    qtbot.addWidget(viewer)
    viewer.resize(*SIZE)
    viewer.show()
    qtbot.waitExposed(viewer)
    saved = _shoot(qtbot, viewer, folders, "viewer-")
    assert [p.name for p in saved] == ["viewer-1-insights.png", "viewer-2-reports.png"]
    for path in saved:
        assert QImage(str(path)).size().width() == SIZE[0]
    viewer.close()
    window.close()
