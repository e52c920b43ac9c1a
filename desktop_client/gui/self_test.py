"""``retail-desktop --self-test``: open every page once and say which ones failed.

Why: the installer's smoke test must know the installed app really starts and every page
builds on this machine (Qt plugins, fonts, the node directory), without a person clicking.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QEventLoop

from desktop_client.gui.main_window import MainWindow

SETTLE_MS = 150  # events processed per page after it is shown (timers, first polls)


@dataclass
class SelfTestReport:
    """What the walk saw; ``ok`` only when every page built and refreshed without error."""

    viewer: bool
    pages: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    torch_before_window: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and len(self.pages) > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "viewer": self.viewer,
            "pages": self.pages,
            "errors": self.errors,
            "torch_before_window": self.torch_before_window,
        }


def _settle(milliseconds: int) -> None:
    deadline = QDeadlineTimer(milliseconds)
    while not deadline.hasExpired():
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def walk_pages(window: MainWindow, report: SelfTestReport) -> SelfTestReport:
    """Show each page, let it refresh and process its events; record every error seen."""
    current: list[str] = [""]
    previous = sys.excepthook

    def record(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        key = current[0] or "window"
        text = "".join(traceback.format_exception_only(kind, value)).strip()
        report.errors.setdefault(key, text)
        print("".join(traceback.format_exception(kind, value, tb)), file=sys.stderr)

    hook: Callable[[type[BaseException], BaseException, TracebackType | None], Any] = record
    sys.excepthook = hook
    try:
        for row, slot in enumerate(window.slots):
            current[0] = slot.spec.key
            if window.navigation.currentRow() == row and slot.built:
                slot.refresh()
            else:
                window.navigation.setCurrentRow(row)
                if not slot.built:  # the row was already current: no change signal
                    slot.refresh()
            _settle(SETTLE_MS)
            report.pages.append(slot.spec.key)
            if slot.error is not None:
                report.errors.setdefault(slot.spec.key, slot.error)
    finally:
        sys.excepthook = previous
    return report
