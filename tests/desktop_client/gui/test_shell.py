"""The main window: pages in order, built on first show, keyboard navigation, the store
manager's view, settings, and a page that is missing or broken."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLabel, QPushButton
from pytestqt.qtbot import QtBot

from desktop_client.gui.context import AppContext
from desktop_client.gui.main_window import MainWindow
from desktop_client.gui.shell import PageSlot, PageSpec, page_class

OWNER_PAGES = ["Connect", "Data", "Privacy", "Training", "Insights", "Reports"]


@pytest.fixture
def context(tmp_path: Path) -> AppContext:
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return AppContext(node_dir=node_dir, settings=settings)


def _window(qtbot: QtBot, context: AppContext) -> MainWindow:
    window = MainWindow(context)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.slots[window.stack.currentIndex()].built, timeout=30_000)
    return window


def _titles(window: MainWindow) -> list[str]:
    nav = window.navigation
    return [nav.item(row).text() for row in range(nav.count())]


def _close(window: MainWindow) -> None:
    window.close()


def test_pages_in_order_and_only_the_first_is_built(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    assert window.windowTitle().startswith("Retail Intelligence")
    assert _titles(window) == OWNER_PAGES
    assert [slot.built for slot in window.slots] == [True, False, False, False, False, False]
    assert window.navigation.accessibleName() == "Pages"
    assert window.status_label.text() == (
        "Not enrolled: open the Connect page to join a coordinator"
    )
    _close(window)


def test_arrow_keys_move_between_pages(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    window.navigation.setFocus()
    for _ in range(3):
        qtbot.keyClick(window.navigation, Qt.Key.Key_Down)
    assert window.current_key() == "training"
    assert window.stack.currentWidget() is window.slots[3]
    assert window.slots[3].built and window.slots[3].error is None
    assert window.windowTitle() == "Retail Intelligence — Training"
    join = window.findChild(QPushButton, "join")
    assert join is not None and join.isVisible()
    qtbot.keyClick(window.navigation, Qt.Key.Key_Up)
    assert window.current_key() == "privacy"
    _close(window)


def test_go_menu_shortcuts_open_pages(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    qtbot.keyClick(window, Qt.Key.Key_6, Qt.KeyboardModifier.ControlModifier)
    assert window.current_key() == "reports"
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.current_key() == "training"
    _close(window)


def test_a_page_asking_for_another_page_gets_it(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    window.open_page("training")
    window.slots[3].open_page_requested.emit("connect")
    assert window.current_key() == "connect"
    _close(window)


def test_store_manager_view_offers_only_insights_and_reports(
    qtbot: QtBot, context: AppContext
) -> None:
    context.viewer = True
    window = _window(qtbot, context)
    assert _titles(window) == ["Insights", "Reports"]
    assert window.current_key() == "insights"
    assert window.viewer_action is None
    for row in range(window.navigation.count()):
        window.navigation.setCurrentRow(row)
    assert window.findChild(QPushButton, "join") is None
    assert window.findChild(QPushButton, "leave") is None
    assert {slot.spec.key for slot in window.slots} == {"insights", "reports"}
    assert window.status_label.text() == "Store-manager view: read only, works offline"
    _close(window)


def test_the_owner_opens_a_store_manager_window(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    assert window.viewer_action is not None
    window.viewer_action.trigger()
    viewer = window._viewer_windows[-1]
    qtbot.addWidget(viewer)
    qtbot.waitExposed(viewer)
    assert viewer.context.viewer is True and viewer.context.node_dir == context.node_dir
    assert _titles(viewer) == ["Insights", "Reports"]
    assert viewer.windowTitle() == "Retail Intelligence — store manager view"
    assert window.context.viewer is False  # the owner's window is unchanged
    viewer.close()
    _close(window)


def test_the_last_page_and_geometry_are_remembered(qtbot: QtBot, context: AppContext) -> None:
    window = _window(qtbot, context)
    window.open_page("insights")
    window.resize(770, 540)  # within the offscreen 800x600 screen
    window.close()
    again = _window(qtbot, context)
    assert again.current_key() == "insights"
    assert (again.width(), again.height()) == (770, 540)
    _close(again)


def test_importing_a_missing_or_broken_page_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = PageSpec("x", "desktop_client.gui.pages.no_such_page", "XPage", "X", False)
    with pytest.raises(ModuleNotFoundError):
        page_class(missing)
    (tmp_path / "broken_page.py").write_text("import no_such_dependency_xyz\n", "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = PageSpec("y", "broken_page", "YPage", "Y", False)
    with pytest.raises(ModuleNotFoundError) as raised:
        page_class(broken)
    assert raised.value.name == "no_such_dependency_xyz"
    sys.modules.pop("broken_page", None)


def test_a_page_that_cannot_be_built_says_so_in_place(
    qtbot: QtBot, context: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raising_page.py").write_text(
        "class RaisingPage:\n"
        "    def __init__(self, context, parent=None):\n"
        "        raise RuntimeError('the insight store is locked')\n",
        "utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    missing = PageSlot(
        PageSpec("gone", "desktop_client.gui.pages.gone", "GonePage", "Gone", False), context
    )
    raising = PageSlot(PageSpec("r", "raising_page", "RaisingPage", "Raising", False), context)
    for slot in (missing, raising):
        qtbot.addWidget(slot)
        slot.refresh()
    notice = missing.findChild(QLabel, "notice")
    assert notice is not None
    assert notice.text() == (
        "The Gone page could not be opened (ModuleNotFoundError). The other pages still work."
    )
    assert missing.error == "ModuleNotFoundError: No module named 'desktop_client.gui.pages.gone'"
    notice = raising.findChild(QLabel, "notice")
    assert notice is not None
    assert notice.text() == (
        "The Raising page could not be opened (RuntimeError). The other pages still work."
    )
    assert raising.error == "RuntimeError: the insight store is locked"
    sys.modules.pop("raising_page", None)
