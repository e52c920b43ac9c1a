"""Property tests for import, mapping, validation and aggregation of retailers' exports."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop_client import node_cli
from shared.ingest import (
    ColumnMapping,
    DateOrder,
    ImportOptions,
    ImportResult,
    import_file,
    load_mapping,
    product_day,
    save_mapping,
)
from shared.schema import FIELD_NAMES, Task, ValidationSettings
from shared.taxonomy import load_taxonomy

NOW = datetime(2026, 4, 1)
INTERNAL_ERROR = "send this message and the file's first lines to support"
PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _lenient() -> ValidationSettings:
    result = ValidationSettings()
    for task in Task:
        result = result.with_minimum(task, rows=1, days_of_history=1, products=1, baskets=0)
    return result


def _assert_well_formed(result: ImportResult) -> None:
    """What every import must give back, whatever the file held."""
    report = result.report
    data = report.to_json()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    messages = [i.message for i in report.issues]
    assert not any(INTERNAL_ERROR in m for m in messages), messages
    assert report.valid == (report.readable and report.error_count == 0)
    for issue in report.issues:
        assert issue.message
        assert issue.row is None or issue.row >= 2
    if report.valid:
        assert result.frame is not None
    if result.frame is not None:
        frame = result.frame
        assert len(frame) == report.imported_rows
        assert frame["source_row"].is_unique
        assert report.imported_rows <= report.row_count


# --------------------------------------------------------------------------------------------
# (a) arbitrary bytes

MAGIC_PREFIXES = [
    b"",
    b"PK\x03\x04",
    b"PAR1",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"sku,qty,price,date\n",
    b"Artikel;Menge;Preis;Datum\r\n",
]


@PROPERTY_SETTINGS
@given(
    prefix=st.sampled_from(MAGIC_PREFIXES),
    body=st.binary(max_size=3000),
    extension=st.sampled_from([".csv", ".tsv", ".xlsx", ".parquet", ".txt"]),
)
def test_arbitrary_bytes_never_raise(prefix: bytes, body: bytes, extension: str) -> None:
    """Feature: retail-intelligence-platform, Property 6: Multi-Task Model Support: for any
    valid input, the local models should support pricing optimization, demand forecasting, and
    bundling recommendation tasks with appropriate data validation and minimum dataset
    requirements. Here: any bytes at all, under any supported extension, give a JSON-serialisable
    report instead of an exception or an internal error.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"export{extension}"
        path.write_bytes(prefix + body)
        result = import_file(path, options=ImportOptions(now=NOW))
        _assert_well_formed(result)


# --------------------------------------------------------------------------------------------
# (b) arbitrary CSV text under real headers

HEADER_SYNONYMS: dict[str, list[str]] = json.loads(
    resources.files("shared").joinpath("data/header_synonyms.json").read_text("utf-8")
)["fields"]
HEADER_POOL = sorted(
    {name for names in HEADER_SYNONYMS.values() for name in names}
    | set(FIELD_NAMES)
    | {"Unit Price", "Receipt #", "Customer #", "col1", "", "Notes"}
)
DATE_FORMATS = [
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y %I:%M %p",
    "%d.%m.%y",
    "%d %b %Y",
]

numbers = st.one_of(
    st.integers(-100_000, 100_000).map(str),
    st.from_regex(r"-?[0-9]{1,6}([.,][0-9]{1,4})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}([.,' ][0-9]{3}){1,2}([.,][0-9]{2})?( ?€)?", fullmatch=True),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
dates = st.builds(
    lambda moment, fmt: moment.strftime(fmt),
    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2130, 12, 31)),
    st.sampled_from(DATE_FORMATS),
)
cells = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=" ,;|\t\"'\n\r€$-.:/x", max_size=8),
    numbers,
    dates,
    st.integers(0, 99_999).map(str),
    st.sampled_from(
        ["", "yes", "no", "ja", "nein", "NA", "NULL", "#N/A", "nan", "inf", "-", "2026-02-30"]
    ),
)


