"""The validation report's model: it sorts itself (one key per issue), the proxy filters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QPersistentModelIndex, Qt
from pytestqt.qtbot import QtBot

from desktop_client.gui.models import IssueFilterModel, IssueModel
from shared.ingest import Severity
from shared.ingest.report import Issue, IssueKind

KIND = next(iter(IssueKind))


def issue(row: int | None, message: str, severity: Severity = Severity.WARNING) -> Issue:
    return Issue(severity, KIND, message, row=row, column="Qty", value=str(row))


def shown(proxy: IssueFilterModel, column: int) -> list[str]:
    return [proxy.index(r, column).data() for r in range(proxy.rowCount())]


def test_sorting_through_the_proxy_orders_rows_as_numbers_and_survives_a_reset(
    qtbot: QtBot,
) -> None:
    model = IssueModel()
    proxy = IssueFilterModel()
    proxy.setSourceModel(model)
    model.set_issues([issue(9, "b"), issue(None, "file"), issue(10, "a"), issue(2, "c")])
    proxy.sort(1, Qt.SortOrder.DescendingOrder)
    assert shown(proxy, 1) == ["10", "9", "2", ""]  # numbers, not text; file-level last
    proxy.sort(4, Qt.SortOrder.AscendingOrder)
    assert shown(proxy, 4) == ["a", "b", "c", "file"]
    model.set_issues([issue(3, "z"), issue(1, "y")])  # a re-check keeps the chosen order
    assert shown(proxy, 4) == ["y", "z"]
    proxy.set_text("z")
    assert shown(proxy, 4) == ["z"]


def test_a_selected_issue_stays_selected_when_the_report_is_resorted(qtbot: QtBot) -> None:
    model = IssueModel()
    model.set_issues([issue(5, "five"), issue(7, "seven"), issue(6, "six")])
    held = QPersistentModelIndex(model.index(1, 4))  # "seven"
    model.sort(1, Qt.SortOrder.AscendingOrder)
    assert held.row() == 2 and held.data() == "seven"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(1, 10**6)), max_size=60), st.booleans())
def test_the_row_column_sorts_like_numbers(rows: list[int | None], descending: bool) -> None:
    model = IssueModel()
    model.set_issues([issue(r, "m") for r in rows])
    order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
    model.sort(1, order)
    got = [model.index(r, 1).data() for r in range(model.rowCount())]
    keys = sorted((r if r is not None else -1 for r in rows), reverse=descending)
    assert got == ["" if k == -1 else str(k) for k in keys]
