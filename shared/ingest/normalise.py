"""Turn a raw source table plus a mapping into the canonical frame, reporting every bad cell.

Rows whose core values (product, price, quantity, date) cannot be read are left out of the
canonical frame and reported as errors; unreadable optional values become empty and are reported
as warnings. Customer numbers are replaced by a keyed hash here, so they never exist in raw form
beyond the source file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shared.ingest.mapping import ColumnMapping
from shared.ingest.parsing import (
    UTC_OFFSET,
    AmbiguousDates,
    DateOrder,
    NumberFormat,
    Parsed,
    infer_number_format,
    parse_boolean,
    parse_decimal,
    parse_integer,
    parse_text,
    parse_timestamp,
    sample_values,
)
from shared.ingest.readers import RawTable
from shared.ingest.report import Issue, IssueKind, Severity, ValidationReport
from shared.schema import CORE_FIELDS, FIELDS, FIELDS_BY_NAME, FieldSpec, Kind
from shared.taxonomy import Taxonomy

CANONICAL_EXTRA = ("category_label", "source_row")
# Few distinct values per many rows: pandas categoricals save memory and make grouping cheap.
CATEGORICAL_FIELDS = frozenset({"product_id", "customer_segment", "retailer_id", "transaction_id"})


@dataclass(frozen=True)
class NormaliseOptions:
    date_order: DateOrder | None = None
    customer_key: bytes = b""


def _hint(spec: FieldSpec, value: str) -> str:
    kind = spec.kind
    if kind is Kind.DECIMAL:
        return f"'{value}' is not a number. Write it like 3.50 or 3,50, without letters."
    if kind is Kind.INTEGER:
        return f"'{value}' is not a whole number of units. Use whole numbers like 1, 2, 12."
    if kind is Kind.BOOLEAN:
        return f"'{value}' is not a yes/no value. Use yes/no, true/false or 1/0."
    if kind is Kind.TIMESTAMP:
        return f"'{value}' is not a date in this file's date format. Correct the date."
    return f"'{value}' cannot be read."


def _report_rows(
    report: ValidationReport,
    mask: np.ndarray,
    raw: RawTable,
    source: str,
    severity: Severity,
    kind: IssueKind,
    message: Callable[[str], str],
) -> None:
    total = int(mask.sum())
    if total == 0:
        return
    indices = np.flatnonzero(mask)[: report.max_detailed]
    raw_values = raw.cell_text(source, indices)
    issues = [
        Issue(
            severity,
            kind,
            message("" if value is None else str(value)),
            row=int(raw.row_numbers[i]),
            column=source,
            value=None if value is None else str(value),
        )
        for i, value in zip(indices, raw_values, strict=True)
    ]
    report.add_many(issues, total)


def file_number_format(raw: RawTable, mapping: ColumnMapping) -> NumberFormat | None:
    """The decimal separator the whole file uses, judged from all its decimal columns together.

    A lone column like inventory '1.250' is ambiguous; prices '1,50' in the same file settle it.
    """
    if mapping.decimal:
        return NumberFormat(decimal=mapping.decimal, thousands=mapping.thousands)
    values: list[str] = []
    for spec in FIELDS:
        source = mapping.columns.get(spec.name)
        if spec.kind is Kind.DECIMAL and source in raw.table.column_names:
            column = raw.table.column(source)
            if pa.types.is_string(column.type):
                values.extend(sample_values(column))
    return infer_number_format(values) if values else None


def text_columns(peek: RawTable, mapping: ColumnMapping) -> list[str]:
    """Source columns the full read must keep as text rather than let Arrow type them.

    Identifiers keep leading zeros, and in a decimal-comma file "1.250" means 1250, which
    Arrow would read as 1.25: there, every number stays text for the locale-aware parser.
    """
    number_format = file_number_format(peek, mapping)
    comma_decimal = number_format is not None and number_format.decimal == ","
    keep: list[str] = []
    for spec in FIELDS:
        source = mapping.columns.get(spec.name)
        if source is None:
            continue
        numeric = spec.kind in (Kind.DECIMAL, Kind.INTEGER)
        if spec.kind is Kind.TEXT or (numeric and comma_decimal) or _has_utc_offsets(peek, source):
            keep.append(source)
    return keep


def _has_utc_offsets(peek: RawTable, source: str) -> bool:
    """Arrow would convert '10:00+01:00' to UTC; the shop's own clock time is what we keep."""
    if source not in peek.table.column_names:
        return False
    column = peek.table.column(source)
    if not pa.types.is_string(column.type):
        return False
    return any(re.search(UTC_OFFSET, value) for value in sample_values(column))