@st.composite
def csv_exports(draw: st.DrawFn) -> tuple[bytes, str]:
    headers = draw(st.lists(st.sampled_from(HEADER_POOL), min_size=1, max_size=8))
    width = len(headers)
    rows = draw(
        st.lists(
            st.lists(cells, min_size=max(width - 1, 0), max_size=width + 1),
            max_size=25,
        )
    )
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    buffer = io.StringIO()
    if draw(st.booleans()):
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
    else:  # naive export: no quoting at all, so separators inside values break rows
        for line in [headers, *rows]:
            buffer.write(delimiter.join(line) + draw(st.sampled_from(["\n", "\r\n"])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return buffer.getvalue().encode(encoding, errors="replace"), encoding


@PROPERTY_SETTINGS
@given(
    export=csv_exports(),
    order=st.sampled_from([None, DateOrder.DAY_FIRST, DateOrder.MONTH_FIRST]),
)
def test_arbitrary_csv_text_never_raises(
    export: tuple[bytes, str], order: DateOrder | None
) -> None:
    """Feature: retail-intelligence-platform, Property 6: Multi-Task Model Support: for any
    valid input, the local models should support pricing optimization, demand forecasting, and
    bundling recommendation tasks with appropriate data validation and minimum dataset
    requirements. Here: any CSV text under real export headers is validated into a report (every
    problem an issue with a real row number), never an exception.
    """
    data, _encoding = export
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sales.csv"
        path.write_bytes(data)
        result = import_file(
            path, options=ImportOptions(now=NOW, date_order=order, settings=_lenient())
        )
        _assert_well_formed(result)


# --------------------------------------------------------------------------------------------
# (c) aggregation preserves totals


@st.composite
def canonical_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, int]:
    """A canonical frame plus the exact revenue in micro-units, computed from integers."""
    n = draw(st.integers(1, 60))
    products = draw(
        st.lists(st.sampled_from(["A1", "B2", "C3", "007", "Äpfel"]), min_size=n, max_size=n)
    )
    decimals = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    units = [draw(st.integers(1, 10_000 * 10**d)) for d in decimals]  # price = units / 10**d
    quantities = draw(
        st.lists(
            st.integers(-1_000, 1_000) | st.integers(-100_000, 100_000), min_size=n, max_size=n
        )
    )
    start = datetime(2026, 1, 1)
    offsets = draw(st.lists(st.integers(0, 40 * 24 * 60), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "product_id": products,
            "price": [u / 10**d for u, d in zip(units, decimals, strict=True)],
            "quantity_sold": np.array(quantities, dtype=np.int64),
            "timestamp": pd.to_datetime([start + timedelta(minutes=m) for m in offsets]),
        }
    )
    if draw(st.booleans()):
        frame["product_id"] = frame["product_id"].astype("category")
    if draw(st.booleans()):
        frame["promotion_active"] = pd.array(
            draw(st.lists(st.sampled_from([True, False, None]), min_size=n, max_size=n)),
            dtype="boolean",
        )
    revenue = sum(
        u * 10 ** (6 - d) * q for u, d, q in zip(units, decimals, quantities, strict=True)
    )
    return frame, revenue


@PROPERTY_SETTINGS
@given(generated=canonical_frames())
def test_product_day_preserves_totals(generated: tuple[pd.DataFrame, int]) -> None:
    """Feature: retail-intelligence-platform, Property 6: Multi-Task Model Support: for any
    valid input, the local models should support pricing optimization, demand forecasting, and
    bundling recommendation tasks with appropriate data validation and minimum dataset
    requirements. Here: product-day aggregation (what the models learn from) keeps total units
    and total revenue exactly, in integer micro-units, for any prices with up to 4 decimals.
    """
    frame, revenue = generated
    daily = product_day(frame)
    assert int(daily["quantity_sold"].sum()) == int(frame["quantity_sold"].sum())
    assert int(daily["revenue_micros"].sum()) == revenue
    assert int(daily["lines"].sum()) == len(frame)
    assert not daily.duplicated(["product_id", "date"]).any()
    expected = (
        pd.DataFrame(
            {
                "product_id": frame["product_id"].astype(str),
                "date": frame["timestamp"].dt.normalize(),
                "quantity_sold": frame["quantity_sold"],
            }
        )
        .groupby(["product_id", "date"])["quantity_sold"]
        .sum()
    )
    got = daily.assign(product_id=daily["product_id"].astype(str)).set_index(
        ["product_id", "date"]
    )["quantity_sold"]
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()


# --------------------------------------------------------------------------------------------
# (d) mapping files round-trip

taxonomy_codes = list(load_taxonomy().codes)


@st.composite
def mappings(draw: st.DrawFn) -> ColumnMapping:
    fields = draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True, max_size=len(FIELD_NAMES)))
    columns = {name: draw(st.text(min_size=1, max_size=30)) for name in fields}
    categories = draw(
        st.dictionaries(
            st.text(max_size=20),
            st.sampled_from(taxonomy_codes) | st.text(min_size=1, max_size=10),
            max_size=8,
        )
    )
    decimal = draw(st.sampled_from([None, ".", ","]))
    return ColumnMapping(
        columns=columns,
        categories=categories,
        date_order=draw(st.sampled_from([None, DateOrder.DAY_FIRST, DateOrder.MONTH_FIRST])),
        decimal=decimal,
        thousands=draw(st.sampled_from([t for t in (None, ".", ",", " ", "'") if t != decimal]))
        if decimal
        else draw(st.sampled_from([None, ".", ",", " ", "'"])),
        taxonomy_version=draw(st.none() | st.text(min_size=1, max_size=10)),
    )


