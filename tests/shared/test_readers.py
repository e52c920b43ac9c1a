"""Readers: find the table in CSV/TSV, .xlsx and Parquet exports, with true row numbers."""

from __future__ import annotations

import codecs
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from shared.ingest import ColumnMapping, ImportOptions, IssueKind, import_file
from shared.ingest.readers import RawTable, UnreadableSource, read_table, sniff_delimiter


def _write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def _rows(raw: RawTable) -> list[tuple[object, ...]]:
    return [tuple(record.values()) for record in raw.table.to_pylist()]


# --------------------------------------------------------------------------------------------
# Encodings


def test_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "sales.csv", "sku,name,price\nA1,Crème brûlée,3.50\nB2,Straße,1\n")
    raw = read_table(path)
    assert raw.encoding == "utf-8"
    assert raw.source_format == "csv"
    assert raw.headers == ["sku", "name", "price"]
    assert _rows(raw) == [("A1", "Crème brûlée", "3.50"), ("B2", "Straße", "1")]


def test_utf8_with_bom_does_not_leak_into_first_header(tmp_path: Path) -> None:
    text = "Artikel;Menge;Preis\nÄpfel;1;2,50\n"
    path = _write(tmp_path, "bom.csv", codecs.BOM_UTF8 + text.encode("utf-8"))
    raw = read_table(path)
    assert raw.headers == ["Artikel", "Menge", "Preis"]
    assert not raw.headers[0].startswith("\ufeff")
    assert _rows(raw) == [("Äpfel", "1", "2,50")]


def test_cp1252_euro_and_accents(tmp_path: Path) -> None:
    text = "sku;name;price\nA;Café;3,50 €\nB;Crêpe;€ 4,00\n"
    path = _write(tmp_path, "legacy.csv", text, encoding="cp1252")
    raw = read_table(path)
    assert raw.encoding == "cp1252"
    assert _rows(raw) == [("A", "Café", "3,50 €"), ("B", "Crêpe", "€ 4,00")]


def test_latin1(tmp_path: Path) -> None:
    text = "sku;name;price\nA;Café ñandú;3,50\nB;Müller Größe;4\nC;Ærø;1\n"
    path = _write(tmp_path, "latin.csv", text, encoding="latin-1")
    raw = read_table(path)
    assert raw.encoding is not None
    assert raw.encoding.replace("_", "-").lower() in {
        "cp1252",
        "latin-1",
        "iso8859-15",
        "iso8859-1",
    }
    assert [r[1] for r in _rows(raw)] == ["Café ñandú", "Müller Größe", "Ærø"]


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = _write(tmp_path, "u16.csv", "sku\tqty\tprice\nA\t1\t2\n".encode("utf-16"))
    raw = read_table(path)
    assert raw.headers == ["sku", "qty", "price"]
    assert _rows(raw) == [("A", "1", "2")]


def test_explicit_encoding_override(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "sku;name\nA;Café\n", encoding="cp1252")
    raw = read_table(path, encoding="latin-1")
    assert _rows(raw) == [("A", "Café")]


# --------------------------------------------------------------------------------------------
# Delimiters and quoting


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    lines = [["sku", "qty", "price"], ["A1", "1", "2.50"], ["B2", "3", "4.00"]]
    text = "".join(delimiter.join(line) + "\n" for line in lines)
    raw = read_table(_write(tmp_path, "data.txt", text))
    assert raw.delimiter == delimiter
    assert raw.headers == ["sku", "qty", "price"]
    assert _rows(raw) == [("A1", "1", "2.50"), ("B2", "3", "4.00")]
    assert raw.source_format == ("tsv" if delimiter == "\t" else "csv")


def test_semicolon_file_with_decimal_commas_is_not_split_on_commas(tmp_path: Path) -> None:
    text = "Artikel;Menge;Preis\nA;1;2,50\nB;2;3,10\nC;4;10,00\n"
    raw = read_table(_write(tmp_path, "de.csv", text))
    assert raw.delimiter == ";"
    assert [r[2] for r in _rows(raw)] == ["2,50", "3,10", "10,00"]


