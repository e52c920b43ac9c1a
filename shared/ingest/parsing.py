"""Vectorised parsers for the messy values in real exports: decimals, booleans, dates.

Each parser turns one raw column (text, or already typed for Parquet/Excel) into a typed Arrow
array plus two masks: ``missing`` (the cell was empty) and ``invalid`` (present but not
understood). Reporting which cells were invalid is the caller's job; parsers never raise on data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
_NOISE = "[\\s\u00a0\u202f'\u2019€$£¥]|EUR|USD|GBP|CHF"  # RE2 has no \\u escapes
SAMPLE_SIZE = 2000


@dataclass(frozen=True)
class Parsed:
    values: pa.Array
    missing: np.ndarray
    invalid: np.ndarray


class DateOrder(StrEnum):
    DAY_FIRST = "day-first"
    MONTH_FIRST = "month-first"


@dataclass(frozen=True)
class NumberFormat:
    decimal: str = "."
    thousands: str | None = None


class AmbiguousDates(Exception):
    """Dates fit both day-first and month-first; the user must choose, we must not guess."""

    def __init__(self, examples: list[str]) -> None:
        super().__init__(", ".join(examples))
        self.examples = examples


def _flat(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _clean_text(column: pa.Array) -> pa.Array:
    """Trim whitespace and turn blank strings into nulls."""
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def sample_values(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """Up to SAMPLE_SIZE non-empty values spread over the column, as text."""
    values = pc.drop_null(column)
    if len(values) > SAMPLE_SIZE:
        step = len(values) // SAMPLE_SIZE
        values = values.take(pa.array(np.arange(0, len(values), step)[:SAMPLE_SIZE]))
    return [str(v) for v in values.to_pylist()]


def parse_text(column: pa.Array | pa.ChunkedArray) -> Parsed:
    """Trimmed text, dictionary-encoded: cleaning runs once per distinct value, not per row."""
    flat = _flat(column)
    if not pa.types.is_dictionary(flat.type):
        if not pa.types.is_string(flat.type):
            flat = pc.cast(flat, pa.string())
        flat = pc.dictionary_encode(flat)
    cleaned = _clean_text(flat.dictionary)
    unified = pc.dictionary_encode(cleaned)
    indices = pc.take(unified.indices, flat.indices)
    values = pa.DictionaryArray.from_arrays(indices, unified.dictionary)
    missing = _mask(pc.is_null(indices))
    return Parsed(values, missing, np.zeros(len(values), dtype=bool))


# --------------------------------------------------------------------------------------------
# Numbers


def infer_number_format(values: list[str], hint: NumberFormat | None = None) -> NumberFormat:
    """Decide decimal and thousands separators from a column's values, e.g. '1.234,50'."""
    comma_decimal = dot_decimal = 0
    comma_groups = dot_groups = 0
    for raw in values:
        value = re.sub(_NOISE, "", raw)
        if "," in value and "." in value:
            if value.rfind(",") > value.rfind("."):
                comma_decimal += 1
                dot_groups += 1
            else:
                dot_decimal += 1
                comma_groups += 1
        elif "," in value:
            digits_after = len(value) - value.rfind(",") - 1
            if value.count(",") > 1:
                comma_groups += 1
            elif digits_after == 3:
                comma_groups += 0  # "1,234": could be either; decided by other values
            else:
                comma_decimal += 1
        elif "." in value:
            digits_after = len(value) - value.rfind(".") - 1
            if value.count(".") > 1:
                dot_groups += 1
            elif digits_after != 3:
                dot_decimal += 1
    if comma_decimal > dot_decimal:
        return NumberFormat(decimal=",", thousands=".")
    if dot_decimal > comma_decimal:
        return NumberFormat(decimal=".", thousands=",")
    if dot_groups > comma_groups:
        return NumberFormat(decimal=",", thousands=".")
    if comma_groups > dot_groups:
        return NumberFormat(decimal=".", thousands=",")
    return hint or NumberFormat(decimal=".", thousands=",")