@PROPERTY_SETTINGS
@given(mapping=mappings())
def test_saved_mapping_round_trips(mapping: ColumnMapping) -> None:
    """Feature: retail-intelligence-platform, Property 6: Multi-Task Model Support: for any
    valid input, the local models should support pricing optimization, demand forecasting, and
    bundling recommendation tasks with appropriate data validation and minimum dataset
    requirements. Here: any mapping a retailer saves is read back identically, so the next
    import of the same export is validated exactly as the last one.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mapping.json"
        save_mapping(mapping, path)
        assert load_mapping(path) == mapping
        assert ColumnMapping.from_json(json.loads(path.read_text("utf-8"))) == mapping


# --------------------------------------------------------------------------------------------
# (e) the source file is never modified

clean_rows = st.lists(
    st.tuples(
        st.dates(min_value=datetime(2025, 1, 1).date(), max_value=datetime(2025, 12, 31).date()),
        st.sampled_from(["A1", "B2", "C3", ""]),
        st.sampled_from(["Bakery", "Dairy", "Mystery"]),
        st.integers(-3, 20),
        st.sampled_from(["3.50", "1,20", "0", "abc", "12.00"]),
        st.sampled_from(["R1", "R2", "R3"]),
    ),
    min_size=0,
    max_size=30,
)


@PROPERTY_SETTINGS
@given(rows=clean_rows, cells=st.lists(cells, max_size=10), use_cli=st.booleans())
def test_source_file_is_never_modified(
    rows: list[tuple[object, ...]], cells: list[str], use_cli: bool
) -> None:
    """Feature: retail-intelligence-platform, Property 15: Regulatory Compliance and Data
    Lifecycle: the retailer's own export is the record of truth and stays untouched: importing,
    validating and writing the canonical frame never change the source file's bytes or mtime
    and never write next to it.
    """
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source_dir = root / "exports"
        source_dir.mkdir()
        source = source_dir / "sales.csv"
        lines = ["Date,SKU,Category,Qty,Price,Receipt"]
        lines += [",".join(str(v) for v in row) for row in rows]
        lines += [",".join(cells)] if cells else []
        source.write_text("\n".join(lines) + "\n", "utf-8")
        os.utime(source, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        before = source.read_bytes()
        mtime = source.stat().st_mtime_ns

        _assert_well_formed(import_file(source, options=ImportOptions(now=NOW)))
        if use_cli:
            argv = [
                "validate",
                str(source),
                "--data-dir",
                str(root / "node"),
                "--output",
                str(root / "out" / "canonical.parquet"),
                "--save-mapping",
                "--json",
            ]
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = node_cli.main(argv)
            assert code in (0, 1, 2)
            json.loads(out.getvalue())

        assert source.read_bytes() == before
        assert source.stat().st_mtime_ns == mtime
        assert [p.name for p in source_dir.iterdir()] == ["sales.csv"]