def _parse(
    spec: FieldSpec,
    column: pa.ChunkedArray,
    number_format: NumberFormat | None,
    order: DateOrder | None,
) -> Parsed:
    if spec.kind is Kind.DECIMAL:
        return parse_decimal(column, hint=number_format)[0]
    if spec.kind is Kind.INTEGER:
        return parse_integer(column, hint=number_format)[0]
    if spec.kind is Kind.BOOLEAN:
        return parse_boolean(column)
    if spec.kind is Kind.TIMESTAMP:
        return parse_timestamp(column, order)[0]
    return parse_text(column)


def _summarise_missing(
    report: ValidationReport, spec: FieldSpec, source: str, empty: int, rows: int
) -> None:
    """One line per optional column: per-row notes on blanks would drown the real problems.

    A blank customer number is an anonymous sale, which is normal and not worth a warning.
    """
    if empty and spec.name != "customer_id":
        report.add(
            Issue(
                Severity.WARNING,
                IssueKind.MISSING_VALUE,
                f"{spec.name} is empty in {empty} of {rows} rows ({empty / rows:.0%}); those "
                "rows are used without it.",
                column=source,
            ),
            count=empty,
        )


def _range_violations(spec: FieldSpec, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Masks of values below and above the field's allowed range."""
    numbers = np.asarray(
        pc.fill_null(pc.cast(values, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    )
    low = np.zeros(len(values), dtype=bool)
    high = np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        if spec.minimum is not None:
            low = numbers < spec.minimum if spec.min_inclusive else numbers <= spec.minimum
        if spec.maximum is not None:
            high = numbers > spec.maximum
    return low, high


def _below_message(spec: FieldSpec) -> Callable[[str], str]:
    if spec.name == "price":
        return lambda v: f"price {v} must be above 0. Correct the price or remove the line."
    return lambda v: f"{spec.name} {v} is below the allowed range ({spec.in_range_text()})."


def _above_message(spec: FieldSpec) -> Callable[[str], str]:
    return lambda v: (
        f"{spec.name} {v} is above the allowed maximum ({spec.in_range_text()}). "
        "Check it for a typo or a missing decimal separator."
    )


def _hash_customers(values: pa.Array, key: bytes) -> pa.Array:
    """Keyed BLAKE2b of each distinct customer number: joinable locally, useless elsewhere."""
    if not 16 <= len(key) <= 64:
        raise ValueError("the customer hashing key must be 16 to 64 bytes")
    encoded = pc.dictionary_encode(values)
    dictionary = encoded.dictionary.to_pylist()
    hashed = [
        hashlib.blake2b(str(v).encode("utf-8"), key=key, digest_size=12).hexdigest()
        for v in dictionary
    ]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(hashed, type=pa.string()))


def _map_categories(
    labels: pa.Array, mapping: ColumnMapping, taxonomy: Taxonomy, report: ValidationReport
) -> pa.Array:
    encoded = pc.dictionary_encode(labels)
    codes: list[str] = []
    unmapped: list[str] = []
    for label in encoded.dictionary.to_pylist():
        chosen = mapping.categories.get(label)
        if chosen is None or chosen not in taxonomy:
            match = taxonomy.match(label)
            chosen = match.code
            if match.confidence == 0.0:
                unmapped.append(label)  # not remembered: the warning stays until mapped
            else:
                mapping.categories[label] = chosen
        codes.append(chosen)
    if unmapped:
        shown = ", ".join(repr(u) for u in unmapped[:10])
        report.warning(
            IssueKind.UNMAPPED_CATEGORY,
            f"{len(unmapped)} of your categories match nothing in taxonomy "
            f"{taxonomy.version} ({shown}) and are filed under '{taxonomy.fallback}'. Map them "
            'in the mapping file\'s "categories" section to get category-level insights.',
            column=mapping.columns.get("category"),
        )
    return pc.dictionary_encode(pc.take(pa.array(codes, type=pa.string()), encoded.indices))


def build_canonical(
    raw: RawTable,
    mapping: ColumnMapping,
    taxonomy: Taxonomy,
    report: ValidationReport,
    options: NormaliseOptions,
) -> pd.DataFrame | None:
    """The canonical frame of every row whose core values are readable; None if none can be."""
    headers = set(raw.headers)
    errors_before = report.error_count
    for name, source in list(mapping.columns.items()):
        if source not in headers:
            report.error(
                IssueKind.MISSING_COLUMN,
                f"The mapping puts {name} in column '{source}', but the file has no such column. "
                f"Columns in the file: {', '.join(raw.headers)}.",
                column=source,
            )
            del mapping.columns[name]
    for name in CORE_FIELDS:
        if name not in mapping.columns:
            spec = FIELDS_BY_NAME[name]
            report.error(
                IssueKind.MISSING_COLUMN,
                f"No column holds {name} ({spec.description}) Map one of your columns to it: "
                f"retail-node map FILE --json shows suggestions.",
                column=name,
            )
    if report.error_count > errors_before:
        return None

    excluded = np.zeros(len(raw), dtype=bool)
    arrays: dict[str, pa.Array] = {}
    order = mapping.date_order or options.date_order
    number_format = file_number_format(raw, mapping)
    for spec in FIELDS:
        if spec.name not in mapping.columns:
            continue
        source = mapping.columns[spec.name]
        try:
            parsed = _parse(spec, raw.table.column(source), number_format, order)
        except AmbiguousDates as exc:
            report.error(
                IssueKind.AMBIGUOUS_DATES,
                f"Dates in '{source}' (e.g. {', '.join(exc.examples)}) could be day-first or "
                "month-first. Choose one: --date-order day-first or --date-order month-first "
                '(or "date_order" in the mapping file).',
                column=source,
            )
            return None
        severity = Severity.ERROR if spec.core else Severity.WARNING
        _report_rows(
            report,
            parsed.invalid,
            raw,
            source,
            severity,
            IssueKind.UNPARSEABLE,
            lambda v, spec=spec: _hint(spec, v),  # type: ignore[misc]
        )
        values = parsed.values
        out_of_range = np.zeros(len(raw), dtype=bool)
        if spec.minimum is not None or spec.maximum is not None:
            readable = ~parsed.invalid & ~parsed.missing
            low, high = _range_violations(spec, values)
            low_kind = (
                IssueKind.NON_POSITIVE_PRICE if spec.name == "price" else IssueKind.OUT_OF_RANGE
            )
            _report_rows(
                report, low & readable, raw, source, severity, low_kind, _below_message(spec)
            )
            _report_rows(
                report,
                high & readable,
                raw,
                source,
                severity,
                IssueKind.OUT_OF_RANGE,
                _above_message(spec),
            )
            out_of_range = (low | high) & readable
            if not spec.core:
                values = pc.if_else(pa.array(~out_of_range), values, pa.scalar(None, values.type))
        if spec.core:
            _report_rows(
                report,
                parsed.missing,
                raw,
                source,
                Severity.ERROR,
                IssueKind.MISSING_VALUE,
                lambda _v, name=spec.name: f"{name} is empty. Fill it in or remove the line.",  # type: ignore[misc]
            )
            excluded |= parsed.invalid | parsed.missing | out_of_range
        else:
            _summarise_missing(report, spec, source, int(parsed.missing.sum()), len(raw))
        if spec.name == "customer_id":
            values = _hash_customers(values, options.customer_key)
        if spec.name == "category":
            arrays["category_label"] = pc.dictionary_encode(values)
            values = _map_categories(values, mapping, taxonomy, report)
        if spec.name in CATEGORICAL_FIELDS:
            values = pc.dictionary_encode(values)
        arrays[spec.name] = values
        if list(mapping.columns.values()).count(source) == 1:
            raw.release(source)

    arrays["source_row"] = pa.array(raw.row_numbers)
    table = pa.table(arrays)
    arrays.clear()
    if excluded.any():
        table = table.filter(pa.array(~excluded))
    frame = table.to_pandas(
        types_mapper={pa.bool_(): pd.BooleanDtype(), pa.int64(): pd.Int64Dtype()}.get,
        self_destruct=True,  # free each Arrow column as soon as pandas holds it
        split_blocks=True,
    )
    del table
    for name in ("quantity_sold", "source_row"):
        frame[name] = frame[name].astype(np.int64)
    return frame
