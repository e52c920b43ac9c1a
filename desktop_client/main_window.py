"""Kept importable for older callers: the window lives in ``desktop_client.gui.main_window``."""

from desktop_client.gui.main_window import APP_TITLE, MainWindow

__all__ = ["APP_TITLE", "MainWindow"]
