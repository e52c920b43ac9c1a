"""Qt item models over the view-models' data: a DataFrame preview and the validation report.

Why models and not table widgets: a million-row frame must not become a million widget items;
``data()`` formats only the cells the view asks for, as it scrolls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from PySide6.QtCore import (
    QAbstractTableModel,
    QCoreApplication,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from shared.ingest import Issue, Severity

Index = QModelIndex | QPersistentModelIndex
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


def _cell_text(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:g}"
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    return str(value)


class DataFrameModel(QAbstractTableModel):
    """Read-only view of a DataFrame; cells are formatted lazily in ``data()``."""

    def __init__(self, frame: pd.DataFrame | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._frame = frame if frame is not None else pd.DataFrame()

    def set_frame(self, frame: pd.DataFrame | None) -> None:
        self.beginResetModel()
        self._frame = frame if frame is not None else pd.DataFrame()
        self.endResetModel()

    @property
    def frame(self) -> pd.DataFrame:
        return self._frame

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's API)
        return 0 if parent.isValid() else len(self._frame)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._frame.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role not in (
            Qt.ItemDataRole.DisplayRole,
            Qt.ItemDataRole.ToolTipRole,
        ):
            return None
        return _cell_text(self._frame.iat[index.row(), index.column()])

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return str(self._frame.columns[section])
        return str(section + 1)


class IssueModel(QAbstractTableModel):
    """The validation report: severity, row, column, value and message, one issue a line."""

    COLUMNS = ("Severity", "Row", "Column", "Value", "Message")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._issues: list[Issue] = []

    def set_issues(self, issues: Sequence[Issue]) -> None:
        self.beginResetModel()
        self._issues = list(issues)
        self.endResetModel()

    def issue(self, row: int) -> Issue:
        return self._issues[row]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._issues)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        issue = self._issues[index.row()]
        column = index.column()
        if role == SORT_ROLE:  # rows sort as numbers (file-level issues first), text folded
            if column == 1:
                return issue.row if issue.row is not None else -1
            return str(self.data(index, Qt.ItemDataRole.DisplayRole)).casefold()
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        if column == 0:
            return (
                QCoreApplication.translate("IssueModel", "Error")
                if issue.severity is Severity.ERROR
                else QCoreApplication.translate("IssueModel", "Warning")
            )
        if column == 1:
            return "" if issue.row is None else str(issue.row)
        if column == 2:
            return issue.column or ""
        if column == 3:
            return issue.value or ""
        return issue.message

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or orientation != Qt.Orientation.Horizontal:
            return None
        return QCoreApplication.translate("IssueModel", self.COLUMNS[section])


class IssueFilterModel(QSortFilterProxyModel):
    """Sorts the report by any column and filters it by severity and by free text."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._severity: Severity | None = None
        self._text = ""
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        # Qt compares the sort role's values itself: a Python lessThan over thousands of
        # issues froze the window for about a second after a large import.
        self.setSortRole(SORT_ROLE)

    def set_severity(self, severity: Severity | str | None) -> None:
        """Only issues of this severity (Qt hands enum data back as plain text)."""
        self.beginFilterChange()
        self._severity = Severity(severity) if severity else None
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._text = text.strip().casefold()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if not isinstance(model, IssueModel):
            return True
        issue = model.issue(source_row)
        if self._severity is not None and issue.severity != self._severity:
            return False
        if not self._text:
            return True
        haystack = " ".join(
            str(part)
            for part in (issue.row, issue.column, issue.value, issue.message, issue.kind.value)
            if part is not None
        ).casefold()
        return self._text in haystack
