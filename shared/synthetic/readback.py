"""Read a synthetic export back with its own dialect's settings.

This is the oracle for round-trip tests: it knows the dialect, so any mismatch with ground truth
is a generator bug, while the importer (which must guess the dialect) is tested against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.schema import FIELDS_BY_NAME, Kind
from shared.synthetic.dialects import EXCEL_SERIAL, Dialect
from shared.synthetic.writers import EXCEL_EPOCH


def _kind(column: str) -> Kind:
    spec = FIELDS_BY_NAME.get(column)
    return spec.kind if spec is not None else Kind.TEXT


def _boolean(values: pd.Series, dialect: Dialect) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype("string").str.strip()
    known = text.isin([dialect.true_text, dialect.false_text])
    if not bool(known.all()):
        raise ValueError(f"unexpected boolean tokens in {dialect.name}: {set(text[~known])}")
    return text == dialect.true_text


def _timestamp(values: pd.Series, dialect: Dialect) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[s]")
    if dialect.date_format == EXCEL_SERIAL:
        days = values.to_numpy(dtype=np.int64).astype("timedelta64[D]")
        return pd.Series(EXCEL_EPOCH + days, index=values.index).astype("datetime64[s]")
    return pd.to_datetime(values, format=dialect.parse_format).astype("datetime64[s]")


def read_export(path: Path, dialect: Dialect) -> pd.DataFrame:
    """The export as a frame with canonical column names and types (extras dropped)."""
    headers = {header: name for name, header in dialect.columns.items()}
    text_headers = [h for h, name in headers.items() if _kind(name) is Kind.TEXT]
    if dialect.file_format == "csv":
        raw = pd.read_csv(
            path,
            sep=dialect.delimiter,
            encoding=dialect.encoding,
            decimal=dialect.decimal,
            thousands=dialect.thousands or None,
            quotechar='"',
            dtype=dict.fromkeys(text_headers, "string"),
            keep_default_na=False,
            na_values={h: [""] for h in headers},
        )
    elif dialect.file_format == "xlsx":
        raw = pd.read_excel(path, dtype=dict.fromkeys(text_headers, "string"), engine="openpyxl")
    else:
        raw = pd.read_parquet(path)
    present = [h for h in raw.columns if h in headers]
    frame = raw[present].rename(columns=headers)
    for name in frame.columns:
        kind = _kind(name)
        if kind is Kind.BOOLEAN:
            frame[name] = _boolean(frame[name], dialect)
        elif kind is Kind.TIMESTAMP:
            frame[name] = _timestamp(frame[name], dialect)
        elif kind is Kind.INTEGER:
            frame[name] = frame[name].astype(np.int64)
        elif kind is Kind.DECIMAL:
            frame[name] = frame[name].astype(np.float64)
        else:
            frame[name] = frame[name].astype("string")
    return frame
