"""CSV and JSON exports of stored insight batches, for spreadsheets and other tools.

A CSV holds one batch, flattened so that a spreadsheet can filter and sum it: list fields
become one line per element where they are parallel series (a forecast's periods, a trend's
weeks) and ``;``-joined text otherwise (a bundle's products). JSON keeps every field and the
batch's metadata. Both are written to a temporary file and renamed over the target, so a
failed export never leaves a half-written file that a manager might open.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.insights.store import StoredBatch

LIST_SEPARATOR = ";"
EXPORT_SUFFIXES = (".csv", ".json")

# Known columns first, in this order; any other keys follow in first-seen order.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "pricing": (
        "product_id",
        "category",
        "current_price",
        "recommended_price",
        "recommended_low",
        "recommended_high",
        "price_min",
        "price_max",
        "unit_cost",
        "elasticity",
        "elasticity_low",
        "elasticity_high",
        "objective",
        "expected_units",
        "revenue_change",
        "revenue_change_low",
        "revenue_change_high",
        "margin_change",
        "margin_change_low",
        "margin_change_high",
        "competitor_price",
        "market_position",
        "note",
    ),
    "forecast": (
        "scope",
        "key",
        "category",
        "horizon",
        "period_start",
        "period_days",
        "predicted",
        "lower",
        "upper",
        "interval_level",
        "trend_direction",
        "trend_weekly_change_pct",
        "trend_level_ratio",
    ),
    "bundles": (
        "bundle_id",
        "products",
        "categories",
        "bundle_price",
        "individual_prices",
        "discount_pct",
        "expected_lift",
        "confidence",
        "target_segments",
        "score",
        "context",
    ),
    "trends": ("category", "week", "index", "contributors", "status", "reason"),
    "value": (
        "node",
        "federated_wape",
        "local_wape",
        "improvement_pct",
        "message",
        "holdout_days",
        "examples",
    ),
}

# Parallel series that become one CSV line per element: (source list, CSV column).
_SERIES: dict[str, tuple[tuple[str, str], ...]] = {
    "forecast": (
        ("period_starts", "period_start"),
        ("period_days", "period_days"),
        ("predicted", "predicted"),
        ("lower", "lower"),
        ("upper", "upper"),
    ),
    "trends": (("weeks", "week"), ("index", "index")),
}

# Spreadsheet programs run a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    """The export cannot be written as asked; the message names the file and what to do."""


def flatten_rows(batch: StoredBatch) -> list[dict[str, Any]]:
    """The batch's rows as flat CSV records (scalars only), one per line."""
    expand = _SERIES.get(batch.kind, ())
    out: list[dict[str, Any]] = []
    for row in batch.rows:
        base = {k: v for k, v in row.items() if k not in {src for src, _ in expand}}
        if batch.kind == "forecast":
            base = _flatten_forecast_extras(base)
        lines = _expand_series(row, expand) if expand else [{}]
        out.extend({**_scalars(base), **line} for line in lines)
    return out


def csv_columns(kind: str, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Known columns of ``kind`` (always present, so every export of a kind lines up), then
    unknown keys in first-seen order."""
    columns = list(CSV_COLUMNS.get(kind, ()))
    seen = set(columns)
    for record in records:
        for key in record:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def export_csv(batch: StoredBatch, path: Path) -> Path:
    """Write one batch as UTF-8 CSV with a header row; returns the path written."""
    records = flatten_rows(batch)
    columns = csv_columns(batch.kind, records)

    def write(handle: TextIO) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow([_csv_cell(record.get(column)) for column in columns])

    return _write_atomically(Path(path), write)


def export_json(batch_or_batches: StoredBatch | Iterable[StoredBatch], path: Path) -> Path:
    """Write one batch as a JSON object, or several as a JSON list, each with its metadata
    (``StoredBatch.to_json``); returns the path written."""
    if isinstance(batch_or_batches, StoredBatch):
        data: Any = batch_or_batches.to_json()
    else:
        data = [batch.to_json() for batch in batch_or_batches]

    def write(handle: TextIO) -> None:
        json.dump(data, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")

    return _write_atomically(Path(path), write)


def export_file(batch_or_batches: StoredBatch | Sequence[StoredBatch], path: Path) -> Path:
    """Export by the file's suffix: ``.csv`` (one batch) or ``.json`` (one or several)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return export_json(batch_or_batches, path)
    if suffix != ".csv":
        raise ExportError(f"{path}: unknown export format; name the file .csv or .json")
    if isinstance(batch_or_batches, StoredBatch):
        return export_csv(batch_or_batches, path)
    if len(batch_or_batches) == 1:
        return export_csv(batch_or_batches[0], path)
    raise ExportError(f"{path}: a CSV file holds one batch; use a .json file for several")


def write_text_atomically(path: Path, content: str) -> Path:
    """Write ``content`` (UTF-8) to ``path`` via a temporary file and a rename."""
    return _write_atomically(Path(path), lambda handle: handle.write(content))


# -- helpers ----------------------------------------------------------------------------------


def _write_atomically(path: Path, write: Callable[[TextIO], object]) -> Path:
    """Write next to ``path`` and rename over it: readers see the old file or the whole new
    one, and a failure (full disk, a bug) removes the temporary file and leaves ``path`` as
    it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file name")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(0o644)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _expand_series(
    row: Mapping[str, Any], series: tuple[tuple[str, str], ...]
) -> Iterator[dict[str, Any]]:
    """One line per index of the parallel lists; a row without any keeps one line (so a
    withheld trend or an empty forecast still shows up, with empty cells)."""
    lists = {column: _as_list(row.get(source)) for source, column in series}
    length = max((len(values) for values in lists.values()), default=0)
    if length == 0:
        yield dict.fromkeys(lists)
        return
    for index in range(length):
        yield {
            column: values[index] if index < len(values) else None
            for column, values in lists.items()
        }


def _flatten_forecast_extras(row: Mapping[str, Any]) -> dict[str, Any]:
    """``trend`` becomes trend_* columns and ``seasonality`` seasonality_<name> columns."""
    out = {k: v for k, v in row.items() if k not in ("trend", "seasonality")}
    trend = row.get("trend")
    if isinstance(trend, Mapping):
        for name, value in trend.items():
            out[f"trend_{name}"] = value
    elif trend is not None:
        out["trend"] = trend
    seasonality = row.get("seasonality")
    if isinstance(seasonality, Mapping):
        for name, value in seasonality.items():
            out[f"seasonality_{name}"] = value
    elif seasonality is not None:
        out["seasonality"] = seasonality
    return out


def _scalars(row: Mapping[str, Any]) -> dict[str, Any]:
    """Lists of scalars become ``a;b;c``; nested structures become JSON text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
            out[key] = LIST_SEPARATOR.join("" if v is None else _csv_text(v) for v in value)
        elif isinstance(value, list | dict):
            out[key] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        else:
            out[key] = value
    return out


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None else [value]


def _csv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _csv_cell(value: Any) -> str:
    """Text for one cell; text that a spreadsheet would run as a formula gets a leading ``'``
    (numbers, including negative ones, are left alone)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    text = _csv_text(value)
    if text.startswith(_FORMULA_START) and not _is_number_text(text):
        return "'" + text
    return text


def _is_number_text(text: str) -> bool:
    """A number, or a ``;``-joined list of numbers (a negative first price is not a formula)."""
    try:
        for part in text.split(LIST_SEPARATOR):
            if part:
                float(part)
    except ValueError:
        return False
    return True