def parse_decimal(
    column: pa.Array | pa.ChunkedArray,
    number_format: NumberFormat | None = None,
    hint: NumberFormat | None = None,
) -> tuple[Parsed, NumberFormat]:
    """Text like ' 1.234,50 €' or typed numbers to float64; the detected format is returned."""
    flat = _flat(column)
    if pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type):
        values = pc.cast(flat, pa.float64())
        finite = pc.is_finite(values)
        missing = _mask(pc.is_null(values))
        invalid = ~missing & ~_mask(pc.fill_null(finite, False))
        values = pc.if_else(finite, values, pa.scalar(None, pa.float64()))
        return Parsed(values, missing, invalid), number_format or NumberFormat()
    if pa.types.is_boolean(flat.type) or not pa.types.is_string(flat.type):
        flat = pc.cast(flat, pa.string())
    text = _clean_text(flat)
    fmt = number_format or infer_number_format(sample_values(text), hint)
    text = pc.replace_substring_regex(text, _NOISE, "")
    if fmt.thousands in (".", ","):
        # A thousands separator only splits off groups of three digits: "1.2.3" is no number,
        # and in a decimal-comma file "2.50" is not 250. Such values become invalid, not rescaled.
        group = r"\." if fmt.thousands == "." else ","
        point = r"\." if fmt.decimal == "." else ","
        grouped = pc.fill_null(pc.match_substring(text, fmt.thousands), False)
        well = pc.match_substring_regex(text, rf"^[-+]?\d{{1,3}}({group}\d{{3}})+({point}\d*)?$")
        misgrouped = pc.and_(grouped, pc.invert(pc.fill_null(well, False)))
        text = pc.if_else(misgrouped, pa.scalar("?", pa.string()), text)
    if fmt.thousands:
        text = pc.replace_substring(text, fmt.thousands, "")
    if fmt.decimal != ".":
        text = pc.replace_substring(text, fmt.decimal, ".")
    missing = _mask(pc.is_null(text))
    looks_numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    values = pc.cast(pc.if_else(looks_numeric, text, pa.scalar(None, pa.string())), pa.float64())
    invalid = ~missing & ~_mask(looks_numeric)
    return Parsed(values, missing, invalid), fmt


def parse_integer(
    column: pa.Array | pa.ChunkedArray,
    number_format: NumberFormat | None = None,
    hint: NumberFormat | None = None,
) -> tuple[Parsed, NumberFormat]:
    """Whole numbers; '3.0' is 3, '2.5' is invalid (a unit count cannot be fractional)."""
    parsed, fmt = parse_decimal(column, number_format, hint)
    values = parsed.values
    whole = pc.fill_null(pc.equal(values, pc.floor(values)), False)
    in_int64 = pc.fill_null(pc.less(pc.abs(values), 2.0**53), False)
    ok = pc.and_(whole, in_int64)
    not_whole = ~parsed.missing & ~parsed.invalid & ~_mask(ok)
    ints = pc.cast(pc.if_else(ok, values, pa.scalar(None, pa.float64())), pa.int64())
    return Parsed(ints, parsed.missing, parsed.invalid | not_whole), fmt


# --------------------------------------------------------------------------------------------
# Booleans

TRUE_TOKENS = {"1", "1.0", "true", "t", "yes", "y", "ja", "j", "oui", "si", "sí", "x", "wahr"}
TRUE_TOKENS |= {"promo", "promotion", "on", "aktion", "active", "✓"}
FALSE_TOKENS = {"0", "0.0", "false", "f", "no", "n", "nein", "non", "falsch", "off", "-"}
FALSE_TOKENS |= {"none", "inactive", "keine"}


def parse_boolean(column: pa.Array | pa.ChunkedArray) -> Parsed:
    flat = _flat(column)
    if pa.types.is_boolean(flat.type):
        missing = _mask(pc.is_null(flat))
        return Parsed(flat, missing, np.zeros(len(flat), dtype=bool))
    if not pa.types.is_string(flat.type):
        flat = pc.cast(flat, pa.string())
    text = pc.utf8_lower(_clean_text(flat))
    is_true = pc.is_in(text, value_set=pa.array(sorted(TRUE_TOKENS)))
    is_false = pc.is_in(text, value_set=pa.array(sorted(FALSE_TOKENS)))
    missing = _mask(pc.is_null(text))
    known = pc.or_(is_true, is_false)
    values = pc.if_else(known, is_true, pa.scalar(None, pa.bool_()))
    return Parsed(values, missing, ~missing & ~_mask(known))


# --------------------------------------------------------------------------------------------
# Dates and times

