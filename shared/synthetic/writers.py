"""Write a canonical sales frame as one dialect's export file.

Only the dialect decides how a value looks on disk, so the same simulated sales can be exported
as a German semicolon file, a US till TSV, a spreadsheet or Parquet without changing the data.
Formatting runs once per distinct value, never once per row.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.schema import FIELDS_BY_NAME, Kind
from shared.synthetic.dialects import EXCEL_SERIAL, NATIVE, Dialect

EXCEL_EPOCH = np.datetime64("1899-12-30", "D")
# Fixed zip member time so the same seed writes byte-identical workbooks.
_ZIP_TIME = (2026, 11, 1, 0, 0, 0)
_FIXED_STAMP = datetime(2026, 11, 1)
_FIXED_STAMP_XML = b"2026-11-01T00:00:00Z"
_STAMP_PATTERN = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def _per_unique(values: np.ndarray, render: Callable[[Any], str]) -> np.ndarray:
    unique, inverse = np.unique(values, return_inverse=True)
    texts = np.array([render(v) for v in unique.tolist()], dtype=object)
    return texts[inverse.reshape(-1)]


def format_number(value: float, digits: int, decimal: str, thousands: str) -> str:
    """``1250.5`` -> ``1.250,50`` for decimal ``,`` and thousands ``.``; NaN -> empty."""
    if value != value:  # NaN
        return ""
    text = f"{value:,.{digits}f}"
    table: dict[str, str | int | None] = {",": thousands, ".": decimal}
    return text.translate(str.maketrans(table))


def format_timestamp(moment: datetime, fmt: str) -> str:
    """strftime with a portable ``%-I`` (hour 1-12 without padding)."""
    if "%-I" in fmt:
        fmt = fmt.replace("%-I", str(moment.hour % 12 or 12))
    return moment.strftime(fmt)


def _text_column(series: pd.Series, dialect: Dialect, kind: Kind) -> np.ndarray:
    values = series.to_numpy()
    if kind is Kind.DECIMAL:
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return _per_unique(
            floats, lambda v: format_number(v, 2, dialect.decimal, dialect.thousands)
        )
    if kind is Kind.INTEGER:
        return _per_unique(
            values.astype(np.int64),
            lambda v: format_number(v, 0, dialect.decimal, dialect.thousands),
        )
    if kind is Kind.BOOLEAN:
        return np.where(values.astype(bool), dialect.true_text, dialect.false_text)
    if kind is Kind.TIMESTAMP:
        moments = values.astype("datetime64[s]")
        return _per_unique(moments, lambda v: format_timestamp(v, dialect.date_format))
    return series.fillna("").to_numpy(dtype=object)


def _typed_column(series: pd.Series, dialect: Dialect, kind: Kind) -> pd.Series:
    if kind is Kind.TIMESTAMP and dialect.date_format == EXCEL_SERIAL:
        days = series.to_numpy().astype("datetime64[D]")
        return pd.Series((days - EXCEL_EPOCH).astype(np.int64), index=series.index)
    if kind is Kind.TIMESTAMP and dialect.date_format != NATIVE:
        return series.dt.floor("D") if not dialect.has_time else series
    if kind is Kind.BOOLEAN and dialect.file_format != "parquet":
        return pd.Series(
            np.where(series.to_numpy(dtype=bool), dialect.true_text, dialect.false_text),
            index=series.index,
        )
    return series


def _kind(column: str) -> Kind:
    spec = FIELDS_BY_NAME.get(column)
    return spec.kind if spec is not None else Kind.TEXT


def export_frame(frame: pd.DataFrame, dialect: Dialect, columns: Sequence[str]) -> pd.DataFrame:
    """The frame with the dialect's headers, in its column order, values still typed."""
    chosen = [c for c in dialect.columns if c in columns]
    out = {dialect.columns[c]: _typed_column(frame[c], dialect, _kind(c)) for c in chosen}
    for header, source in dialect.extra_columns.items():
        out[header] = frame[source]
    return pd.DataFrame(out)


def _write_csv(frame: pd.DataFrame, dialect: Dialect, columns: Sequence[str], path: Path) -> None:
    chosen = [c for c in dialect.columns if c in columns]
    out = {dialect.columns[c]: _text_column(frame[c], dialect, _kind(c)) for c in chosen}
    for header, source in dialect.extra_columns.items():
        out[header] = _text_column(frame[source], dialect, Kind.TEXT)
    pd.DataFrame(out).to_csv(
        path,
        sep=dialect.delimiter,
        index=False,
        encoding=dialect.encoding,
        quoting=dialect.quoting,
        lineterminator=dialect.line_terminator,
    )


def _normalise_zip(path: Path) -> None:
    """Rewrite a workbook with fixed member times so output depends on the seed alone."""
    with zipfile.ZipFile(path) as source:
        members = [(info.filename, source.read(info)) for info in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in members:
            if name == "docProps/core.xml":
                data = _STAMP_PATTERN.sub(rb"\g<1>" + _FIXED_STAMP_XML + rb"\g<2>", data)
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
    path.write_bytes(buffer.getvalue())


def _write_xlsx(frame: pd.DataFrame, dialect: Dialect, columns: Sequence[str], path: Path) -> None:
    """Write-only openpyxl workbook: several times faster than pandas' cell-by-cell writer."""
    from openpyxl import Workbook

    table = export_frame(frame, dialect, columns)
    for column in table.columns:
        values = table[column]
        # Receipt numbers typed into a sheet are numbers, not text; codes like "A0001" stay text.
        if values.dtype == "string" and bool(values.dropna().str.fullmatch(r"[1-9]\d{0,14}").all()):
            table[column] = values.astype("Int64")
    book = Workbook(write_only=True)
    book.properties.created = _FIXED_STAMP
    book.properties.creator = "synthetic retailer"
    sheet = book.create_sheet("Sales")
    sheet.append(list(table.columns))
    cells = [table[c].astype(object).where(table[c].notna(), None).tolist() for c in table.columns]
    for row in zip(*cells, strict=True):
        sheet.append(row)
    book.save(path)
    _normalise_zip(path)


def _write_parquet(
    frame: pd.DataFrame, dialect: Dialect, columns: Sequence[str], path: Path
) -> None:
    table = export_frame(frame, dialect, columns)
    table.to_parquet(path, index=False, engine="pyarrow")


def write_export(frame: pd.DataFrame, dialect: Dialect, columns: Sequence[str], path: Path) -> None:
    """Write ``columns`` (canonical names) of ``frame`` to ``path`` the way ``dialect`` does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if dialect.file_format == "csv":
        _write_csv(frame, dialect, columns, path)
    elif dialect.file_format == "xlsx":
        _write_xlsx(frame, dialect, columns, path)
    else:
        _write_parquet(frame, dialect, columns, path)
