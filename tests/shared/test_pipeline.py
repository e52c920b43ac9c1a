"""End-to-end imports of small hand-written exports: every problem is found and explained."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shared.ingest import (
    ColumnMapping,
    DateOrder,
    ImportOptions,
    ImportResult,
    Issue,
    IssueKind,
    MappingStore,
    Severity,
    import_file,
    product_day,
    revenue_micros,
    write_canonical,
)
from shared.schema import Task, ValidationSettings

NOW = datetime(2026, 4, 1, 12, 0)
HEADER = "Date,SKU,Category,Qty,Unit Price,Promo,Receipt #,Customer #"
CLEAN_ROWS = [
    "2026-03-01 09:15,A1,Bakery,2,3.50,no,R1,C100",
    "2026-03-01 09:15,B2,Dairy,1,1.20,yes,R1,C100",
    "2026-03-02 10:00,A1,Bakery,3,3.50,no,R2,C200",
    "2026-03-03 11:30,B2,Dairy,1,1.25,no,R3,C100",
    "2026-03-04 12:45,C3,Produce,5,0.99,yes,R4,C300",
    "2026-03-05 16:20,A1,Bakery,-1,3.50,no,R5,C200",
]


def lenient(tasks: frozenset[Task] | None = None) -> ValidationSettings:
    """Settings whose minimum-dataset checks any tiny test file passes."""
    settings = ValidationSettings() if tasks is None else ValidationSettings(tasks=tasks)
    for task in Task:
        settings = settings.with_minimum(task, rows=1, days_of_history=1, products=1, baskets=0)
    return settings


def options(**changes: object) -> ImportOptions:
    base: dict[str, object] = {"settings": lenient(), "now": NOW}
    base.update(changes)
    return ImportOptions(**base)  # type: ignore[arg-type]


def write_csv(
    tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "sales.csv"
) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", "utf-8")
    return path


def run(tmp_path: Path, rows: list[str], header: str = HEADER, **changes: object) -> ImportResult:
    return import_file(write_csv(tmp_path, rows, header), options=options(**changes))


def issues_of(result: ImportResult, kind: IssueKind) -> list[Issue]:
    return [i for i in result.report.issues if i.kind is kind]


def only_issue(result: ImportResult, kind: IssueKind) -> Issue:
    found = issues_of(result, kind)
    assert len(found) == 1, [i.to_json() for i in result.report.issues]
    return found[0]


# --------------------------------------------------------------------------------------------
# A clean file


def test_clean_file_is_valid_with_canonical_dtypes(tmp_path: Path) -> None:
    result = run(tmp_path, CLEAN_ROWS)
    report = result.report
    assert report.valid, report.to_json()
    assert report.error_count == 0
    assert report.row_count == len(CLEAN_ROWS)
    assert report.imported_rows == len(CLEAN_ROWS)
    assert report.source_format == "csv"
    assert report.delimiter == ","
    assert report.mapping == {
        "product_id": "SKU",
        "category": "Category",
        "price": "Unit Price",
        "quantity_sold": "Qty",
        "timestamp": "Date",
        "promotion_active": "Promo",
        "customer_id": "Customer #",
        "transaction_id": "Receipt #",
    }
    assert all(t.ready for t in report.tasks.values())
    assert set(report.tasks) == {t.value for t in Task}

    frame = result.frame
    assert frame is not None
    assert len(frame) == len(CLEAN_ROWS)
    assert frame["price"].dtype == np.float64
    assert frame["quantity_sold"].dtype == np.int64
    assert frame["source_row"].dtype == np.int64
    assert pd.api.types.is_datetime64_dtype(frame["timestamp"])
    assert pd.api.types.is_bool_dtype(frame["promotion_active"])
    for column in ("product_id", "category", "customer_id", "transaction_id"):
        dtype = frame[column].dtype
        assert isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)

    assert list(frame["product_id"].astype(str)) == ["A1", "B2", "A1", "B2", "C3", "A1"]
    assert list(frame["category"].astype(str)) == [
        "bakery",
        "dairy",
        "bakery",
        "dairy",
        "produce",
        "bakery",
    ]
    assert list(frame["category_label"].astype(str))[:2] == ["Bakery", "Dairy"]
    assert list(frame["price"]) == [3.5, 1.2, 3.5, 1.25, 0.99, 3.5]
    assert list(frame["quantity_sold"]) == [2, 1, 3, 1, 5, -1]
    assert list(frame["promotion_active"]) == [False, True, False, False, True, False]
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-03-01 09:15")
    assert list(frame["source_row"]) == [2, 3, 4, 5, 6, 7]
    assert result.mapping is not None
    assert result.mapping.taxonomy_version


def test_report_is_json_serialisable(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06,Z9,Bakery,x,abc,maybe,R9,C9"]
    data = run(tmp_path, rows).report.to_json()
    again = json.loads(json.dumps(data))
    assert again["row_count"] == len(rows)
    assert again["errors"]
    assert {"row", "column", "value", "message", "kind", "severity"} <= set(again["errors"][0])


def test_semicolon_comma_decimal_german_export(tmp_path: Path) -> None:
    header = "Datum;Artikelnummer;Warengruppe;Menge;Preis;Aktion;Bonnummer"
    rows = [
        "01.03.2026 09:15;A1;Backwaren;2;3,50;nein;B1",
        "13.03.2026 10:00;B2;Molkerei;1;1.234,50;ja;B2",
        "14.03.2026 11:00;A1;Backwaren;1;3,50;nein;B3",
    ]
    result = run(tmp_path, rows, header)
    assert result.report.valid, result.report.to_json()
    frame = result.frame
    assert frame is not None
    assert list(frame["price"]) == [3.5, 1234.5, 3.5]
    assert list(frame["timestamp"]) == [
        pd.Timestamp("2026-03-01 09:15"),
        pd.Timestamp("2026-03-13 10:00"),
        pd.Timestamp("2026-03-14 11:00"),
    ]
    assert list(frame["category"].astype(str)) == ["bakery", "dairy", "bakery"]


# --------------------------------------------------------------------------------------------
# Every problem kind, with row, column, value and an actionable message


def test_unparseable_price(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,A1,Bakery,1,abc,no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.UNPARSEABLE)
    assert issue.severity is Severity.ERROR
    assert (issue.row, issue.column, issue.value) == (8, "Unit Price", "abc")
    assert "'abc' is not a number" in issue.message
    assert "3.50" in issue.message
    assert not result.report.valid
    assert result.frame is not None
    assert 8 not in set(result.frame["source_row"])
    assert result.report.imported_rows == len(CLEAN_ROWS)


def test_empty_product_id(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,,Bakery,1,3.50,no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.MISSING_VALUE)
    assert issue.severity is Severity.ERROR
    assert (issue.row, issue.column) == (8, "SKU")
    assert issue.value in (None, "")
    assert "product_id is empty" in issue.message
    assert "Fill it in" in issue.message
    assert not result.report.valid


@pytest.mark.parametrize("price", ["0", "-1.50", "0.00"])
def test_non_positive_price(tmp_path: Path, price: str) -> None:
    rows = [*CLEAN_ROWS, f"2026-03-06 10:00,A1,Bakery,1,{price},no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.NON_POSITIVE_PRICE)
    assert issue.severity is Severity.ERROR
    assert (issue.row, issue.column) == (8, "Unit Price")
    assert issue.value is not None
    assert float(issue.value) == float(price)
    assert "must be above 0" in issue.message
    assert not result.report.valid


def test_issue_value_is_the_cell_text_as_written(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,A1,Bakery,1,-1.50,no,R6,C100"]
    issue = only_issue(run(tmp_path, rows), IssueKind.NON_POSITIVE_PRICE)
    assert issue.value == "-1.50"
    assert "-1.50" in issue.message


def test_price_above_the_schema_maximum_is_an_error(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,A1,Bakery,1,2000000,no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.OUT_OF_RANGE)
    assert "above the allowed maximum" in issue.message
    assert issue.row == 8
    assert issue.value is not None
    assert float(issue.value) == 2_000_000
    assert not result.report.valid
    assert result.frame is not None
    assert 8 not in set(result.frame["source_row"])


def test_fractional_quantity_is_an_error(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,A1,Bakery,2.5,3.50,no,R6,C100"]
    issue = only_issue(run(tmp_path, rows), IssueKind.UNPARSEABLE)
    assert (issue.row, issue.column, issue.value) == (8, "Qty", "2.5")
    assert "whole number" in issue.message


def test_unreadable_date_is_an_error(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "yesterday,A1,Bakery,1,3.50,no,R6,C100"]
    issue = only_issue(run(tmp_path, rows), IssueKind.UNPARSEABLE)
    assert issue.severity is Severity.ERROR
    assert (issue.row, issue.column, issue.value) == (8, "Date", "yesterday")
    assert "date" in issue.message


def test_impossible_date_is_an_error_not_a_shifted_sale(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-02-30 10:00,A1,Bakery,1,3.50,no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.UNPARSEABLE)
    assert issue.severity is Severity.ERROR
    assert (issue.row, issue.column, issue.value) == (8, "Date", "2026-02-30 10:00")
    assert result.frame is not None
    assert 8 not in set(result.frame["source_row"])
    assert len(result.frame) == len(CLEAN_ROWS)


def test_stray_decimal_comma_in_a_dot_decimal_file_is_an_error(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, '2026-03-06 10:00,A1,Bakery,1,"3,50",no,R6,C100']
    issue = only_issue(run(tmp_path, rows), IssueKind.UNPARSEABLE)
    assert (issue.row, issue.column, issue.value) == (8, "Unit Price", "3,50")


def test_negative_quantity_is_a_return_warning(tmp_path: Path) -> None:
    result = run(tmp_path, CLEAN_ROWS)
    issue = only_issue(result, IssueKind.RETURN)
    assert issue.severity is Severity.WARNING
    assert (issue.row, issue.column, issue.value) == (7, "Qty", "-1")
    assert "return" in issue.message
    assert result.report.valid


def test_exact_duplicate_line_is_a_warning(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, CLEAN_ROWS[2]]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.DUPLICATE_ROW)
    assert issue.severity is Severity.WARNING
    assert (issue.row, issue.column, issue.value) == (8, "SKU", "A1")
    assert "repeats an earlier line" in issue.message
    assert result.report.valid
    assert result.frame is not None
    assert len(result.frame) == len(rows)  # kept: the retailer decides


def test_same_product_on_another_receipt_is_no_duplicate(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, CLEAN_ROWS[2].replace(",R2,", ",R22,")]
    assert issues_of(run(tmp_path, rows), IssueKind.DUPLICATE_ROW) == []


def _history(prices: list[str], quantities: list[int]) -> list[str]:
    return [
        f"2026-03-{1 + i % 28:02d} 10:00,A1,Bakery,{q},{p},no,R{i},C{i}"
        for i, (p, q) in enumerate(zip(prices, quantities, strict=True))
    ]


def test_price_outlier_is_a_warning(tmp_path: Path) -> None:
    prices = [f"{3.40 + 0.01 * (i % 5):.2f}" for i in range(20)] + ["350.00"]
    result = run(tmp_path, _history(prices, [1 + i % 3 for i in range(21)]))
    issue = only_issue(result, IssueKind.OUTLIER)
    assert issue.severity is Severity.WARNING
    assert (issue.row, issue.column, issue.value) == (22, "Unit Price", "350")
    assert "typo" in issue.message
    assert "3.4" in issue.message  # the product's usual price
    assert result.report.valid


def test_price_outlier_on_a_product_with_a_constant_price(tmp_path: Path) -> None:
    """Most products sell at one price; a 100x typo must still stand out."""
    prices = ["3.50"] * 20 + ["350.00"]
    result = run(tmp_path, _history(prices, [1 + i % 3 for i in range(21)]))
    issue = only_issue(result, IssueKind.OUTLIER)
    assert (issue.row, issue.column, issue.value) == (22, "Unit Price", "350")


def test_ordinary_price_changes_are_not_outliers(tmp_path: Path) -> None:
    prices = ["3.50"] * 15 + ["2.99"] * 5 + ["3.79"]
    result = run(tmp_path, _history(prices, [1 + i % 3 for i in range(21)]))
    assert issues_of(result, IssueKind.OUTLIER) == []


def test_quantity_outlier_is_a_warning(tmp_path: Path) -> None:
    prices = ["3.50"] * 21
    quantities = [1 + i % 3 for i in range(20)] + [500]
    issue = only_issue(run(tmp_path, _history(prices, quantities)), IssueKind.OUTLIER)
    assert (issue.row, issue.column, issue.value) == (22, "Qty", "500")


def test_future_date_is_a_warning(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-04-03 10:00,A1,Bakery,1,3.50,no,R6,C100"]
    result = run(tmp_path, rows, now=datetime(2026, 3, 6))
    future = only_issue(result, IssueKind.FUTURE_DATE)
    assert future.severity is Severity.WARNING
    assert (future.row, future.column) == (8, "Date")
    assert future.value is not None
    assert "2026-04-03" in future.value
    assert "in the future" in future.message
    # one day of tolerance for clocks and time zones
    near = run(tmp_path, [*CLEAN_ROWS, "2026-03-06 23:00,A1,Bakery,1,3.50,no,R6,C1"], now=NOW)
    assert issues_of(near, IssueKind.FUTURE_DATE) == []


def test_gap_of_more_than_a_week_is_a_warning(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-16 10:00,A1,Bakery,1,3.50,no,R6,C100"]
    gap = only_issue(run(tmp_path, rows), IssueKind.TIME_GAP)
    assert gap.severity is Severity.WARNING
    assert gap.column == "Date"
    assert "2026-03-06" in gap.message
    assert "2026-03-15" in gap.message
    assert "10 days" in gap.message
    short = run(tmp_path, [*CLEAN_ROWS, "2026-03-09 10:00,A1,Bakery,1,3.50,no,R6,C100"])
    assert issues_of(short, IssueKind.TIME_GAP) == []


def test_unmapped_category_is_a_warning(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,D4,Zubehör XYZ,1,9.99,no,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.UNMAPPED_CATEGORY)
    assert issue.severity is Severity.WARNING
    assert issue.column == "Category"
    assert "'Zubehör XYZ'" in issue.message
    assert '"categories"' in issue.message
    assert result.report.valid
    assert result.frame is not None
    assert result.frame["category"].astype(str).iloc[-1] == "other"


def test_category_mapped_in_the_mapping_file_is_used(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,D4,Zubehör XYZ,1,9.99,no,R6,C100"]
    path = write_csv(tmp_path, rows)
    mapping = ColumnMapping(
        columns={
            "timestamp": "Date",
            "product_id": "SKU",
            "category": "Category",
            "quantity_sold": "Qty",
            "price": "Unit Price",
            "promotion_active": "Promo",
            "transaction_id": "Receipt #",
        },
        categories={"Zubehör XYZ": "household"},
    )
    result = import_file(path, mapping, options())
    assert issues_of(result, IssueKind.UNMAPPED_CATEGORY) == []
    assert result.frame is not None
    assert result.frame["category"].astype(str).iloc[-1] == "household"


def test_unreadable_optional_value_is_a_warning_and_row_is_kept(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS, "2026-03-06 10:00,A1,Bakery,1,3.50,maybe,R6,C100"]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.UNPARSEABLE)
    assert issue.severity is Severity.WARNING
    assert (issue.row, issue.column, issue.value) == (8, "Promo", "maybe")
    assert "yes/no" in issue.message
    assert result.report.valid
    assert result.frame is not None
    assert len(result.frame) == len(rows)
    assert pd.isna(result.frame["promotion_active"].iloc[-1])


def test_out_of_range_optional_value_is_a_warning_and_emptied(tmp_path: Path) -> None:
    header = HEADER + ",Stock"
    rows = [r + ",10" for r in CLEAN_ROWS] + ["2026-03-06 10:00,A1,Bakery,1,3.50,no,R6,C1,-5"]
    result = run(tmp_path, rows, header)
    issue = only_issue(result, IssueKind.OUT_OF_RANGE)
    assert issue.severity is Severity.WARNING
    assert (issue.row, issue.column, issue.value) == (8, "Stock", "-5")
    assert "inventory_level" in issue.message
    assert result.frame is not None
    assert pd.isna(result.frame["inventory_level"].iloc[-1])


def test_empty_optional_values_are_summarised_once(tmp_path: Path) -> None:
    rows = [r.replace(",no,", ",,") for r in CLEAN_ROWS]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.MISSING_VALUE)
    assert issue.severity is Severity.WARNING
    assert issue.row is None
    assert issue.column == "Promo"
    assert "4 of 6 rows" in issue.message


def test_missing_core_column_is_an_error_naming_the_field(tmp_path: Path) -> None:
    header = "Date,SKU,Category,Qty,Promo,Receipt #"
    rows = ["2026-03-01,A1,Bakery,2,no,R1", "2026-03-02,B2,Dairy,1,yes,R2"]
    result = run(tmp_path, rows, header)
    issue = only_issue(result, IssueKind.MISSING_COLUMN)
    assert issue.severity is Severity.ERROR
    assert "No column holds price" in issue.message
    assert "retail-node map" in issue.message
    assert not result.report.valid
    assert result.frame is None


def test_mapping_naming_an_absent_column_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path, CLEAN_ROWS)
    mapping = ColumnMapping(
        columns={
            "timestamp": "Date",
            "product_id": "SKU",
            "quantity_sold": "Qty",
            "price": "Preis",
        }
    )
    result = import_file(path, mapping, options())
    errors = issues_of(result, IssueKind.MISSING_COLUMN)
    assert errors
    assert any("'Preis'" in e.message and "Unit Price" in e.message for e in errors)
    assert not result.report.valid


def test_ambiguous_dates_are_an_error_until_an_order_is_chosen(tmp_path: Path) -> None:
    rows = [
        "03/01/2026,A1,Bakery,2,3.50,no,R1,C1",
        "04/01/2026,B2,Dairy,1,1.20,yes,R2,C2",
        "05/01/2026,A1,Bakery,1,3.50,no,R3,C1",
    ]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.AMBIGUOUS_DATES)
    assert issue.severity is Severity.ERROR
    assert issue.column == "Date"
    assert "--date-order" in issue.message
    assert "day-first" in issue.message
    assert "month-first" in issue.message
    assert "03/01/2026" in issue.message
    assert not result.report.valid

    day_first = run(tmp_path, rows, date_order=DateOrder.DAY_FIRST)
    assert day_first.report.valid, day_first.report.to_json()
    assert day_first.frame is not None
    assert day_first.frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-03")

    month_first = run(tmp_path, rows, date_order=DateOrder.MONTH_FIRST)
    assert month_first.report.valid
    assert month_first.frame is not None
    assert month_first.frame["timestamp"].iloc[0] == pd.Timestamp("2026-03-01")


def test_date_order_from_the_mapping_file(tmp_path: Path) -> None:
    rows = ["03/01/2026,A1,Bakery,2,3.50,no,R1,C1", "04/01/2026,B2,Dairy,1,1.20,yes,R2,C2"]
    path = write_csv(tmp_path, rows)
    mapping = ColumnMapping(
        columns={
            "timestamp": "Date",
            "product_id": "SKU",
            "category": "Category",
            "quantity_sold": "Qty",
            "price": "Unit Price",
            "promotion_active": "Promo",
            "transaction_id": "Receipt #",
        },
        date_order=DateOrder.MONTH_FIRST,
    )
    result = import_file(path, mapping, options())
    assert result.report.valid, result.report.to_json()
    assert result.frame is not None
    assert result.frame["timestamp"].iloc[1] == pd.Timestamp("2026-04-01")


def test_malformed_row_is_reported_and_the_rest_imported(tmp_path: Path) -> None:
    rows = [*CLEAN_ROWS[:2], "2026-03-01,A1,Bakery,2,3.50,no,R1,C1,EXTRA", *CLEAN_ROWS[2:]]
    result = run(tmp_path, rows)
    issue = only_issue(result, IssueKind.MALFORMED_ROW)
    assert issue.row == 4
    assert issue.value is not None
    assert "EXTRA" in issue.value
    assert "9 fields" in issue.message
    assert result.frame is not None
    assert list(result.frame["source_row"]) == [2, 3, 5, 6, 7, 8]


def test_issue_details_are_capped_but_counts_are_exact(tmp_path: Path) -> None:
    rows = [f"2026-03-01,A{i},Bakery,1,bad{i},no,R{i},C1" for i in range(30)] + CLEAN_ROWS
    path = write_csv(tmp_path, rows)
    settings = ValidationSettings(max_detailed_issues=5)
    for task in Task:
        settings = settings.with_minimum(task, rows=1, days_of_history=1, products=1, baskets=0)
    report = import_file(path, options=ImportOptions(settings=settings, now=NOW)).report
    detailed = [i for i in report.issues if i.kind is IssueKind.UNPARSEABLE]
    assert len(detailed) == 5
    assert report.counts[(Severity.ERROR, IssueKind.UNPARSEABLE)] == 30
    assert report.to_json()["counts"]["error"]["unparseable"] == 30


# --------------------------------------------------------------------------------------------
# Task readiness


def test_bundles_need_a_basket_column(tmp_path: Path) -> None:
    header = "Date,SKU,Category,Qty,Unit Price,Promo"
    rows = [",".join(r.split(",")[:6]) for r in CLEAN_ROWS]
    result = run(tmp_path, rows, header)
    bundles = result.report.tasks[Task.BUNDLES.value]
    assert not bundles.ready
    assert any("transaction_id or customer_id" in m for m in bundles.missing)
    assert result.report.tasks[Task.FORECASTING.value].ready
    not_ready = only_issue(result, IssueKind.TASK_NOT_READY)
    assert not_ready.severity is Severity.WARNING  # other tasks can still run
    assert "bundle suggestions" in not_ready.message
    assert result.report.valid


def test_customer_id_alone_is_enough_for_baskets(tmp_path: Path) -> None:
    header = "Date,SKU,Category,Qty,Unit Price,Promo,Customer #"
    rows = [",".join(r.split(",")[:6] + r.split(",")[7:]) for r in CLEAN_ROWS]
    result = run(tmp_path, rows, header)
    assert result.report.tasks[Task.BUNDLES.value].ready, result.report.to_json()


def test_minimums_are_configurable(tmp_path: Path) -> None:
    settings = lenient().with_minimum(Task.FORECASTING, rows=100, days_of_history=30, products=4)
    result = run(tmp_path, CLEAN_ROWS, settings=settings)
    forecasting = result.report.tasks[Task.FORECASTING.value]
    assert not forecasting.ready
    assert "at least 100 rows (has 6)" in forecasting.missing
    assert "at least 30 days of history (has 5)" in forecasting.missing
    assert "at least 4 products (has 3)" in forecasting.missing
    assert result.report.tasks[Task.DEMAND_PRICING.value].ready
    assert result.report.valid


def test_basket_minimum(tmp_path: Path) -> None:
    settings = lenient().with_minimum(Task.BUNDLES, baskets=10)
    bundles = run(tmp_path, CLEAN_ROWS, settings=settings).report.tasks[Task.BUNDLES.value]
    assert not bundles.ready
    assert bundles.missing == ["at least 10 baskets (has 5)"]


def test_default_minimums_make_a_tiny_file_invalid(tmp_path: Path) -> None:
    result = import_file(write_csv(tmp_path, CLEAN_ROWS), options=ImportOptions(now=NOW))
    assert not any(t.ready for t in result.report.tasks.values())
    errors = issues_of(result, IssueKind.TASK_NOT_READY)
    assert len(errors) == 3
    assert all(e.severity is Severity.ERROR for e in errors)
    assert any("at least 500 rows (has 6)" in e.message for e in errors)
    assert not result.report.valid


def test_strict_tasks_turn_an_unready_requested_task_into_an_error(tmp_path: Path) -> None:
    header = "Date,SKU,Category,Qty,Unit Price,Promo"
    rows = [",".join(r.split(",")[:6]) for r in CLEAN_ROWS]
    wanted = frozenset({Task.BUNDLES, Task.FORECASTING})
    loose = run(tmp_path, rows, header, settings=lenient(wanted))
    assert loose.report.valid
    assert set(loose.report.tasks) == {Task.BUNDLES.value, Task.FORECASTING.value}

    strict = run(tmp_path, rows, header, settings=lenient(wanted), strict_tasks=True)
    issue = only_issue(strict, IssueKind.TASK_NOT_READY)
    assert issue.severity is Severity.ERROR
    assert "bundle suggestions" in issue.message
    assert not strict.report.valid


# --------------------------------------------------------------------------------------------
# Privacy: customer numbers are hashed on import


def _customer_values(result: ImportResult) -> list[str]:
    assert result.frame is not None
    return [str(v) for v in result.frame["customer_id"]]


def test_customer_id_is_hashed(tmp_path: Path) -> None:
    result = run(tmp_path, CLEAN_ROWS, customer_key=b"k" * 32)
    assert result.frame is not None
    hashed = _customer_values(result)
    raw_ids = {"C100", "C200", "C300"}
    assert not raw_ids & set(hashed)
    everything = {str(v) for column in result.frame.columns for v in result.frame[column]}
    assert not raw_ids & everything
    assert all(len(h) >= 16 for h in hashed)
    # the same customer keeps one pseudonym, so baskets still join
    assert hashed[0] == hashed[1] == hashed[3]
    assert len(set(hashed)) == 3


def test_customer_hash_is_stable_per_key_and_differs_between_keys(tmp_path: Path) -> None:
    first = _customer_values(run(tmp_path, CLEAN_ROWS, customer_key=b"a" * 32))
    again = _customer_values(run(tmp_path, CLEAN_ROWS, customer_key=b"a" * 32))
    other = _customer_values(run(tmp_path, CLEAN_ROWS, customer_key=b"b" * 32))
    assert first == again
    assert set(first).isdisjoint(other)


def test_customer_id_is_absent_from_the_written_canonical_file(tmp_path: Path) -> None:
    result = run(tmp_path, CLEAN_ROWS, customer_key=b"k" * 32)
    assert result.frame is not None
    out = write_canonical(result.frame, tmp_path / "out" / "canonical.parquet")
    assert b"C100" not in out.read_bytes()


# --------------------------------------------------------------------------------------------
# Aggregates and output


def test_product_day_totals_equal_frame_totals(tmp_path: Path) -> None:
    rows = [
        *CLEAN_ROWS,
        "2026-03-01 18:00,A1,Bakery,4,3.45,no,R9,C100",
        "2026-03-01 18:05,A1,Bakery,1,0.10,no,R10,C100",
        "2026-03-01 18:06,A1,Bakery,1,0.20,no,R11,C100",
    ]
    result = run(tmp_path, rows)
    frame = result.frame
    assert frame is not None
    daily = product_day(frame)
    assert int(daily["quantity_sold"].sum()) == int(frame["quantity_sold"].sum())
    assert int(daily["revenue_micros"].sum()) == int(revenue_micros(frame).sum())
    assert int(daily["lines"].sum()) == len(frame)
    a1_first = daily[(daily["product_id"].astype(str) == "A1") & (daily["date"] == "2026-03-01")]
    assert len(a1_first) == 1
    row = a1_first.iloc[0]
    assert row["quantity_sold"] == 2 + 4 + 1 + 1
    assert row["revenue_micros"] == 7_000_000 + 13_800_000 + 100_000 + 200_000
    assert row["revenue"] == pytest.approx(21.1)
    assert row["average_price"] == pytest.approx(21.1 / 8)
    assert len(daily) == len(daily[["product_id", "date"]].drop_duplicates())


def test_write_canonical_writes_parquet_and_leaves_the_source_alone(tmp_path: Path) -> None:
    source = write_csv(tmp_path, CLEAN_ROWS)
    before = source.read_bytes()
    before_stat = source.stat()
    result = import_file(source, options=options())
    assert result.frame is not None
    destination = tmp_path / "canonical" / "sales.parquet"
    written = write_canonical(result.frame, destination)
    assert written == destination
    assert destination.exists()
    assert not destination.with_suffix(".parquet.tmp").exists()
    back = pq.read_table(destination).to_pandas()
    assert len(back) == len(result.frame)
    assert list(back["quantity_sold"]) == list(result.frame["quantity_sold"])
    assert list(back["price"]) == list(result.frame["price"])
    assert source.read_bytes() == before
    assert source.stat().st_mtime_ns == before_stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canonical", "sales.csv"]


# --------------------------------------------------------------------------------------------
# Mapping precedence


def test_result_headers_are_the_files_full_layout(tmp_path: Path) -> None:
    """Saved mappings are keyed by these headers; unmapped columns must be part of the key."""
    header = HEADER + ",Notes,Weather"
    rows = [r + ",,sunny" for r in CLEAN_ROWS]
    result = run(tmp_path, rows, header)
    assert result.headers == header.split(",")
    assert "Notes" not in result.report.mapping.values()


def test_saved_mapping_is_used_for_the_same_layout(tmp_path: Path) -> None:
    store = MappingStore(tmp_path / "mappings")
    header = "c1,c2,c3,c4,c5"
    rows = [
        "2026-03-01,A1,Bakery,2,3.50",
        "2026-03-02,B2,Dairy,1,1.20",
    ]
    path = write_csv(tmp_path, rows, header)
    mapping = ColumnMapping(
        columns={
            "timestamp": "c1",
            "product_id": "c2",
            "category": "c3",
            "quantity_sold": "c4",
            "price": "c5",
        }
    )
    store.save(["c1", "c2", "c3", "c4", "c5"], mapping)
    result = import_file(path, options=options(), store=store)
    assert result.report.mapping == {
        "product_id": "c2",
        "category": "c3",
        "price": "c5",
        "quantity_sold": "c4",
        "timestamp": "c1",
    }
    assert result.frame is not None
    assert list(result.frame["price"]) == [3.5, 1.2]


def test_unexpected_internal_failure_is_reported_not_raised(tmp_path: Path) -> None:
    path = write_csv(tmp_path, CLEAN_ROWS)
    result = import_file(path, options=options(), taxonomy="not a taxonomy")  # type: ignore[arg-type]
    assert not result.report.readable
    assert result.report.errors()
    assert "support" in result.report.errors()[0].message


def test_utc_offsets_are_dropped_and_shop_time_kept(tmp_path: Path) -> None:
    rows = [
        "2026-03-01T09:15:00Z,A1,Bakery,2,3.50,no,R1,C100",
        "2026-03-02T10:00:00+01:00,B2,Dairy,1,1.20,yes,R2,C100",
    ]
    result = run(tmp_path, rows)
    assert result.frame is not None
    assert not issues_of(result, IssueKind.UNPARSEABLE)
    assert [str(t) for t in result.frame["timestamp"]] == [
        "2026-03-01 09:15:00",
        "2026-03-02 10:00:00",
    ]


def test_import_never_changes_the_callers_mapping(tmp_path: Path) -> None:
    path = write_csv(tmp_path, CLEAN_ROWS, HEADER)
    columns = {
        "product_id": "SKU",
        "price": "Unit Price",
        "quantity_sold": "Qty",
        "timestamp": "Date",
        "category": "Category",
    }
    valid = ColumnMapping(columns=dict(columns))
    broken = ColumnMapping(columns={**columns, "unit_cost": "No such column"})
    before = (valid.to_json(), broken.to_json())
    good = import_file(path, valid, options())
    bad = import_file(path, broken, options())
    assert (valid.to_json(), broken.to_json()) == before
    assert good.mapping is not None and good.mapping.categories  # suggestions in the result
    assert bad.mapping is not None and "unit_cost" not in bad.mapping.columns


def test_a_seven_day_closure_is_quiet_but_eight_empty_days_warn(tmp_path: Path) -> None:
    quiet = [
        "2026-03-01 09:00,A1,Bakery,1,3.50,no,R1,C1",
        "2026-03-09 09:00,A1,Bakery,1,3.50,no,R2,C1",
    ]
    loud = [
        "2026-03-01 09:00,A1,Bakery,1,3.50,no,R1,C1",
        "2026-03-10 09:00,A1,Bakery,1,3.50,no,R2,C1",
    ]
    assert not issues_of(run(tmp_path, quiet), IssueKind.TIME_GAP)
    (gap,) = issues_of(run(tmp_path, loud), IssueKind.TIME_GAP)
    assert "2026-03-02 to 2026-03-09 (8 days)" in gap.message
