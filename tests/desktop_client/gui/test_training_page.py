"""The Training page, driven by a real node directory whose event stream the test writes with
the runtime's own writer (the stream is the runtime's public contract with the app)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.pages.training import TrainingPage
from desktop_client.viewmodels.training import LOG_SIZE
from shared.node_runtime.events import EventLog
from tests.desktop_client.training_stream import (
    write_connection,
    write_decline,
    write_round,
    write_running_state,
)


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return AppContext(node_dir=node_dir, settings=settings)


def _page(qtbot: QtBot, context: AppContext) -> TrainingPage:
    page = TrainingPage(context)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    page.refresh()
    return page


def _curves(page: TrainingPage) -> dict[str, tuple[list[float], list[float]]]:
    """What the chart draws, by the name its legend shows."""
    legend = page.chart.getPlotItem().legend
    drawn = {}
    for sample, label in legend.items:
        xs, ys = sample.item.getData()
        drawn[label.text] = (list(xs), list(ys))
    return drawn


def test_rounds_show_as_a_loss_chart_budget_round_and_log(
    qtbot: QtBot, context: AppContext
) -> None:
    log = EventLog(context.node_dir)
    write_connection(log, "connected", "connected to the coordinator at 127.0.0.1:9092")
    write_round(log, 3, 1, loss=0.9, spent=0.8, cap=8.0)
    write_round(log, 3, 2, loss=0.75, spent=1.6, cap=8.0)
    write_round(log, 4, 1, loss=0.7, spent=2.4, cap=8.0)
    page = _page(qtbot, context)
    assert _curves(page) == {"Campaign 3": ([1.0, 2.0], [0.9, 0.75]), "Campaign 4": ([1.0], [0.7])}
    assert page.chart_empty.text() == ""
    assert page.round.text() == "Campaign 4, round 1"
    assert page.budget.text() == "ε 2.40 spent of 8.00 (5.60 left)"
    text = page.log.toPlainText()
    assert "Connected to the coordinator at 127.0.0.1:9092." in text
    assert "Campaign 3, round 2: your update was trained in 2.5 s and sent, masked" in text
    assert page.declines.topLevelItemCount() == 0
    page.shutdown()


def test_the_page_follows_the_stream_while_it_is_shown(qtbot: QtBot, context: AppContext) -> None:
    write_running_state(context.node_dir, "connected", "connected to the coordinator")
    page = _page(qtbot, context)
    assert page.connection.text() == "Connected to the coordinator (connected to the coordinator)"
    assert page.leave_button.isEnabled() and not page.join_button.isEnabled()
    assert page.chart_empty.text() == "No round has finished yet."
    write_round(EventLog(context.node_dir), 9, 1, loss=0.5, spent=1.0)
    qtbot.waitUntil(lambda: page.round.text() == "Campaign 9, round 1", timeout=5000)
    assert _curves(page) == {"Campaign 9": ([1.0], [0.5])}
    assert "new shared model received" in page.log.toPlainText()
    page.shutdown()


def test_declines_are_listed_with_their_reason_and_a_link_to_privacy(
    qtbot: QtBot, context: AppContext
) -> None:
    log = EventLog(context.node_dir)
    write_decline(log, 5, 1, "no consent for demand & pricing")
    write_decline(log, 6, 1, "budget: this round would bring ε to 10.40, above the cap of 10.00")
    page = _page(qtbot, context)
    rows = [
        [page.declines.topLevelItem(i).text(c) for c in range(1, 4)]
        for i in range(page.declines.topLevelItemCount())
    ]
    assert rows == [
        ["6", "1", "Privacy budget: this round would bring ε to 10.40, above the cap of 10.00"],
        ["5", "1", "No consent: no consent for demand & pricing"],
    ]
    assert page.declines_help.isVisible()
    with qtbot.waitSignal(page.open_page_requested) as opened:
        page.declines_help.linkActivated.emit(_href(page.declines_help.text()))
    assert opened.args == ["privacy"]
    page.shutdown()


def test_an_unenrolled_node_is_told_to_enroll_with_a_link_to_connect(
    qtbot: QtBot, context: AppContext
) -> None:
    page = _page(qtbot, context)
    assert page.guidance.isVisible()
    assert "This computer is not connected to a coordinator yet." in page.guidance.text()
    assert "Open the Connect page" in page.guidance.text()
    assert not page.join_button.isEnabled()
    assert page.budget.text() == "Not known yet"
    assert page.round.text() == "No campaign yet"
    with qtbot.waitSignal(page.open_page_requested) as opened:
        page.guidance.linkActivated.emit(_href(page.guidance.text()))
    assert opened.args == ["connect"]
    page.shutdown()


def test_joining_an_unenrolled_node_gives_a_plain_message(
    qtbot: QtBot, context: AppContext
) -> None:
    """Even if Join is reached (e.g. the enrollment vanished after the page drew), the owner
    gets one plain sentence and nothing is started."""
    page = _page(qtbot, context)
    page.join_button.setEnabled(True)  # as drawn before the enrollment disappeared
    qtbot.mouseClick(page.join_button, Qt.MouseButton.LeftButton)
    assert page.notice.isVisible()
    assert page.notice.text() == (
        "This computer is not connected to a coordinator yet. Enroll on the Connect page first."
    )
    assert page.busy.text() == ""
    assert not (context.node_dir / "desktop-join.log").exists()
    page.shutdown()


def test_controls_have_accessible_names_and_tab_order(qtbot: QtBot, context: AppContext) -> None:
    page = _page(qtbot, context)
    for widget in (page.join_button, page.leave_button, page.log, page.declines, page.chart):
        assert widget.accessibleName()
    assert page.join_button.nextInFocusChain() is page.leave_button
    page.shutdown()


def _href(html: str) -> str:
    start = html.index('href="') + len('href="')
    return html[start : html.index('"', start)]


def test_the_log_keeps_the_newest_lines_as_events_come(qtbot: QtBot, context: AppContext) -> None:
    log = EventLog(context.node_dir)
    write_round(log, 1, 1, loss=1.0, spent=0.5)
    page = _page(qtbot, context)
    assert page.log.blockCount() == 5
    for server_round in range(2, 46):  # 44 more rounds: 220 more lines, over the log's 200
        write_round(log, 1, server_round, loss=1.0 / server_round, spent=0.1 * server_round)
    page.poll()
    lines = page.log.toPlainText().splitlines()
    assert len(lines) == LOG_SIZE
    assert lines[-1].endswith(
        "Campaign 1, round 45: new shared model received; its loss on "
        "your held-out sales is 0.0222."
    )
    assert "round 1:" not in page.log.toPlainText()
    write_round(log, 1, 46, loss=0.02, spent=4.7)
    page.poll()
    lines = page.log.toPlainText().splitlines()
    assert len(lines) == LOG_SIZE
    assert "Campaign 1, round 46: the coordinator asks whether you take part." in lines[-5]
    page.shutdown()