def test_sniff_delimiter_prefers_consistent_width() -> None:
    assert sniff_delimiter("a;b;c\n1;2,5;3\n4;5,5;6\n") == ";"
    assert sniff_delimiter("a,b,c\n1,2;x,3\n4,5,6\n") == ","


def test_explicit_delimiter_override(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "a|b;c\n1|2;3\n")
    assert read_table(path, delimiter="|").headers == ["a", "b;c"]
    assert read_table(path, delimiter=";").headers == ["a|b", "c"]


def test_quoted_fields_with_embedded_delimiter_and_newline(tmp_path: Path) -> None:
    text = (
        "sku,name,price\n"
        'A,"Hello, world",2\n'
        'B,"line one\nline two",3\n'
        'C,"say ""cheese""",4\n'
        "D,plain,5\n"
    )
    raw = read_table(_write(tmp_path, "quoted.csv", text))
    assert _rows(raw) == [
        ("A", "Hello, world", "2"),
        ("B", "line one\nline two", "3"),
        ("C", 'say "cheese"', "4"),
        ("D", "plain", "5"),
    ]
    # Spreadsheet rows: a quoted line break stays inside one row.
    assert raw.row_numbers.tolist() == [2, 3, 4, 5]


def test_crlf_line_endings(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "win.csv", b"sku,qty,price\r\nA,1,2\r\nB,2,3\r\n"))
    assert _rows(raw) == [("A", "1", "2"), ("B", "2", "3")]
    assert raw.row_numbers.tolist() == [2, 3]


# --------------------------------------------------------------------------------------------
# Row numbers, malformed rows and blank lines


def test_malformed_row_reported_with_its_row_number(tmp_path: Path) -> None:
    text = "sku,qty,price\nA,1,2\nB,2,3,EXTRA\nC,3,4\nD,4,5\n"
    raw = read_table(_write(tmp_path, "bad.csv", text))
    assert len(raw.malformed_rows) == 1
    bad = raw.malformed_rows[0]
    assert bad.row == 3
    assert (bad.expected_fields, bad.actual_fields) == (3, 4)
    assert "EXTRA" in bad.text
    assert [r[0] for r in _rows(raw)] == ["A", "C", "D"]
    assert raw.row_numbers.tolist() == [2, 4, 5]


def test_several_malformed_rows_keep_every_later_row_number(tmp_path: Path) -> None:
    text = "sku,qty,price\nA,1,2\nB,2,3,X\nC,3,4,Y\nD,4,5\nE,5\nF,6,7\n"
    raw = read_table(_write(tmp_path, "bad2.csv", text))
    assert [m.row for m in raw.malformed_rows] == [3, 4, 6]
    assert [m.actual_fields for m in raw.malformed_rows] == [4, 4, 2]
    assert dict(zip([r[0] for r in _rows(raw)], raw.row_numbers.tolist(), strict=True)) == {
        "A": 2,
        "D": 5,
        "F": 7,
    }


def test_malformed_row_after_multiline_value(tmp_path: Path) -> None:
    text = 'sku,name,price\nA,"two\nlines",2\nB,2,3,EXTRA\nC,x,4\n'
    raw = read_table(_write(tmp_path, "mlbad.csv", text))
    assert [m.row for m in raw.malformed_rows] == [3]
    assert raw.row_numbers.tolist() == [2, 4]


def test_malformed_row_is_an_error_in_the_import_report(tmp_path: Path) -> None:
    text = "sku,qty,price,date\nA,1,2,2026-03-01\nB,2,3,2026-03-01,EXTRA\nC,3,4,2026-03-02\n"
    result = import_file(_write(tmp_path, "bad.csv", text))
    malformed = [i for i in result.report.errors() if i.kind is IssueKind.MALFORMED_ROW]
    assert len(malformed) == 1
    assert malformed[0].row == 3
    assert "5 fields" in malformed[0].message
    assert "4" in malformed[0].message
    assert result.report.row_count == 3
    assert not result.report.valid


