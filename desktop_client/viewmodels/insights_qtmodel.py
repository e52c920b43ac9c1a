"""A read-only, sortable Qt table model over a plain ``Table`` (no widgets here).

Sorting happens on the cells' sort keys, not their text, so "1,200.00" sorts after "950.00"
and unknown values stay at the bottom in either direction.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from desktop_client.viewmodels.insights_tables import Table, sorted_rows

ROW_ID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_KEY_ROLE = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


class TableModel(QAbstractTableModel):
    """Shows a ``Table``; ``row_id(row)`` names what a displayed row is about."""

    def __init__(self, table: Table | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._table = table or Table((), ())
        self._order = list(range(len(self._table.rows)))
        self._sorted_by: tuple[int, bool] | None = None  # (column, descending) once asked

    def set_table(self, table: Table) -> None:
        """Show new rows, kept in the order the person last chose (else the table's own)."""
        self.beginResetModel()
        self._table = table
        self._order = list(range(len(table.rows)))
        if self._sorted_by is not None and self._sorted_by[0] < len(table.headers):
            self._order = sorted_rows(table, *self._sorted_by)
        self.endResetModel()

    @property
    def table(self) -> Table:
        return self._table

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._table.headers)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        source = self._order[index.row()]
        cell = self._table.rows[source][index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return cell.text
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if cell.numeric else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        if role == ROW_ID_ROLE:
            return self.row_id(index.row())
        if role == SORT_KEY_ROLE:
            return cell.key
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self._table.headers[section] if section < len(self._table.headers) else None
        return str(section + 1)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if column >= len(self._table.headers):
            return
        descending = order == Qt.SortOrder.DescendingOrder
        self._sorted_by = None if column < 0 else (column, descending)
        self.layoutAboutToBeChanged.emit()
        kept = self.persistentIndexList()
        sources = [self._order[i.row()] for i in kept]
        self._order = (
            list(range(len(self._table.rows)))
            if self._sorted_by is None
            else sorted_rows(self._table, column, descending)
        )
        position = {source: row for row, source in enumerate(self._order)}
        self.changePersistentIndexList(
            kept, [self.index(position[s], i.column()) for s, i in zip(sources, kept, strict=True)]
        )
        self.layoutChanged.emit()

    def row_id(self, row: int) -> str | None:
        """The id of the displayed row ``row`` (after sorting), if the table names its rows."""
        if not 0 <= row < len(self._order) or not self._table.ids:
            return None
        return self._table.ids[self._order[row]]

    def row_of(self, row_id: str) -> int | None:
        """The displayed row showing ``row_id``."""
        for row, source in enumerate(self._order):
            if self._table.ids and self._table.ids[source] == row_id:
                return row
        return None
