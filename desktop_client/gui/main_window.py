"""The main window: a list of pages on the left, the chosen page on the right, the node's state
in the status bar.

The window shows before any page is built (see :mod:`desktop_client.gui.shell`); the page to
open first is built right after the window is on screen. The store manager's view
(``context.viewer``) lists only Insights and Reports, so nothing in it can change consent, data
or training; the owner opens one with File → Open store-manager view, or starts the app with
``retail-desktop --viewer`` (e.g. from a desktop shortcut for the manager).
"""

from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtCore import QByteArray, QCoreApplication, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QStackedWidget,
    QWidget,
)

from desktop_client.gui.context import AppContext
from desktop_client.gui.shell import PageSlot, PageSpec, pages_for

APP_TITLE = "Retail Intelligence"
STATUS_SECONDS = 2


def _tr(text: str) -> str:
    return QCoreApplication.translate("MainWindow", text)


class MainWindow(QMainWindow):
    """The app's one window (a second one for the store manager's view, see module doc)."""

    first_shown = Signal(float)  # time.time() when the window was first on screen

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.specs: tuple[PageSpec, ...] = pages_for(context.viewer)
        self._mode = "viewer" if context.viewer else "owner"
        self._shown_once = False
        self._viewer_windows: list[MainWindow] = []
        self.setObjectName("main-window")
        title = APP_TITLE if not context.viewer else _tr("Retail Intelligence — store manager view")
        self.setWindowTitle(title)
        self.resize(1100, 720)
        self.setMinimumSize(QSize(760, 520))

        body = QWidget(self)
        layout = QHBoxLayout(body)
        self.navigation = QListWidget(body)
        self.navigation.setObjectName("navigation")
        self.navigation.setAccessibleName(_tr("Pages"))
        self.navigation.setAccessibleDescription(_tr("Choose a page with the arrow keys"))
        self.navigation.setFixedWidth(170)
        self.navigation.setSpacing(2)
        self.stack = QStackedWidget(body)
        self.stack.setObjectName("pages")
        self.slots: list[PageSlot] = []
        for spec in self.specs:
            item = QListWidgetItem(spec.translated_title(), self.navigation)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, spec.translated_title())
            item.setSizeHint(QSize(150, 36))
            slot = PageSlot(spec, context, self.stack)
            slot.open_page_requested.connect(self.open_page)
            self.stack.addWidget(slot)
            self.slots.append(slot)
        layout.addWidget(self.navigation)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(body)
        self.setTabOrder(self.navigation, self.stack)
        self._build_menus()

        self.status_label = QLabel(self)
        self.status_label.setObjectName("node-status")
        self.status_label.setAccessibleName(_tr("Node status"))
        self.status_label.setContentsMargins(8, 2, 8, 2)
        self.statusBar().addPermanentWidget(self.status_label, 1)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_SECONDS * 1000)
        self._status_timer.timeout.connect(self.update_status)

        self._restore_settings()
        self.navigation.currentRowChanged.connect(self._show_row)

    # -- construction ----------------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu(_tr("&File"))
        self.viewer_action: QAction | None = None
        if not self.context.viewer:
            self.viewer_action = QAction(_tr("Open store-manager view"), self)
            self.viewer_action.setObjectName("open-viewer")
            self.viewer_action.setStatusTip(
                _tr("A second window with Insights and Reports only, which changes nothing")
            )
            self.viewer_action.triggered.connect(self.open_store_manager_view)
            file_menu.addAction(self.viewer_action)
            file_menu.addSeparator()
        quit_action = QAction(_tr("&Quit"), self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        go_menu = self.menuBar().addMenu(_tr("&Go"))
        for row, spec in enumerate(self.specs):
            action = QAction(spec.translated_title(), self)
            action.setShortcut(QKeySequence(f"Ctrl+{row + 1}"))
            action.triggered.connect(lambda _=False, key=spec.key: self.open_page(key))
            go_menu.addAction(action)

    def _restore_settings(self) -> None:
        settings = self.context.settings
        geometry = settings.value(f"{self._mode}/geometry")
        if isinstance(geometry, QByteArray | bytes):
            self.restoreGeometry(QByteArray(geometry))
        last = settings.value(f"{self._mode}/lastPage")
        rows = [spec.key for spec in self.specs]
        row = rows.index(last) if isinstance(last, str) and last in rows else 0
        self.navigation.setCurrentRow(row)
        self.stack.setCurrentIndex(row)

    # -- showing pages -----------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self.first_shown.emit(time.time())
            QTimer.singleShot(0, self._after_first_show)

    def _after_first_show(self) -> None:
        """Build the first page once the window is on screen, then follow the node."""
        self._show_row(self.navigation.currentRow())
        self.update_status()
        self._status_timer.start()

    def _show_row(self, row: int) -> None:
        if not 0 <= row < len(self.slots):
            return
        self.stack.setCurrentIndex(row)
        slot = self.slots[row]
        slot.refresh()
        page = slot.page
        if page is not None and not self.context.viewer:
            title = getattr(page, "title", "") or slot.spec.translated_title()
            self.setWindowTitle(f"{APP_TITLE} — {title}")

    def open_page(self, key: str) -> None:
        """Show the page with this key (pages ask for it through ``open_page_requested``)."""
        for row, spec in enumerate(self.specs):
            if spec.key == key:
                self.navigation.setCurrentRow(row)
                self.navigation.setFocus()
                return

    def current_key(self) -> str:
        return self.specs[self.stack.currentIndex()].key

    def update_status(self) -> None:
        if self.context.viewer:
            text = _tr("Store-manager view: read only, works offline")
        else:
            # imported here: it reads enrollments (httpx, cryptography), not needed to show
            from desktop_client.viewmodels.training import node_summary

            text = node_summary(self.context.node_dir)
        if text != self.status_label.text():
            self.status_label.setText(text)

    # -- the store manager's view ---------------------------------------------------------

    def open_store_manager_view(self) -> MainWindow:
        """A second window on the same node, offering only Insights and Reports."""
        context = replace(self.context, viewer=True)
        window = MainWindow(context)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._viewer_windows.append(window)
        window.destroyed.connect(lambda *_: self._forget_viewer(window))
        window.show()
        return window

    def _forget_viewer(self, window: MainWindow) -> None:
        if window in self._viewer_windows:
            self._viewer_windows.remove(window)

    # -- closing ---------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        settings = self.context.settings
        settings.setValue(f"{self._mode}/geometry", self.saveGeometry())
        settings.setValue(f"{self._mode}/lastPage", self.current_key())
        settings.sync()
        self._status_timer.stop()
        for slot in self.slots:
            shutdown = getattr(slot.page, "shutdown", None)
            if callable(shutdown):
                shutdown()
        super().closeEvent(event)
