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
        self._order: tuple[int, Qt.SortOrder] | None = None  # the last sort, kept on reset

    def set_issues(self, issues: Sequence[Issue]) -> None:
        self.beginResetModel()
        self._issues = self._sorted(list(issues))
        self.endResetModel()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorted here with one key per issue. Why: a sort proxy asks ``data()`` twice per
        comparison, a Python call each time: 240 ms of frozen window for 5,145 issues."""
        self._order = (column, order)
        self.layoutAboutToBeChanged.emit()
        previous = self._issues
        self._issues = self._sorted(list(previous))
        new_row = {id(issue): row for row, issue in enumerate(self._issues)}
        moved = [
            (index, self.index(new_row[id(previous[index.row()])], index.column()))
            for index in self.persistentIndexList()
        ]
        self.changePersistentIndexList([old for old, _ in moved], [new for _, new in moved])
        self.layoutChanged.emit()

    def _sorted(self, issues: list[Issue]) -> list[Issue]:
        if self._order is None:
            return issues
        column, order = self._order
        descending = order == Qt.SortOrder.DescendingOrder
        return sorted(issues, key=lambda issue: self._sort_key(issue, column), reverse=descending)

    def _sort_key(self, issue: Issue, column: int) -> Any:
        """Rows as numbers (file-level issues first), text case-folded."""
        if column == 1:
            return issue.row if issue.row is not None else -1
        return self._text(issue, column).casefold()

    def _text(self, issue: Issue, column: int) -> str:
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
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        return self._text(issue, index.column())

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

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """The report sorts itself (see :meth:`IssueModel.sort`); this proxy then keeps the
        source's order and only filters."""
        model = self.sourceModel()
        if isinstance(model, IssueModel):
            model.sort(column, order)
        else:
            super().sort(column, order)

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
