"""The app's pages, and building one only when it is first shown.

Why lazily: a page may import pandas or pyqtgraph and read the node directory; building all six
before the window appears would make a shop owner wait for screens they may not open. Each
stack position holds a :class:`PageSlot` that builds its page on first show; a page that cannot
be built shows why instead of taking the window down.
"""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop_client.gui.context import AppContext

log = logging.getLogger(__name__)


def QT_TRANSLATE_NOOP(context: str, text: str) -> str:
    """Marks ``text`` for translation; translated where it is shown."""
    return text


@dataclass(frozen=True)
class PageSpec:
    """Where a page lives; ``title`` is the source text, translated in context "Pages"."""

    key: str
    module: str
    class_name: str
    title: str
    changes_node: bool  # consent, data or training: not offered in the store manager's view

    def translated_title(self) -> str:
        return QCoreApplication.translate("Pages", self.title)


PAGES: tuple[PageSpec, ...] = (
    PageSpec(
        "connect",
        "desktop_client.gui.pages.connect",
        "ConnectPage",
        QT_TRANSLATE_NOOP("Pages", "Connect"),
        True,
    ),
    PageSpec(
        "data",
        "desktop_client.gui.pages.data",
        "DataPage",
        QT_TRANSLATE_NOOP("Pages", "Data"),
        True,
    ),
    PageSpec(
        "privacy",
        "desktop_client.gui.pages.privacy",
        "PrivacyPage",
        QT_TRANSLATE_NOOP("Pages", "Privacy"),
        True,
    ),
    PageSpec(
        "training",
        "desktop_client.gui.pages.training",
        "TrainingPage",
        QT_TRANSLATE_NOOP("Pages", "Training"),
        True,
    ),
    PageSpec(
        "insights",
        "desktop_client.gui.pages.insights",
        "InsightsPage",
        QT_TRANSLATE_NOOP("Pages", "Insights"),
        False,
    ),
    PageSpec(
        "reports",
        "desktop_client.gui.pages.reports",
        "ReportsPage",
        QT_TRANSLATE_NOOP("Pages", "Reports"),
        False,
    ),
)


def pages_for(viewer: bool) -> tuple[PageSpec, ...]:
    """The store manager's view offers only the pages that change nothing on the node."""
    return tuple(spec for spec in PAGES if not (viewer and spec.changes_node))


class Page(Protocol):
    """The page contract (see ``desktop_client.gui.context``)."""

    @property
    def title(self) -> str: ...

    def refresh(self) -> None: ...


PageFactory = Callable[[AppContext, QWidget | None], QWidget]


def page_class(spec: PageSpec) -> PageFactory:
    """Import the page's class (every page ships with the app: an import error is a defect,
    shown in place of the page by :class:`PageSlot`)."""
    module = importlib.import_module(spec.module)
    return cast(PageFactory, getattr(module, spec.class_name))


class PageSlot(QWidget):
    """One position of the window's stack: builds its page the first time it is shown."""

    open_page_requested = Signal(str)

    def __init__(self, spec: PageSpec, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.context = context
        self.page: QWidget | None = None
        self.error: str | None = None  # why the page could not be built or refreshed
        self.setObjectName(f"slot-{spec.key}")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    @property
    def built(self) -> bool:
        return self.page is not None

    def ensure_built(self) -> QWidget:
        """The page, built now if it was not yet (a placeholder saying why when it cannot be)."""
        if self.page is not None:
            return self.page
        try:
            cls = page_class(self.spec)
            page = cls(self.context, self)
        except Exception as exc:  # a broken page must not take the window down
            log.error("could not build the %s page:\n%s", self.spec.key, traceback.format_exc())
            self.error = f"{type(exc).__name__}: {exc}"
            page = _Notice(
                QCoreApplication.translate(
                    "Shell",
                    "The {title} page could not be opened ({error}). The other pages still work.",
                ).format(title=self.spec.translated_title(), error=type(exc).__name__),
                self,
            )
        page.setObjectName(f"page-{self.spec.key}")
        requested = getattr(page, "open_page_requested", None)
        if requested is not None:
            requested.connect(self.open_page_requested)
        self._layout.addWidget(page)
        page.show()  # added to a slot already on screen: not shown by itself
        self.page = page
        return page

    def refresh(self) -> None:
        """Build if needed, then let the page read what changed; errors are recorded."""
        page = self.ensure_built()
        refresh = getattr(page, "refresh", None)
        if refresh is None:
            return
        try:
            refresh()
        except Exception as exc:
            log.error("the %s page failed to refresh:\n%s", self.spec.key, traceback.format_exc())
            self.error = f"{type(exc).__name__}: {exc}"


class _Notice(QWidget):
    """Stands in for a page that cannot be shown; says so plainly."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        label = QLabel(text, self)
        label.setObjectName("notice")
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setAccessibleName(text)
        layout.addWidget(label)

    @property
    def title(self) -> str:
        return ""

    def refresh(self) -> None:
        """Nothing to read: the notice says all there is."""
