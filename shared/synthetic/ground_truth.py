"""ground_truth.json: everything planted and every total, so models and importers can be scored.

The file is the contract between the generator and its consumers: a model that claims to have
learned elasticities, seasonality or bundles is compared with the ``world`` section, and an
importer that claims to have read a file correctly is compared with the per-retailer totals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.schema import CORE_FIELDS
from shared.synthetic.retailers import RetailerSales
from shared.synthetic.world import WEEKDAYS, World

GENERATOR_VERSION = "1.0.0"
GROUND_TRUTH_FORMAT = "synthetic-retail-ground-truth/1"
GROUND_TRUTH_FILE = "ground_truth.json"

DEMAND_MODEL = (
    "lines(product, day) ~ Poisson(mu * Gamma(k, 1/k)); log mu = log(daily_lines * weight) "
    "+ elasticity * log(price / reference_price) + log(promo_lift) * promotion "
    "+ log(weekly[weekday]) + sum_h amplitude_h * sin(2 pi h doy / 365.25 + phase_h) "
    "+ cross_price_elasticity * log(competitor_price / reference_price); doy = 0 on 1 January; "
    "units per line = 1 + Poisson(extra_units_per_line), x1-3 for business customers; "
    "a basket holding one category of a planted pair gains a line of the other with p = boost; "
    "sales are capped by shelf stock (0 during supplier outages)."
)


def summarise(frame: pd.DataFrame) -> dict[str, Any]:
    """Totals a reader of the file must reproduce exactly (revenue summed in whole cents)."""
    cents = np.rint(frame["price"].to_numpy(dtype=np.float64) * 100).astype(np.int64)
    quantity = frame["quantity_sold"].to_numpy(dtype=np.int64)
    days = frame["timestamp"].dt.floor("D")
    return {
        "rows": len(frame),
        "products": int(frame["product_id"].nunique()),
        "baskets": int(frame["transaction_id"].nunique()),
        "total_quantity": int(quantity.sum()),
        "total_revenue": round(int((cents * quantity).sum()) / 100, 2),
        "first_day": days.min().date().isoformat(),
        "last_day": days.max().date().isoformat(),
        "days_with_sales": int(days.nunique()),
    }


def retailer_truth(sales: RetailerSales, relative_path: str) -> dict[str, Any]:
    """The per-retailer section: totals, vocabulary and what the export leaves out."""
    profile = sales.profile
    dialect = profile.dialect
    frame = sales.frame
    exported = list(sales.exported_columns)
    labels = {label: code for code, label in profile.category_labels.items()}
    segments = (
        {
            str(word): canonical
            for canonical, word in dialect.segment_labels.items()
            if word in set(frame["customer_segment"].dropna().unique().tolist())
        }
        if "customer_segment" in exported
        else {}
    )
    return {
        "retailer_id": profile.retailer_id,
        "dialect": dialect.name,
        "file": relative_path,
        "size": profile.size,
        **summarise(frame),
        "catalogue_products": sales.catalogue_size,
        "return_lines": sales.return_lines,
        "stockout_days": sales.stockout_days,
        "zero_inventory_lines": sales.zero_inventory_lines,
        "unserved_lines": sales.unserved_lines,
        "co_added_lines": sales.co_added_lines,
        "categories": list(profile.categories),
        "category_labels": labels,
        "segment_labels": segments,
        "exported_columns": exported,
        "optional_columns": [c for c in exported if c not in CORE_FIELDS],
        "column_headers": {c: dialect.columns[c] for c in exported},
        "extra_columns": dict(dialect.extra_columns),
        "tracks_competitor_price": profile.tracks_competitor,
        "closed_weekdays": [WEEKDAYS[d] for d in profile.closed_weekdays],
        "opening_hours": list(profile.opening_hours),
        "stores": profile.stores,
        "anonymous_share": profile.anonymous_share,
        "mean_basket_lines": profile.mean_basket_lines,
        "daily_lines": round(profile.daily_lines, 3),
    }


def build_ground_truth(
    world: World, seed: int, scale: float, retailers: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "format": GROUND_TRUTH_FORMAT,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "date_range": {
            "start": world.start.isoformat(),
            "end": world.end.isoformat(),
            "days": world.days,
        },
        "taxonomy_version": world.taxonomy_version,
        "world": {
            "demand_model": DEMAND_MODEL,
            "dispersion": world.dispersion,
            "closed_dates": [day.isoformat() for day in world.closed_dates],
            "categories": {code: p.to_json() for code, p in world.categories.items()},
            "planted_pairs": [pair.to_json() for pair in world.pairs],
        },
        "retailers": retailers,
    }


def write_ground_truth(data: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / GROUND_TRUTH_FILE
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
