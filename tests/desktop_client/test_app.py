from __future__ import annotations

import sys

from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop_client.main_window import MainWindow


def test_main_window_opens_and_explains_itself(qtbot: QtBot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle() == "Retail Intelligence"
    welcome = window.findChild(QLabel, "welcome")
    assert welcome is not None
    assert "without your sales data ever leaving this computer" in welcome.text()


def test_starting_the_window_does_not_import_torch(qtbot: QtBot) -> None:
    """The window must appear before torch has loaded (torch is imported lazily)."""
    already = "torch" in sys.modules
    window = MainWindow()
    qtbot.addWidget(window)
    assert already or "torch" not in sys.modules