_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
DAY_FIRST_FORMATS = tuple(
    f"{d}{t}" for d in ("%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%y", "%d/%m/%y") for t in _TIMES
)
MONTH_FIRST_FORMATS = tuple(f"{d}{t}" for d in ("%m/%d/%Y", "%m-%d-%Y", "%m/%d/%y") for t in _TIMES)
UNAMBIGUOUS_FORMATS = tuple(
    f"{d}{t}" for d in ("%Y/%m/%d", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y") for t in _TIMES
)
_ISO = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
# Sales happen in shop time: an export's UTC offset is dropped, the wall-clock time is kept.
UTC_OFFSET = r"(Z|[+-]\d{2}:?\d{2})$"
EXCEL_EPOCH = np.datetime64("1899-12-30T00:00:00", "s")
_EXCEL_SERIAL = r"^\d{5}(\.\d+)?$"
_EXCEL_RANGE = (20_000.0, 80_000.0)  # 1954 .. 2119: anything else is not a plausible sale date


def _canonical_date_text(text: pa.Array) -> pa.Array:
    """Case, spacing and zero padding folded, so a date and its re-formatted parse compare."""
    folded = pc.utf8_lower(pc.replace_substring_regex(text, r"\s+", " "))
    for _ in range(2):  # neighbouring fields share a separator: each pass strips every other
        folded = pc.replace_substring_regex(folded, r"(^|[^0-9])0([0-9])([^0-9]|$)", r"\1\2\3")
    return folded


def _strptime(text: pa.Array, fmt: str) -> pa.Array:
    """Arrow's strptime without its silent roll-overs (Feb 30 -> Mar 2, "26" -> year 26).

    Rolled-over values land on day 1-3 or before the year 1000; only those are formatted back
    and compared with the text, so clean columns pay almost nothing for the check.
    """
    values = pc.strptime(text, format=fmt, unit="s", error_is_null=True)
    suspect = pc.or_(pc.less_equal(pc.day(values), 3), pc.less(pc.year(values), 1000))
    rows = pc.indices_nonzero(pc.fill_null(suspect, False))
    if len(rows) == 0:
        return values
    again = _canonical_date_text(pc.strftime(pc.take(values, rows), format=fmt))
    same = pc.equal(again, _canonical_date_text(pc.take(text, rows)))
    wrong = np.zeros(len(values), dtype=bool)
    wrong[rows.to_numpy()[~_mask(pc.fill_null(same, False))]] = True
    return pc.if_else(pa.array(wrong), pa.scalar(None, values.type), values)


def _coverage(sample: pa.Array, fmt: str) -> int:
    parsed = _strptime(sample, fmt)
    return len(sample) - parsed.null_count


def _best_formats(sample: pa.Array, formats: tuple[str, ...]) -> list[tuple[int, str]]:
    scored = [(_coverage(sample, f), f) for f in formats]
    return sorted((s for s in scored if s[0] > 0), reverse=True)


def _from_excel_serial(values: pa.Array) -> pa.Array:
    days = np.asarray(pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    seconds = np.round(days * 86400.0).astype(np.int64)
    stamps = EXCEL_EPOCH + seconds.astype("timedelta64[s]")
    return pa.array(stamps, mask=np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False)))


