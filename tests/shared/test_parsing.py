"""Value parsers: decimals, integers, booleans and dates as real retail exports write them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from shared.ingest.parsing import (
    AmbiguousDates,
    DateOrder,
    NumberFormat,
    Parsed,
    infer_number_format,
    parse_boolean,
    parse_decimal,
    parse_integer,
    parse_timestamp,
)


def _text(values: list[str | None]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _decimals(values: list[str | None], **kwargs: object) -> tuple[Parsed, NumberFormat]:
    return parse_decimal(_text(values), **kwargs)  # type: ignore[arg-type]


def _dates(
    values: list[str | None] | pa.Array, order: DateOrder | None = None
) -> tuple[list[datetime | None], Parsed, str]:
    array = values if isinstance(values, pa.Array) else _text(values)
    parsed, description = parse_timestamp(array, order)
    return parsed.values.to_pylist(), parsed, description


def _flags(parsed: Parsed) -> tuple[list[bool], list[bool]]:
    return parsed.missing.tolist(), parsed.invalid.tolist()


# --------------------------------------------------------------------------------------------
# Decimals


@pytest.mark.parametrize(
    ("values", "expected", "decimal"),
    [
        (["1.5", "2.25", "3"], [1.5, 2.25, 3.0], "."),
        (["1,5", "2,25", "3"], [1.5, 2.25, 3.0], ","),
        (["1.234,50", "12,00", "0,99"], [1234.5, 12.0, 0.99], ","),
        (["1,234.50", "12.00", "0.99"], [1234.5, 12.0, 0.99], "."),
        (["1 234,50", "12,00"], [1234.5, 12.0], ","),
        (["1\u00a0234,50", "12,00"], [1234.5, 12.0], ","),
        (["1 234.50", "7.25"], [1234.5, 7.25], "."),
        (["-3.5", "+2", ".5"], [-3.5, 2.0, 0.5], "."),
    ],
)
def test_decimal_separators_and_thousands(
    values: list[str], expected: list[float], decimal: str
) -> None:
    parsed, fmt = _decimals(values)
    assert parsed.values.to_pylist() == pytest.approx(expected)
    assert fmt.decimal == decimal
    assert not parsed.invalid.any()
    assert not parsed.missing.any()


def test_decimal_german_thousands_and_decimal_comma_together() -> None:
    parsed, fmt = _decimals(["1.234.567,89", "2,50"])
    assert fmt == NumberFormat(decimal=",", thousands=".")
    assert parsed.values.to_pylist() == pytest.approx([1234567.89, 2.5])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("€ 3,50", 3.5),
        ("3,50 €", 3.5),
        ("3,50€", 3.5),
        ("EUR 3,50", 3.5),
        ("CHF 3,50", 3.5),
        ("£3,50", 3.5),
        ("-€3,50", -3.5),
    ],
)
def test_decimal_currency_symbols_comma_file(raw: str, expected: float) -> None:
    parsed, _ = _decimals([raw, "1,25"])
    assert parsed.values.to_pylist()[0] == pytest.approx(expected)
    assert not parsed.invalid.any()


@pytest.mark.parametrize("raw", ["$4.20", "4.20 USD", "£4.20", "¥4.20", " 4.20 "])
def test_decimal_currency_symbols_dot_file(raw: str) -> None:
    parsed, _ = _decimals([raw, "1.25"])
    assert parsed.values.to_pylist()[0] == pytest.approx(4.2)
    assert not parsed.invalid.any()


def test_decimal_explicit_format_overrides_inference() -> None:
    # "1.234" alone would be read as one-point-two; the file's declared format says 1234.
    parsed, fmt = _decimals(["1.234"], number_format=NumberFormat(decimal=",", thousands="."))
    assert fmt.decimal == ","
    assert parsed.values.to_pylist() == [1234.0]


def test_decimal_hint_settles_an_ambiguous_column() -> None:
    hint = NumberFormat(decimal=",", thousands=".")
    parsed, fmt = _decimals(["1.250", "2.500"], hint=hint)
    assert fmt == hint
    assert parsed.values.to_pylist() == [1250.0, 2500.0]


def test_decimal_invalid_tokens_are_invalid_not_missing() -> None:
    parsed, _ = _decimals(["abc", "12abc", "", None, "  ", "1.5", "--1", "1e"])
    missing, invalid = _flags(parsed)
    assert missing == [False, False, True, True, True, False, False, False]
    assert invalid == [True, True, False, False, False, False, True, True]
    values = parsed.values.to_pylist()
    assert values[5] == pytest.approx(1.5)
    assert all(v is None for i, v in enumerate(values) if i != 5)


def test_decimal_null_tokens_inside_text_are_invalid() -> None:
    # The CSV reader turns NA/NULL into nulls; anything else that is not a number is flagged.
    parsed, _ = _decimals(["n.a.", "-", "?"])
    assert parsed.invalid.tolist() == [True, True, True]
    assert not parsed.missing.any()


def test_decimal_bad_thousands_grouping_is_invalid_not_silently_rescaled() -> None:
    """'1.2.3' is no number, and '2.50' in a comma-decimal column is not 250."""
    parsed, fmt = _decimals(["1,50", "2,00", "3,10", "2.50", "1.2.3"])
    assert fmt.decimal == ","
    values = parsed.values.to_pylist()
    assert values[:3] == pytest.approx([1.5, 2.0, 3.1])
    assert parsed.invalid.tolist() == [False, False, False, True, True]
    assert values[3] is None
    assert values[4] is None


def test_decimal_dot_file_rejects_comma_decimal_stray() -> None:
    parsed, fmt = _decimals(["1.50", "2.00", "3.10", "1,5"])
    assert fmt.decimal == "."
    assert parsed.invalid.tolist() == [False, False, False, True]
    assert parsed.values.to_pylist()[3] is None


def test_decimal_typed_numeric_arrays() -> None:
    ints, _ = parse_decimal(pa.array([1, 2, None], type=pa.int64()))
    assert ints.values.to_pylist() == [1.0, 2.0, None]
    assert _flags(ints) == ([False, False, True], [False, False, False])

    floats, _ = parse_decimal(
        pa.array([1.5, float("nan"), float("inf"), None, -2.25], type=pa.float64())
    )
    assert floats.values.to_pylist() == [1.5, None, None, None, -2.25]
    assert _flags(floats) == (
        [False, False, False, True, False],
        [False, True, True, False, False],
    )


def test_decimal_chunked_input() -> None:
    chunked = pa.chunked_array([_text(["1,5"]), _text(["2,5", None])])
    parsed, fmt = parse_decimal(chunked)
    assert fmt.decimal == ","
    assert parsed.values.to_pylist() == [1.5, 2.5, None]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1.234,50"], NumberFormat(",", ".")),
        (["1,234.50"], NumberFormat(".", ",")),
        (["3,5", "4,25"], NumberFormat(",", ".")),
        (["3.5", "4.25"], NumberFormat(".", ",")),
        (["1.234.567"], NumberFormat(",", ".")),
        (["1,234,567"], NumberFormat(".", ",")),
    ],
)
def test_infer_number_format(values: list[str], expected: NumberFormat) -> None:
    assert infer_number_format(values) == expected


def test_infer_number_format_ambiguous_falls_back_to_hint() -> None:
    hint = NumberFormat(",", ".")
    assert infer_number_format(["1,234", "5,678"], hint) == hint
    assert infer_number_format(["12", "7"]) == NumberFormat(".", ",")


# --------------------------------------------------------------------------------------------
# Integers


def test_integer_whole_and_fractional() -> None:
    parsed, _ = parse_integer(_text(["3.0", "2.5", "4", "-2", "", "x", "0"]))
    assert parsed.values.type == pa.int64()
    assert parsed.values.to_pylist() == [3, None, 4, -2, None, None, 0]
    missing, invalid = _flags(parsed)
    assert missing == [False, False, False, False, True, False, False]
    assert invalid == [False, True, False, False, False, True, False]


def test_integer_thousands_with_hint() -> None:
    parsed, _ = parse_integer(_text(["1.000", "12"]), hint=NumberFormat(",", "."))
    assert parsed.values.to_pylist() == [1000, 12]
    parsed, _ = parse_integer(_text(["1,000", "12"]))
    assert parsed.values.to_pylist() == [1000, 12]


def test_integer_typed_arrays() -> None:
    parsed, _ = parse_integer(pa.array([1.0, 2.5, None, 7.0]))
    assert parsed.values.to_pylist() == [1, None, None, 7]
    assert _flags(parsed) == ([False, False, True, False], [False, True, False, False])


def test_integer_too_large_for_exact_arithmetic_is_invalid() -> None:
    parsed, _ = parse_integer(_text(["1e20", "5"]))
    assert parsed.invalid.tolist() == [True, False]


# --------------------------------------------------------------------------------------------
# Booleans


@pytest.mark.parametrize("raw", ["yes", "Yes", "ja", "JA", "Y", "y", "1", "true", "TRUE", " x "])
def test_boolean_true_tokens(raw: str) -> None:
    parsed = parse_boolean(_text([raw]))
    assert parsed.values.to_pylist() == [True]
    assert not parsed.invalid.any()


@pytest.mark.parametrize("raw", ["no", "No", "nein", "Nein", "N", "n", "0", "false", "False"])
def test_boolean_false_tokens(raw: str) -> None:
    parsed = parse_boolean(_text([raw]))
    assert parsed.values.to_pylist() == [False]
    assert not parsed.invalid.any()


def test_boolean_unknown_and_missing() -> None:
    parsed = parse_boolean(_text(["maybe", "", None, "2", "yes"]))
    assert parsed.values.to_pylist() == [None, None, None, None, True]
    assert _flags(parsed) == (
        [False, True, True, False, False],
        [True, False, False, True, False],
    )


def test_boolean_typed_array_passes_through() -> None:
    parsed = parse_boolean(pa.array([True, None, False]))
    assert parsed.values.to_pylist() == [True, None, False]
    assert _flags(parsed) == ([False, True, False], [False, False, False])


# --------------------------------------------------------------------------------------------
# Dates


def test_iso_dates_with_and_without_time() -> None:
    values, parsed, description = _dates(
        ["2026-03-05", "2026-03-06 14:02", "2026-03-07T09:10:11", "2026-03-08 23:59:59"]
    )
    assert values == [
        datetime(2026, 3, 5),
        datetime(2026, 3, 6, 14, 2),
        datetime(2026, 3, 7, 9, 10, 11),
        datetime(2026, 3, 8, 23, 59, 59),
    ]
    assert "ISO" in description
    assert not parsed.invalid.any()
    assert parsed.values.type == pa.timestamp("s")


def test_iso_fractional_seconds_are_truncated_to_the_second() -> None:
    values, parsed, _ = _dates(["2026-03-08 10:11:12.123456", "2026-03-08T10:11:13.5"])
    assert values == [datetime(2026, 3, 8, 10, 11, 12), datetime(2026, 3, 8, 10, 11, 13)]
    assert not parsed.invalid.any()


def test_day_first_dotted_with_time() -> None:
    values, parsed, description = _dates(["05.03.2026 14:02", "06.03.2026 09:00"])
    assert values == [datetime(2026, 3, 5, 14, 2), datetime(2026, 3, 6, 9, 0)]
    assert description == DateOrder.DAY_FIRST.value
    assert not parsed.invalid.any()


def test_day_first_slash_decided_by_a_day_above_twelve() -> None:
    values, _, description = _dates(["05/03/2026", "25/03/2026", "01/04/2026"])
    assert description == DateOrder.DAY_FIRST.value
    assert values == [datetime(2026, 3, 5), datetime(2026, 3, 25), datetime(2026, 4, 1)]


def test_month_first_with_am_pm() -> None:
    values, parsed, description = _dates(["03/25/2026 2:02 PM", "03/05/2026 11:15 AM"])
    assert description == DateOrder.MONTH_FIRST.value
    assert values == [datetime(2026, 3, 25, 14, 2), datetime(2026, 3, 5, 11, 15)]
    assert not parsed.invalid.any()


def test_two_digit_years_day_first() -> None:
    values, _, _ = _dates(["05.03.26", "31.12.25"])
    assert values == [datetime(2026, 3, 5), datetime(2025, 12, 31)]


def test_two_digit_year_is_not_the_year_26() -> None:
    values, parsed, _ = _dates(["05/03/26", "25/03/2026", "26/03/2026"])
    assert values == [datetime(2026, 3, 5), datetime(2026, 3, 25), datetime(2026, 3, 26)]
    assert not parsed.invalid.any()


def test_named_month_dates() -> None:
    values, _, _ = _dates(["5 Mar 2026", "12 March 2026"])
    assert values == [datetime(2026, 3, 5), datetime(2026, 3, 12)]


def test_ambiguous_only_sample_raises_without_order() -> None:
    with pytest.raises(AmbiguousDates) as info:
        _dates(["03/05/2026", "04/06/2026", "01/02/2026"])
    assert info.value.examples
    assert all("/" in example for example in info.value.examples)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (DateOrder.DAY_FIRST, [datetime(2026, 5, 3), datetime(2026, 6, 4)]),
        (DateOrder.MONTH_FIRST, [datetime(2026, 3, 5), datetime(2026, 4, 6)]),
    ],
)
def test_ambiguous_dates_parse_with_chosen_order(
    order: DateOrder, expected: list[datetime]
) -> None:
    values, parsed, description = _dates(["03/05/2026", "04/06/2026"], order)
    assert values == expected
    assert description == order.value
    assert not parsed.invalid.any()


def test_chosen_order_that_fits_nothing_flags_rows_instead_of_crashing() -> None:
    # Clearly day-first values with month-first forced: each row is invalid, nothing raises.
    values, parsed, _ = _dates(["25.03.2026", "26.03.2026"], DateOrder.MONTH_FIRST)
    assert values == [None, None]
    assert parsed.invalid.tolist() == [True, True]


def test_text_that_is_no_date_at_all_is_invalid_not_ambiguous() -> None:
    values, parsed, _ = _dates(["SKU-001", "SKU-002", None])
    assert values == [None, None, None]
    assert _flags(parsed) == ([False, False, True], [True, True, False])


def test_excel_serials_as_text() -> None:
    values, parsed, description = _dates(["45721", "45722.5", ""])
    assert "Excel" in description
    assert values == [datetime(2025, 3, 5), datetime(2025, 3, 6, 12), None]
    assert _flags(parsed) == ([False, False, True], [False, False, False])


def test_excel_serials_as_numeric_arrays() -> None:
    values, parsed, description = _dates(pa.array([45721, 46086, None, 100], type=pa.int64()))
    assert "Excel" in description
    assert values == [datetime(2025, 3, 5), datetime(2026, 3, 5), None, None]
    assert _flags(parsed) == ([False, False, True, False], [False, False, False, True])

    floats, parsed, _ = _dates(pa.array([45721.25, float("nan")], type=pa.float64()))
    assert floats[0] == datetime(2025, 3, 5, 6)
    assert floats[1] is None
    assert parsed.invalid.tolist() == [False, True]


def test_typed_timestamps_pass_through() -> None:
    stamps = pa.array([datetime(2026, 3, 5, 14, 2, 3, 500000), None], type=pa.timestamp("us"))
    values, parsed, _ = _dates(stamps)
    assert values == [datetime(2026, 3, 5, 14, 2, 3), None]
    assert parsed.missing.tolist() == [False, True]

    dates = pa.array([datetime(2026, 3, 5).date()], type=pa.date32())
    values, _, _ = _dates(dates)
    assert values == [datetime(2026, 3, 5)]


@pytest.mark.parametrize(
    "values",
    [
        ["2026-02-30", "2026-03-01"],
        ["2025-02-29", "2026-03-01"],
        ["2026-04-31 10:00", "2026-03-01 10:00"],
        ["30.02.2026", "05.03.2026"],
        ["31/04/2026", "25/03/2026"],
        ["02/30/2026", "03/25/2026"],
    ],
)
def test_impossible_dates_are_invalid_not_rolled_over(values: list[str]) -> None:
    parsed_values, parsed, _ = _dates(values)
    assert parsed.invalid.tolist() == [True, False]
    assert parsed_values[0] is None
    assert parsed_values[1] is not None


def test_leap_day_in_leap_year_is_valid() -> None:
    values, parsed, _ = _dates(["2028-02-29", "2028-03-01"])
    assert values == [datetime(2028, 2, 29), datetime(2028, 3, 1)]
    assert not parsed.invalid.any()


def test_stray_value_in_a_date_column_is_flagged_with_its_position() -> None:
    values, parsed, _ = _dates(["2026-03-05", "garbage", "2026-03-07", ""])
    assert _flags(parsed) == ([False, False, False, True], [False, True, False, False])
    assert values[1] is None
    assert values[2] == datetime(2026, 3, 7)


def test_parsed_masks_are_numpy_bool_arrays_of_column_length() -> None:
    _, parsed, _ = _dates(["2026-03-05", None, "x"])
    assert isinstance(parsed.missing, np.ndarray)
    assert parsed.missing.dtype == bool
    assert parsed.invalid.shape == (3,)