def test_blank_lines_are_skipped_and_do_not_shift_row_numbers(tmp_path: Path) -> None:
    text = "sku,qty,price\nA,1,2\n\nB,2,3\n,,\nC,3,4\n\n\n"
    raw = read_table(_write(tmp_path, "blank.csv", text))
    assert [r[0] for r in _rows(raw)] == ["A", "B", "C"]
    assert raw.row_numbers.tolist() == [2, 4, 6]
    assert raw.malformed_rows == []


def test_whitespace_only_line_does_not_shift_row_numbers(tmp_path: Path) -> None:
    text = "sku,qty,price\nA,1,2\n   \nB,2,3\nC,3,4,EXTRA\n"
    raw = read_table(_write(tmp_path, "ws.csv", text))
    assert [r[0] for r in _rows(raw)] == ["A", "B"]
    assert raw.row_numbers.tolist() == [2, 4]
    assert [m.row for m in raw.malformed_rows] == [5]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_legacy_bytes_in_a_malformed_row_after_a_utf8_head(tmp_path: Path) -> None:
    """The head sniffs as UTF-8; a late bad row with a cp1252 byte must not sink the file."""
    body = b"".join(b"A%d,1,2\n" % i for i in range(40_000))  # beyond the sniffed head
    data = b"sku,qty,price\n" + body + b"B,2,3,Caf\xe9\nC,3,4\n"
    raw = read_table(_write(tmp_path, "late.csv", data))
    assert raw.encoding == "cp1252"
    assert [m.row for m in raw.malformed_rows] == [40_002]
    assert "Café" in raw.malformed_rows[0].text
    assert len(raw) == 40_001
    assert raw.row_numbers[-1] == 40_003


def test_legacy_bytes_after_a_utf8_head(tmp_path: Path) -> None:
    body = b"".join(b"A%d,1,2\n" % i for i in range(40_000))
    raw = read_table(_write(tmp_path, "late.csv", b"sku,qty,name\n" + body + b"B,2,Caf\xe9\n"))
    assert raw.encoding == "cp1252"
    assert _rows(raw)[-1] == ("B", "2", "Café")


def test_null_tokens_become_missing(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "n.csv", "sku,qty,price\nNA,1,N/A\nnull,2,#N/A\nA,,3\n"))
    assert _rows(raw) == [(None, "1", None), (None, "2", None), ("A", None, "3")]


def test_duplicate_header_names_are_renamed(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "dup.csv", "sku,qty,qty,,price\nA,1,2,x,3\n"))
    assert raw.headers == ["sku", "qty", "qty (2)", "column 4", "price"]
    assert raw.header_renames == {"qty (2)": "qty"}
    assert _rows(raw) == [("A", "1", "2", "x", "3")]


def test_duplicate_header_is_a_warning_in_the_import_report(tmp_path: Path) -> None:
    text = "sku,qty,qty,price,date\nA,1,2,3,2026-03-01\n"
    report = import_file(_write(tmp_path, "dup.csv", text)).report
    dup = [i for i in report.warnings() if i.kind is IssueKind.DUPLICATE_HEADER]
    assert len(dup) == 1
    assert dup[0].column == "qty (2)"
    assert "qty" in dup[0].message


def test_columns_argument_restricts_the_read(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "c.csv", "a,b,c\n1,2,3\n"), columns=["c", "a", "zz"])
    assert sorted(raw.headers) == ["a", "c"]


# --------------------------------------------------------------------------------------------
# Unreadable sources


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="empty"):
        read_table(_write(tmp_path, "empty.csv", b""))


def test_whitespace_only_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="empty"):
        read_table(_write(tmp_path, "blank.csv", b"  \n\n \r\n"))


def test_header_only_file(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "header.csv", "sku,qty,price,date\n"))
    assert raw.headers == ["sku", "qty", "price", "date"]
    assert len(raw) == 0
    assert raw.row_numbers.tolist() == []


def test_header_only_file_import_reports_no_data_rows(tmp_path: Path) -> None:
    report = import_file(_write(tmp_path, "header.csv", "sku,qty,price,date\n")).report
    assert report.readable
    assert not report.valid
    empty = [i for i in report.errors() if i.kind is IssueKind.EMPTY]
    assert empty
    assert "no data rows" in empty[0].message


def test_single_column_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="one column"):
        read_table(_write(tmp_path, "one.csv", "justone\n1\n2\n"))