def _serials(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Excel serial days that lie in a plausible range, and the mask of those."""
    plausible = pc.and_(
        pc.greater_equal(values, _EXCEL_RANGE[0]), pc.less_equal(values, _EXCEL_RANGE[1])
    )
    kept = pc.if_else(plausible, values, pa.scalar(None, pa.float64()))
    return _from_excel_serial(kept), pc.fill_null(plausible, False)


def parse_timestamp(
    column: pa.Array | pa.ChunkedArray, date_order: DateOrder | None = None
) -> tuple[Parsed, str]:
    """Dates in ISO, day-first, month-first, with or without time, or Excel serial numbers.

    Returns the parsed column and a description of the format used. Raises AmbiguousDates only
    when every sampled date fits both day-first and month-first and no order was chosen.
    """
    flat = _flat(column)
    if pa.types.is_timestamp(flat.type) or pa.types.is_date(flat.type):
        if pa.types.is_timestamp(flat.type):  # a safe cast to seconds refuses fractions
            flat = pc.floor_temporal(flat, unit="second")
        values = pc.cast(
            flat,
            pa.timestamp("s", tz=flat.type.tz)
            if pa.types.is_timestamp(flat.type)
            else pa.timestamp("s"),
        )
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            values = pc.local_timestamp(values)
        missing = _mask(pc.is_null(values))
        return Parsed(values, missing, np.zeros(len(values), dtype=bool)), "typed timestamp"
    if pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type):
        numbers = pc.cast(flat, pa.float64())
        values, plausible = _serials(numbers)
        missing = _mask(pc.is_null(numbers))
        return Parsed(values, missing, ~missing & ~_mask(plausible)), "Excel serial day numbers"
    if not pa.types.is_string(flat.type):
        flat = pc.cast(flat, pa.string())
    text = _clean_text(flat)
    missing = _mask(pc.is_null(text))
    sample = pa.array(sorted(set(sample_values(text))), type=pa.string())
    if len(sample) == 0:
        return Parsed(
            pa.nulls(len(text), pa.timestamp("s")), missing, np.zeros(len(text), bool)
        ), ""

    iso_hits = pc.sum(pc.cast(pc.match_substring_regex(sample, _ISO), pa.int64())).as_py() or 0
    serial_hits = (
        pc.sum(pc.cast(pc.match_substring_regex(sample, _EXCEL_SERIAL), pa.int64())).as_py() or 0
    )
    day_first = _best_formats(sample, DAY_FIRST_FORMATS)
    month_first = _best_formats(sample, MONTH_FIRST_FORMATS)
    other = _best_formats(sample, UNAMBIGUOUS_FORMATS)
    day_cover = sum(s for s, _ in day_first[:5])
    month_cover = sum(s for s, _ in month_first[:5])
    other_cover = sum(s for s, _ in other[:5])

    best = max(iso_hits, serial_hits, day_cover, month_cover, other_cover)
    if best == 0:  # nothing in the sample is a date we know: every value is invalid
        return Parsed(pa.nulls(len(text), pa.timestamp("s")), missing, ~missing), "unknown"
    if best == iso_hits and iso_hits > 0:
        return _parse_iso(text, missing), "ISO 8601 (year-month-day)"
    if best == serial_hits and serial_hits > 0:
        numbers = pc.cast(
            pc.if_else(
                pc.fill_null(pc.match_substring_regex(text, _EXCEL_SERIAL), False),
                text,
                pa.scalar(None, pa.string()),
            ),
            pa.float64(),
        )
        values, plausible = _serials(numbers)
        return Parsed(values, missing, ~missing & ~_mask(plausible)), "Excel serial day numbers"
    if best == other_cover and other_cover > 0 and other_cover >= max(day_cover, month_cover):
        return _parse_formats(text, missing, [f for _, f in other]), "named-month dates"
    if day_cover == month_cover:
        if date_order is None:
            raise AmbiguousDates([str(v) for v in sample.to_pylist()[:3]])
        chosen = day_first if date_order is DateOrder.DAY_FIRST else month_first
        return _parse_formats(text, missing, [f for _, f in chosen]), date_order.value
    if date_order is None:
        date_order = DateOrder.DAY_FIRST if day_cover > month_cover else DateOrder.MONTH_FIRST
    chosen = day_first if date_order is DateOrder.DAY_FIRST else month_first
    return _parse_formats(text, missing, [f for _, f in chosen]), date_order.value


def _parse_iso(text: pa.Array, missing: np.ndarray) -> Parsed:
    looks_iso = pc.fill_null(pc.match_substring_regex(text, _ISO), False)
    candidates = pc.if_else(
        looks_iso, pc.replace_substring(text, "T", " "), pa.scalar(None, pa.string())
    )
    candidates = pc.replace_substring_regex(candidates, UTC_OFFSET, "")
    # Arrow's ISO cast rejects impossible dates (Feb 30) as a whole; strptime nulls them instead.
    values = _strptime(candidates, "%Y-%m-%d %H:%M:%S")
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        again = _strptime(candidates, fmt)
        values = pc.coalesce(values, again)
    fractional = pc.fill_null(pc.match_substring(candidates, "."), False)
    if pc.any(fractional).as_py():
        trimmed = pc.replace_substring_regex(candidates, r"\.\d+$", "")
        values = pc.coalesce(values, _strptime(trimmed, "%Y-%m-%d %H:%M:%S"))
    invalid = ~missing & _mask(pc.is_null(values))
    return Parsed(values, missing, invalid)


def _parse_formats(text: pa.Array, missing: np.ndarray, formats: list[str]) -> Parsed:
    if not formats:  # the chosen date order fits none of the values: all of them are invalid
        return Parsed(pa.nulls(len(text), pa.timestamp("s")), missing, ~missing)
    values = _strptime(text, formats[0])
    for fmt in formats[1:]:
        if values.null_count == int(missing.sum()):
            break
        values = pc.coalesce(values, _strptime(text, fmt))
    invalid = ~missing & _mask(pc.is_null(values))
    return Parsed(values, missing, invalid)
