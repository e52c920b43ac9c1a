"""Product-day aggregates: the unit the demand model learns from.

Quantities are integers and revenue is summed in integer micro-units of currency, so totals are
preserved exactly however the rows are grouped (floating-point sums would drift with order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MICROS = 1_000_000


def revenue_micros(frame: pd.DataFrame) -> np.ndarray:
    """Line revenue (price x quantity) in integer millionths of the currency unit."""
    price_micros = np.round(frame["price"].to_numpy(dtype=np.float64) * MICROS).astype(np.int64)
    return price_micros * frame["quantity_sold"].to_numpy(dtype=np.int64)


def product_day(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per product and calendar day with exact quantity and revenue totals."""
    work = pd.DataFrame(
        {
            "product_id": frame["product_id"],
            "date": frame["timestamp"].dt.normalize(),
            "quantity_sold": frame["quantity_sold"].astype(np.int64),
            "revenue_micros": revenue_micros(frame),
            "lines": np.ones(len(frame), dtype=np.int64),
        }
    )
    optional = {
        "category": "first",
        "promotion_active": "mean",
        "competitor_price": "mean",
        "inventory_level": "min",
        "seasonal_factor": "mean",
        "unit_cost": "mean",
    }
    aggregations: dict[str, str] = {
        "quantity_sold": "sum",
        "revenue_micros": "sum",
        "lines": "sum",
    }
    for column, how in optional.items():
        if column in frame.columns:
            values = frame[column]
            work[column] = values.astype("Float64") if column == "promotion_active" else values
            aggregations[column] = how
    grouped = work.groupby(["product_id", "date"], sort=True, observed=True).agg(aggregations)
    out = grouped.reset_index()
    out["product_id"] = out["product_id"].astype(frame["product_id"].dtype)
    if "promotion_active" in out.columns:
        out = out.rename(columns={"promotion_active": "promotion_share"})
    out["revenue"] = out["revenue_micros"] / MICROS
    with np.errstate(divide="ignore", invalid="ignore"):
        out["average_price"] = np.where(
            out["quantity_sold"] != 0, out["revenue"] / out["quantity_sold"], np.nan
        )
    return out