def test_binary_garbage(tmp_path: Path) -> None:
    garbage = bytes((i * 131 + 7) % 256 for i in range(4096))
    with pytest.raises(UnreadableSource, match="binary") as info:
        read_table(_write(tmp_path, "garbage.csv", garbage))
    assert "CSV" in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(UnreadableSource, match="folder"):
        read_table(tmp_path)


def test_old_xls_magic_bytes(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)
    with pytest.raises(UnreadableSource) as info:
        read_table(_write(tmp_path, "old.xls", data))
    message = str(info.value)
    assert ".xls" in message
    assert ".xlsx" in message
    assert "CSV" in message


def test_old_xls_via_import_file_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)
    report = import_file(_write(tmp_path, "old.xls", data)).report
    assert not report.readable
    assert [i.kind for i in report.errors()] == [IssueKind.UNREADABLE]
    assert "save it as .xlsx" in report.errors()[0].message


def test_corrupt_xlsx_and_parquet(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="Excel"):
        read_table(_write(tmp_path, "x.xlsx", b"PK\x03\x04not really a zip"))
    with pytest.raises(UnreadableSource, match="Parquet"):
        read_table(_write(tmp_path, "y.parquet", b"PAR1 not really parquet"))


# --------------------------------------------------------------------------------------------
# Excel


def _workbook(path: Path) -> Path:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sales"
    sheet.append(["Date", "SKU", "Category", "Qty", "Price", "Serial date"])
    sheet.append([datetime(2026, 3, 5, 14, 2), "A1", "Bakery", 2, 3.5, 46086])
    sheet.append([date(2026, 3, 6), "B2", "Dairy", 1, 4.25, 46087.5])
    sheet.append([None, None, None, None, None, None])
    sheet.append([datetime(2026, 3, 7), 12345, "Dairy", 3, 1, 46088])
    workbook.save(path)
    return path


def test_xlsx_cells_become_text_with_spreadsheet_rows(tmp_path: Path) -> None:
    raw = read_table(_workbook(tmp_path / "sales.xlsx"))
    assert raw.source_format == "xlsx"
    assert raw.sheet == "Sales"
    assert raw.headers == ["Date", "SKU", "Category", "Qty", "Price", "Serial date"]
    assert _rows(raw) == [
        ("2026-03-05 14:02:00", "A1", "Bakery", "2", "3.5", "46086"),
        ("2026-03-06 00:00:00", "B2", "Dairy", "1", "4.25", "46087.5"),
        ("2026-03-07 00:00:00", "12345", "Dairy", "3", "1", "46088"),
    ]
    assert raw.row_numbers.tolist() == [2, 3, 5]


def test_xlsx_import_with_real_dates_and_serial_dates(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "sales.xlsx")
    real = import_file(path, options=ImportOptions(now=datetime(2026, 4, 1)))
    assert real.frame is not None
    assert real.report.mapping["timestamp"] == "Date"
    assert list(real.frame["timestamp"]) == [
        pd.Timestamp("2026-03-05 14:02"),
        pd.Timestamp("2026-03-06"),
        pd.Timestamp("2026-03-07"),
    ]
    assert list(real.frame["product_id"]) == ["A1", "B2", "12345"]
    assert list(real.frame["source_row"]) == [2, 3, 5]

    mapping = ColumnMapping(
        columns={
            "product_id": "SKU",
            "category": "Category",
            "price": "Price",
            "quantity_sold": "Qty",
            "timestamp": "Serial date",
        }
    )
    serial = import_file(path, mapping, ImportOptions(now=datetime(2026, 4, 1)))
    assert serial.frame is not None
    assert list(serial.frame["timestamp"]) == [
        pd.Timestamp("2026-03-05"),
        pd.Timestamp("2026-03-06 12:00"),
        pd.Timestamp("2026-03-07"),
    ]


