"""The Insights page driven as a store manager (view-only, offline) and as the owner."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QTableView
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.insights import InsightsPage, KindTab
from desktop_client.viewmodels.insights_qtmodel import SORT_KEY_ROLE
from shared.insights.store import INSIGHTS_FILENAME, InsightStore
from tests.desktop_client.insight_snapshot import load_batches, populate


def make_page(qtbot: QtBot, node: Path, *, viewer: bool, tmp_path: Path) -> InsightsPage:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    page = InsightsPage(AppContext(node_dir=node, viewer=viewer, settings=settings))
    qtbot.addWidget(page)
    page.resize(1100, 800)
    page.show()
    page.refresh()
    return page


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    populate(root)
    return root


def newest(kind: str) -> dict:
    return [b for b in load_batches() if b["kind"] == kind][-1]


def plotted(plot: object) -> list[tuple[str, list[float]]]:
    items = plot.getPlotItem().listDataItems()  # type: ignore[attr-defined]
    return [(item.name() or "", list(item.getData()[1])) for item in items if item.name()]


def test_viewer_reads_every_tab_offline_without_a_refresh_control(
    qtbot: QtBot, node: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the view-only Insights page opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    assert page.title == "Insights"
    assert page.refresh_button is None
    buttons = [b.text().replace("&", "") for b in page.findChildren(QPushButton)]
    assert not any("Refresh" in text for text in buttons)
    assert page.process is None
    for index, tab in enumerate(page.kind_tabs()):
        page.tabs.setCurrentIndex(index)
        assert tab.content.isVisible(), tab.kind
        assert not tab.message.isVisible()
        assert newest(tab.kind)["model_version"] in tab.provenance.text()
        assert newest(tab.kind)["created_at"][:10] in tab.provenance.text()
    assert page.pricing.model.rowCount() == len(newest("pricing")["rows"])
    assert page.bundles.model.rowCount() == len(newest("bundles")["rows"])
    assert page.value.sentence.text() == newest("value")["rows"][0]["message"]
    bars = [i for i in page.value.plot.getPlotItem().items if type(i).__name__ == "BarGraphItem"]
    value_row = newest("value")["rows"][0]
    assert len(bars) == 1
    assert list(bars[0].opts["height"]) == [value_row["local_wape"], value_row["federated_wape"]]


def test_every_control_has_an_accessible_name(qtbot: QtBot, node: Path, tmp_path: Path) -> None:
    page = make_page(qtbot, node, viewer=False, tmp_path=tmp_path)
    for widget in [
        *page.findChildren(QComboBox),
        *page.findChildren(QPushButton),
        *page.findChildren(QTableView),
    ]:
        assert widget.accessibleName(), widget


def test_empty_store_shows_plain_empty_states(qtbot: QtBot, tmp_path: Path) -> None:
    page = make_page(qtbot, tmp_path / "fresh", viewer=True, tmp_path=tmp_path)
    for tab in page.kind_tabs():
        page.tabs.setCurrentWidget(tab)
        assert tab.message.isVisible() and not tab.content.isVisible()
        assert "No " in tab.message.text() and "join a training round" in tab.message.text()
        assert not tab.provenance.isVisible()
        assert not tab.history.isEnabled()
    assert not (tmp_path / "fresh" / INSIGHTS_FILENAME).exists()


def test_selecting_a_pricing_row_redraws_its_curve(
    qtbot: QtBot, node: Path, tmp_path: Path
) -> None:
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    tab = page.pricing
    rows = newest("pricing")["rows"]
    first = tab.curve
    assert first is not None and first.product_id == rows[0]["product_id"]
    tab.table.setFocus()
    qtbot.keyClick(tab.table, Qt.Key.Key_Down)
    second = tab.curve
    assert second is not None and second.product_id == rows[1]["product_id"]
    assert tab.selected_product() == rows[1]["product_id"]
    ((_name, units),) = [p for p in plotted(tab.units_plot) if p[0] == "units"]
    assert units == pytest.approx([u for u in second.units])
    assert rows[1]["product_id"] in tab.units_plot.getPlotItem().titleLabel.text
    # a product whose curve the engine did not store is rebuilt from its row
    stored = {c["product_id"] for c in newest("pricing")["meta"]["curves"]}
    other = next(r["product_id"] for r in rows if r["product_id"] not in stored)
    assert tab.select_product(other)
    assert tab.curve is not None and tab.curve.product_id == other and not tab.curve.stored
    assert "rebuilt" in tab.caption.text()


def test_sorting_the_pricing_table_by_current_price(
    qtbot: QtBot, node: Path, tmp_path: Path
) -> None:
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    view, model = page.pricing.table, page.pricing.model
    engine_order = [r["product_id"] for r in newest("pricing")["rows"]]
    assert [model.row_id(r) for r in range(model.rowCount())] == engine_order
    assert view.horizontalHeader().sortIndicatorSection() == -1
    column = model.table.headers.index("Current price")
    view.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    keys = [model.index(r, column).data(SORT_KEY_ROLE) for r in range(model.rowCount())]
    known = [k for k in keys if k is not None]
    assert known == sorted(known, reverse=True) and len(known) > 1


def test_pricing_history_shows_the_earlier_computation(
    qtbot: QtBot, node: Path, tmp_path: Path
) -> None:
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    tab: KindTab = page.pricing
    assert tab.history.count() == 2 and tab.history.isEnabled()
    tab.history.setFocus()
    qtbot.keyClick(tab.history, Qt.Key.Key_Down)  # the combo box's keyboard way to pick
    assert tab.state.batch is not None and tab.state.batch.model_version == "local-only"
    assert "local-only" in tab.provenance.text()
    earlier = next(b for b in load_batches() if b["kind"] == "pricing")
    column = page.pricing.model.table.headers.index("Recommended price (range)")
    shown = [page.pricing.model.index(r, column).data() for r in range(3)]
    assert shown[0].startswith(f"{earlier['rows'][0]['recommended_price']:,.2f}")


def test_switching_forecast_horizon_and_product(qtbot: QtBot, node: Path, tmp_path: Path) -> None:
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    tab = page.forecast
    page.tabs.setCurrentWidget(tab)
    assert tab.horizon.currentData() == "weekly"
    assert tab.choice.currentText().startswith("Category: ")
    weekly = tab.series
    assert weekly is not None and weekly.horizon == "weekly"
    tab.horizon.setCurrentIndex(tab.horizon.findData("daily"))
    daily = tab.series
    assert daily is not None and daily.horizon == "daily"
    assert daily.choice == weekly.choice and len(daily.predicted) != len(weekly.predicted)
    ((_, drawn),) = plotted(tab.plot)
    assert drawn == pytest.approx(list(daily.predicted))
    fills = [i for i in tab.plot.getPlotItem().items if type(i).__name__ == "FillBetweenItem"]
    assert len(fills) == 1  # the interval band
    product = next(i for i in range(tab.choice.count()) if "Product" in tab.choice.itemText(i))
    tab.choice.setCurrentIndex(product)
    assert tab.series is not None and tab.series.choice.scope == "product"
    assert tab.series.horizon == "daily"  # the chosen horizon is kept
    assert "80% interval" in tab.caption.text()


def test_trends_chart_market_and_own_index_and_list_withheld(
    qtbot: QtBot, node: Path, tmp_path: Path
) -> None:
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    tab = page.trends
    page.tabs.setCurrentWidget(tab)
    names = [name for name, _ in plotted(tab.plot)]
    assert names[0] == "market"
    rows = newest("trends")["rows"]
    withheld = [r for r in rows if r["status"] == "withheld"]
    assert tab.withheld_model.rowCount() == len(withheld)
    if withheld:
        assert tab.withheld_model.index(0, 1).data() == withheld[0]["reason"]
    published = [r for r in rows if r["status"] != "withheld" and r["weeks"]]
    assert tab.category.count() == len(published)
    sold = next(r for r in published if any(v is not None for v in r["own_index"]))
    not_sold = next(r for r in published if all(v is None for v in r["own_index"]))
    tab.category.setFocus()
    tab.category.setCurrentIndex(tab.category.findData(sold["category"]))
    assert [name for name, _ in plotted(tab.plot)] == ["market", "this shop"]
    assert "no sales" not in tab.caption.text()
    tab.category.setCurrentIndex(tab.category.findData(not_sold["category"]))
    assert [name for name, _ in plotted(tab.plot)] == ["market"]
    assert "no sales in this category" in tab.caption.text()


def test_owner_refresh_runs_the_engine_process_and_reports_its_problem(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The owner's node has no imported data: the child process says so in plain words."""
    node = tmp_path / "owner-node"
    node.mkdir()
    page = make_page(qtbot, node, viewer=False, tmp_path=tmp_path)
    assert page.refresh_button is not None and page.refresh_button.isEnabled()
    with qtbot.waitSignal(page.refresh_finished, timeout=120_000) as finished:
        qtbot.mouseClick(page.refresh_button, Qt.MouseButton.LeftButton)
        assert not page.refresh_button.isEnabled()
    ok, message = finished.args
    assert not ok and "no imported sales data" in message
    assert page.status.text() == message and "Traceback" not in message
    assert page.refresh_button.isEnabled()


def test_a_refresh_elsewhere_updates_the_page(qtbot: QtBot, tmp_path: Path) -> None:
    node = tmp_path / "node"
    page = make_page(qtbot, node, viewer=True, tmp_path=tmp_path)
    page.tabs.setCurrentWidget(page.value)
    assert page.value.message.isVisible()
    populate(node, kinds={"value"})
    page.context.signals.insights_changed.emit()
    assert page.value.content.isVisible() and not page.value.message.isVisible()
    with InsightStore.in_data_dir(node, create=False) as store:
        assert store.count() == 1
    assert isinstance(page.value.sentence, QLabel) and page.value.sentence.text()


def test_the_pages_import_neither_torch_nor_pandas() -> None:
    """The window must appear before torch loads, and view-only mode never needs either."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import desktop_client.gui.pages.insights, desktop_client.gui.pages.reports\n"
        "import desktop_client.viewmodels.reports_pdf\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
