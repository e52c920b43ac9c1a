"""The Data page driven as a shop owner would: open, fix the mapping, read the report, use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.data import DataPage
from shared.federation.node import CANONICAL_FILE
from shared.synthetic import generate_demo

WAIT_MS = 60_000  # a hang guard for a loaded machine, not a timing assertion


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realistic German semicolon export (decimal commas, day-first dates)."""
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=5, scale=0.1)
    return manifest.retailers[1].path


@pytest.fixture
def page(qtbot: QtBot, tmp_path: Path) -> DataPage:
    widget = DataPage(AppContext(node_dir=tmp_path / "node"))
    qtbot.addWidget(widget)
    widget.show()
    widget.refresh()
    return widget


def open_and_wait(qtbot: QtBot, page: DataPage, path: Path) -> None:
    with qtbot.waitSignal(page.analysis_finished, timeout=WAIT_MS):
        page.open_path(path)  # what the file dialog's accept calls


def test_open_fix_mapping_filter_and_use(qtbot: QtBot, page: DataPage, export: Path) -> None:
    assert not page.use_button.isEnabled()
    open_and_wait(qtbot, page, export)
    assert "Ready to use" in page.summary_label.text()
    assert "Rows read" in page.summary_label.text()
    assert page.combos["quantity_sold"].currentText() == "Menge"
    rows_shown = page.preview_model.rowCount()
    assert rows_shown > 100 and page.preview_model.columnCount() > 5
    assert page.use_button.isEnabled()

    # The owner says the article number is not in the file: the report says what breaks.
    with qtbot.waitSignal(page.analysis_finished, timeout=WAIT_MS):
        page.combos["product_id"].setCurrentIndex(0)
    assert "Needs fixing" in page.summary_label.text()
    assert export.name in page.problem_label.text()
    assert not page.use_button.isEnabled()
    assert page.tabs.currentIndex() == 1  # the report is brought forward

    # ... and puts it back.
    with qtbot.waitSignal(page.analysis_finished, timeout=WAIT_MS):
        page.combos["product_id"].setCurrentText("Artikelnummer")
    assert "Ready to use" in page.summary_label.text()
    assert page.problem_label.text() == ""

    # The report: warnings (returns) are listed, filterable and sortable by row number.
    total = page.issue_proxy.rowCount()
    assert total > 0
    page.severity_combo.setCurrentIndex(1)  # errors only
    assert page.issue_proxy.rowCount() == 0
    page.severity_combo.setCurrentIndex(2)  # warnings only
    assert page.issue_proxy.rowCount() == total
    qtbot.keyClicks(page.filter_edit, "return")
    returns = page.issue_proxy.rowCount()
    assert 0 < returns <= total
    for row in range(returns):
        assert "return" in page.issue_proxy.index(row, 4).data().lower()
    page.filter_edit.clear()
    page.report_view.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    shown = [page.issue_proxy.index(r, 1).data() for r in range(page.issue_proxy.rowCount())]
    numbers = [int(v) for v in shown if v]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) > 1

    changed: list[bool] = []
    page.context.signals.data_changed.connect(lambda: changed.append(True))
    with qtbot.waitSignal(page.data_used, timeout=WAIT_MS):
        qtbot.mouseClick(page.use_button, Qt.MouseButton.LeftButton)
    assert (page.context.node_dir / CANONICAL_FILE).is_file()
    assert changed == [True]
    assert f"{rows_shown:,}" in page.prepared_label.text()


def test_a_saved_mapping_is_used_next_time(qtbot: QtBot, page: DataPage, export: Path) -> None:
    open_and_wait(qtbot, page, export)
    with qtbot.waitSignal(page.analysis_finished, timeout=WAIT_MS):
        page.combos["unit_cost"].setCurrentIndex(0)  # do not use my purchase prices
    assert "save them" in page.origin_label.text()
    qtbot.mouseClick(page.save_mapping_button, Qt.MouseButton.LeftButton)
    later = DataPage(AppContext(node_dir=page.context.node_dir))
    qtbot.addWidget(later)
    open_and_wait(qtbot, later, export)
    assert "you saved" in later.origin_label.text()
    assert later.combos["unit_cost"].currentIndex() == 0
    assert later.combos["price"].currentText() == "Preis"


