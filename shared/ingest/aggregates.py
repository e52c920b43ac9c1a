"""Product-day aggregates: the unit the demand model learns from.

Quantities are integers and revenue is summed in integer micro-units of currency, so totals are
preserved exactly however the rows are grouped (floating-point sums would drift with order).
Grouping sorts one integer key per (product, day) and reduces contiguous runs with numpy, which
is several times faster than a pandas multi-column groupby on a million lines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MICROS = 1_000_000


def revenue_micros(frame: pd.DataFrame) -> np.ndarray:
    """Line revenue (price x quantity) in integer millionths of the currency unit."""
    price_micros = np.round(frame["price"].to_numpy(dtype=np.float64) * MICROS).astype(np.int64)
    return price_micros * frame["quantity_sold"].to_numpy(dtype=np.int64)


class _Runs:
    """Rows sorted by group key, with the start of each group's run."""

    def __init__(self, key: np.ndarray) -> None:
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        boundary = np.ones(len(sorted_key), dtype=bool)
        boundary[1:] = sorted_key[1:] != sorted_key[:-1]
        self.starts = np.flatnonzero(boundary)
        self.keys = sorted_key[self.starts]

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[self.order], self.starts) if len(self.starts) else values[:0]

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Mean of the known values in each group; NaN where none is known."""
        known = ~np.isnan(values)
        total = self.sum(np.where(known, values, 0.0))
        count = self.sum(known.astype(np.int64))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def min(self, values: np.ndarray) -> np.ndarray:
        """Smallest known value per group; NaN where none is known."""
        known = ~np.isnan(values)
        lowest = np.minimum.reduceat(np.where(known, values, np.inf)[self.order], self.starts)
        return np.where(np.isinf(lowest), np.nan, lowest)

    def first(self, values: np.ndarray) -> np.ndarray:
        return values[self.order][self.starts]


def _floats(column: pd.Series) -> np.ndarray:
    return column.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def product_day(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per product and calendar day with exact quantity and revenue totals."""
    products = pd.Categorical(frame["product_id"])
    days = frame["timestamp"].to_numpy().astype("datetime64[D]").astype(np.int64)
    first_day = int(days.min()) if len(days) else 0
    span = int(days.max()) - first_day + 1 if len(days) else 1
    runs = _Runs(products.codes.astype(np.int64) * span + (days - first_day))
    quantity = runs.sum(frame["quantity_sold"].to_numpy(dtype=np.int64))
    revenue = runs.sum(revenue_micros(frame))
    out = pd.DataFrame(
        {
            "product_id": pd.Categorical.from_codes(runs.keys // span, dtype=products.dtype),
            "date": (runs.keys % span + first_day).astype("datetime64[D]").astype("datetime64[s]"),
            "quantity_sold": quantity,
            "revenue_micros": revenue,
            "lines": np.diff(np.append(runs.starts, len(frame))),
        }
    )
    if "category" in frame.columns:
        categories = pd.Categorical(frame["category"])
        out["category"] = pd.Categorical.from_codes(
            runs.first(categories.codes), dtype=categories.dtype
        )
    if "promotion_active" in frame.columns:
        out["promotion_share"] = runs.mean(_floats(frame["promotion_active"]))
    for column in ("competitor_price", "seasonal_factor", "unit_cost"):
        if column in frame.columns:
            out[column] = runs.mean(_floats(frame[column]))
    if "inventory_level" in frame.columns:
        out["inventory_level"] = runs.min(_floats(frame["inventory_level"]))  # 0 = stock-out
    out["revenue"] = out["revenue_micros"] / MICROS
    with np.errstate(divide="ignore", invalid="ignore"):
        out["average_price"] = np.where(
            out["quantity_sold"] != 0, out["revenue"] / out["quantity_sold"], np.nan
        )
    return out
