"""The Reports page: pick a format, export, read the plain result (view-only and owner)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.reports import LAST_FOLDER_KEY, ReportsPage
from desktop_client.viewmodels.reports import ExportResult, ReportFormat
from tests.desktop_client.insight_snapshot import load_batches, populate


def make_page(qtbot: QtBot, node: Path, tmp_path: Path, *, viewer: bool = True) -> ReportsPage:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    page = ReportsPage(AppContext(node_dir=node, viewer=viewer, settings=settings))
    qtbot.addWidget(page)
    page.show()
    page.refresh()
    return page


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    populate(root)
    return root


def export(qtbot: QtBot, page: ReportsPage, fmt: ReportFormat, path: Path) -> ExportResult:
    with qtbot.waitSignal(page.export_finished, timeout=60_000) as done:
        page.export_to(fmt, path)
        assert not page.export_button.isEnabled()  # no second export while one runs
    result = done.args[0]
    assert isinstance(result, ExportResult)
    assert page.status.text() == result.message and page.export_button.isEnabled()
    return result


def test_viewer_exports_pdf_html_and_csv(qtbot: QtBot, node: Path, tmp_path: Path) -> None:
    page = make_page(qtbot, node, tmp_path)
    assert page.title == "Reports" and page.export_button.isEnabled()
    out = tmp_path / "out"
    pdf = export(qtbot, page, ReportFormat.PDF, out / "shop")
    assert pdf.ok and pdf.path == out / "shop.pdf" and f"to {pdf.path}" in pdf.message
    assert pdf.path.read_bytes().startswith(b"%PDF-")
    html = export(qtbot, page, ReportFormat.HTML, out / "shop.html")
    assert html.ok and html.path is not None
    assert newest_model("value") in html.path.read_text("utf-8")
    page.format_buttons[ReportFormat.CSV].setChecked(True)
    assert page.kind.isEnabled()
    page.kind.setCurrentIndex(page.kind.findData("bundles"))
    table = export(qtbot, page, ReportFormat.CSV, out / "bundles")
    assert table.ok and table.path == out / "bundles.csv"
    with table.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["bundle_id"] for r in rows] == [
        r["bundle_id"] for r in [b for b in load_batches() if b["kind"] == "bundles"][-1]["rows"]
    ]
    assert page.context.settings.value(LAST_FOLDER_KEY) == str(out)


def newest_model(kind: str) -> str:
    return str([b for b in load_batches() if b["kind"] == kind][-1]["model_version"])


def test_the_table_choice_is_only_for_csv(qtbot: QtBot, node: Path, tmp_path: Path) -> None:
    page = make_page(qtbot, node, tmp_path)
    assert page.selected_format() is ReportFormat.PDF and not page.kind.isEnabled()
    qtbot.mouseClick(page.format_buttons[ReportFormat.CSV], Qt.MouseButton.LeftButton)
    assert page.selected_format() is ReportFormat.CSV and page.kind.isEnabled()
    qtbot.mouseClick(page.format_buttons[ReportFormat.HTML], Qt.MouseButton.LeftButton)
    assert not page.kind.isEnabled()


def test_export_button_asks_for_a_file_then_writes_it(
    qtbot: QtBot, node: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = make_page(qtbot, node, tmp_path)
    qtbot.mouseClick(page.format_buttons[ReportFormat.HTML], Qt.MouseButton.LeftButton)
    asked: list[str] = []

    def dialog(parent: object, caption: str, suggested: str, filters: str) -> tuple[str, str]:
        asked.extend([suggested, filters])
        return str(tmp_path / "chosen"), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    with qtbot.waitSignal(page.export_finished, timeout=60_000) as done:
        qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert asked[0].endswith(".html") and "*.html" in asked[1]
    assert done.args[0].ok and (tmp_path / "chosen.html").exists()


def test_cancelling_the_file_dialog_writes_nothing(
    qtbot: QtBot, node: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = make_page(qtbot, node, tmp_path)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: ("", ""))
    qtbot.mouseClick(page.export_button, Qt.MouseButton.LeftButton)
    assert page.job is None and page.status.text() == ""


def test_empty_store_says_what_to_do(qtbot: QtBot, tmp_path: Path) -> None:
    page = make_page(qtbot, tmp_path / "fresh", tmp_path)
    assert not page.export_button.isEnabled()
    assert "No insights yet" in page.status.text()


def test_a_bad_destination_is_explained(qtbot: QtBot, node: Path, tmp_path: Path) -> None:
    page = make_page(qtbot, node, tmp_path, viewer=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = export(qtbot, page, ReportFormat.PDF, blocker / "report.pdf")
    assert not result.ok and "Could not write" in result.message
    assert "color" in page.status.styleSheet()