def test_dropping_a_file_opens_it(qtbot: QtBot, page: DataPage, export: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(export))])
    drop = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    enter = QDragEnterEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    page.dragEnterEvent(enter)  # Qt's handlers, called as a drag from the file manager would
    assert enter.isAccepted()
    with qtbot.waitSignal(page.analysis_finished, timeout=WAIT_MS):
        page.dropEvent(drop)
    assert page.file_label.text() == str(export)
    assert "Ready to use" in page.summary_label.text()


def test_a_binary_file_gets_a_plain_message(qtbot: QtBot, page: DataPage, tmp_path: Path) -> None:
    bad = tmp_path / "export.csv"
    bad.write_bytes(bytes(range(256)) * 40)
    open_and_wait(qtbot, page, bad)
    message = page.problem_label.text()
    assert str(bad) in message and "CSV" in message and "Traceback" not in message
    assert "could not be read" in page.summary_label.text()
    assert not page.use_button.isEnabled()
    assert page.preview_model.rowCount() == 0


def test_an_unreadable_encoding_gets_a_plain_message(
    qtbot: QtBot, page: DataPage, tmp_path: Path
) -> None:
    bad = tmp_path / "utf16.csv"  # UTF-16 without a byte-order mark: unreadable as text
    bad.write_bytes("SKU,Qty,Price,Date\nA1,1,2.50,2025-01-01\n".encode("utf-16-le"))
    open_and_wait(qtbot, page, bad)
    message = page.problem_label.text()
    assert str(bad) in message and "Export your sales as CSV" in message
    assert not page.use_button.isEnabled()


def test_cancel_mid_import_changes_nothing(qtbot: QtBot, page: DataPage, export: Path) -> None:
    page.open_path(export)
    assert page.cancel_button.isVisible() and page.busy
    with qtbot.waitSignal(page.job_ended, timeout=WAIT_MS) as ended:
        qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["cancelled"]
    assert page.viewmodel.outcome is None
    assert "nothing was changed" in page.status_label.text()
    assert not page.cancel_button.isVisible() and page.open_button.isEnabled()
    assert not (page.context.node_dir / CANONICAL_FILE).exists()


def test_viewer_mode_is_read_only(qtbot: QtBot, tmp_path: Path, export: Path) -> None:
    page = DataPage(AppContext(node_dir=tmp_path / "node", viewer=True))
    qtbot.addWidget(page)
    page.refresh()
    assert page.title == "Data"
    assert not page.open_button.isEnabled() and not page.use_button.isEnabled()
    assert not page.acceptDrops()
    page.open_path(export)
    assert not page.busy and page.viewmodel.outcome is None
    assert not (tmp_path / "node").exists()


def test_a_late_job_result_is_dropped_once_its_page_is_gone(qtbot: QtBot) -> None:
    """A page closed while its background job ran must not get the result (the job's
    callbacks wrap the page's methods, which Qt alone would not disconnect)."""
    import threading

    import shiboken6
    from PySide6.QtCore import QThreadPool
    from PySide6.QtWidgets import QWidget

    from desktop_client.gui.pages.data import BackgroundJob, JobKeeper

    release = threading.Event()
    delivered: list[object] = []
    owner = QWidget()
    job = BackgroundJob(lambda progress, cancel: release.wait(30) and "late")
    job.deliver_to(owner, finished=delivered.append)
    keeper = JobKeeper()
    keeper.start(job)
    shiboken6.delete(owner)  # the page is closed while the job still runs
    release.set()
    assert QThreadPool.globalInstance().waitForDone(30_000)
    qtbot.wait(50)  # let the queued signal reach the GUI thread
    assert job.returned.is_set()
    assert delivered == []

    alive = QWidget()
    job = BackgroundJob(lambda progress, cancel: "on time")
    job.deliver_to(alive, finished=delivered.append)
    with qtbot.waitSignal(job.signals.finished, timeout=30_000):
        keeper.start(job)
    qtbot.wait(50)
    assert delivered == ["on time"]
    alive.deleteLater()