def test_xlsx_first_non_empty_sheet_and_named_sheet(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.title = "Cover"
    data = workbook.create_sheet("Data")
    data.append([])
    data.append(["sku", "qty"])
    data.append(["A", 1])
    other = workbook.create_sheet("Other")
    other.append(["x", "y"])
    other.append([1, 2])
    path = tmp_path / "multi.xlsx"
    workbook.save(path)

    raw = read_table(path)
    assert raw.sheet == "Data"
    assert raw.headers == ["sku", "qty"]
    assert raw.row_numbers.tolist() == [3]
    assert read_table(path, sheet="Other").headers == ["x", "y"]
    with pytest.raises(UnreadableSource, match="no sheet named"):
        read_table(path, sheet="Missing")


def test_xlsx_with_only_empty_sheets(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    Workbook().save(path)
    with pytest.raises(UnreadableSource, match="empty"):
        read_table(path)


# --------------------------------------------------------------------------------------------
# Parquet and misnamed files


def _parquet(path: Path) -> Path:
    table = pa.table(
        {
            "Date": pa.array(
                [datetime(2026, 3, 5, 10, 0), datetime(2026, 3, 6, 11, 30)], pa.timestamp("us")
            ),
            "SKU": pa.array(["A", "B"], pa.string()),
            "Category": pa.array(["Bakery", "Dairy"], pa.string()),
            "Qty": pa.array([1, -2], pa.int64()),
            "Price": pa.array([1.5, 2.0], pa.float64()),
            "promo": pa.array([True, False], pa.bool_()),
        }
    )
    pq.write_table(table, path)
    return path


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    raw = read_table(_parquet(tmp_path / "sales.parquet"))
    assert raw.source_format == "parquet"
    schema = raw.table.schema
    assert pa.types.is_timestamp(schema.field("Date").type)
    assert pa.types.is_integer(schema.field("Qty").type)
    assert pa.types.is_floating(schema.field("Price").type)
    assert pa.types.is_boolean(schema.field("promo").type)
    assert raw.row_numbers.tolist() == [2, 3]


def test_parquet_import_uses_typed_values(tmp_path: Path) -> None:
    result = import_file(
        _parquet(tmp_path / "sales.parquet"), options=ImportOptions(now=datetime(2026, 4, 1))
    )
    frame = result.frame
    assert frame is not None
    assert list(frame["quantity_sold"]) == [1, -2]
    assert list(frame["price"]) == [1.5, 2.0]
    assert list(frame["promotion_active"]) == [True, False]
    assert list(frame["timestamp"]) == [
        pd.Timestamp("2026-03-05 10:00"),
        pd.Timestamp("2026-03-06 11:30"),
    ]


def test_parquet_with_sub_second_timestamps_imports(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Date": pd.to_datetime(["2026-03-05 10:00:00.250", "2026-03-06 11:30:00.999"]),
            "SKU": ["A", "B"],
            "Qty": [1, 2],
            "Price": [1.5, 2.0],
        }
    )
    path = tmp_path / "pandas.parquet"
    frame.to_parquet(path)
    result = import_file(path, options=ImportOptions(now=datetime(2026, 4, 1)))
    assert result.frame is not None, result.report.to_json()
    assert list(result.frame["timestamp"]) == [
        pd.Timestamp("2026-03-05 10:00:00"),
        pd.Timestamp("2026-03-06 11:30:00"),
    ]


def test_misnamed_csv_that_is_really_parquet(tmp_path: Path) -> None:
    real = _parquet(tmp_path / "sales.parquet")
    misnamed = tmp_path / "export.csv"
    misnamed.write_bytes(real.read_bytes())
    raw = read_table(misnamed)
    assert raw.source_format == "parquet"
    assert raw.headers == ["Date", "SKU", "Category", "Qty", "Price", "promo"]


def test_misnamed_xlsx_that_is_really_csv(tmp_path: Path) -> None:
    raw = read_table(_write(tmp_path, "export.xlsx", "sku;qty\nA;1\n"))
    assert raw.source_format == "csv"
    assert _rows(raw) == [("A", "1")]


def test_misnamed_parquet_that_is_really_xlsx(tmp_path: Path) -> None:
    real = _workbook(tmp_path / "sales.xlsx")
    misnamed = tmp_path / "sales.parquet"
    misnamed.write_bytes(real.read_bytes())
    assert read_table(misnamed).source_format == "xlsx"
