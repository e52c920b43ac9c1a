"""The pricing view: the recommendation table and the what-if curve of a chosen product.

The engine stores full curves for its top few products only (``meta["curves"]``). For every
other product the curve is rebuilt from the stored row alone: the demand model has a constant
elasticity, so ``units(p) = units(p_rec) * (p / p_rec) ** e`` exactly, and the band is the same
curve at the row's elasticity interval ends (the engine's band is the per-price quantile of a
map monotone in the elasticity, so these two curves match it up to one draw's rank: a few
percent at the far ends of the grid). No model or torch is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from desktop_client.viewmodels.insights import tr
from desktop_client.viewmodels.insights_tables import (
    Cell,
    Table,
    number,
    sequence,
    text,
    with_interval,
)
from desktop_client.viewmodels.insights_tables import (
    num as num_cell,
)
from shared.insights.store import StoredBatch

CURVE_POINTS = 41
CURVE_MARGIN = 0.05  # the engine widens the price bounds by this share on either side

POSITIONS = {
    "below": "below competitors",
    "level": "level with competitors",
    "above": "above competitors",
    "unknown": "unknown (no competitor price)",
}


@dataclass(frozen=True)
class PriceCurve:
    """Demand, revenue and (with a known cost) margin over a price grid, with bands."""

    product_id: str
    prices: tuple[float, ...]
    units: tuple[float | None, ...]
    units_low: tuple[float | None, ...]
    units_high: tuple[float | None, ...]
    revenue: tuple[float | None, ...]
    revenue_low: tuple[float | None, ...]
    revenue_high: tuple[float | None, ...]
    margin: tuple[float | None, ...] | None
    current_price: float | None
    recommended_price: float | None
    stored: bool  # True: the engine's own curve; False: rebuilt from the stored row


def pricing_table(batch: StoredBatch) -> Table:
    """One row per product: prices, the recommendation's interval, expected changes."""
    headers = (
        tr("Product"),
        tr("Category"),
        tr("Current price"),
        tr("Recommended price (range)"),
        tr("Revenue change (range)"),
        tr("Margin change (range)"),
        tr("Market position"),
        tr("Note"),
    )
    rows = []
    for row in batch.rows:
        position = row.get("market_position")
        rows.append(
            (
                text(row.get("product_id")),
                text(row.get("category")),
                num_cell(row.get("current_price")),
                with_interval(row, "recommended_price", "recommended_low", "recommended_high"),
                with_interval(
                    row, "revenue_change", "revenue_change_low", "revenue_change_high", signed=True
                ),
                with_interval(
                    row, "margin_change", "margin_change_low", "margin_change_high", signed=True
                ),
                text(tr(POSITIONS[position]) if position in POSITIONS else position),
                text(row.get("note"), empty=""),
            )
        )
    ids = tuple(str(row.get("product_id", "")) for row in batch.rows)
    return Table(headers, tuple(rows), ids)


def product_ids(batch: StoredBatch) -> list[str]:
    return [str(row.get("product_id", "")) for row in batch.rows]


def curve_for(batch: StoredBatch, product_id: str) -> PriceCurve | None:
    """The stored curve of ``product_id`` if the engine kept one, else one rebuilt from its
    row; None when the row lacks the numbers a curve needs."""
    for stored in sequence(batch.meta.get("curves")):
        if isinstance(stored, Mapping) and str(stored.get("product_id")) == product_id:
            return _from_stored(stored)
    for row in batch.rows:
        if str(row.get("product_id")) == product_id:
            return derive_curve(row)
    return None


def derive_curve(row: Mapping[str, Any], points: int = CURVE_POINTS) -> PriceCurve | None:
    """The engine's what-if curve, from the stored recommendation row alone."""
    current = number(row.get("current_price"))
    recommended = number(row.get("recommended_price"))
    elasticity = number(row.get("elasticity"))
    expected = number(row.get("expected_units"))
    if current is None or recommended is None or elasticity is None or expected is None:
        return None
    if current <= 0 or recommended <= 0 or points < 2:
        return None
    base_units = expected / (recommended / current) ** elasticity
    bound_low = number(row.get("price_min")) or current
    bound_high = number(row.get("price_max")) or current
    first = (1.0 - CURVE_MARGIN) * min(bound_low, current)
    last = (1.0 + CURVE_MARGIN) * max(bound_high, current)
    prices = tuple(first + (last - first) * i / (points - 1) for i in range(points))
    ends = [e for e in (number(row.get("elasticity_low")), number(row.get("elasticity_high")))]
    ends_known = [e for e in ends if e is not None] or [elasticity]

    def units_at(e: float) -> list[float]:
        return [base_units * (p / current) ** e for p in prices]

    point = units_at(elasticity)
    spread = [units_at(e) for e in ends_known]
    low = [min(values) for values in zip(*spread, strict=True)]
    high = [max(values) for values in zip(*spread, strict=True)]
    cost = number(row.get("unit_cost"))
    margin = None
    if cost is not None:
        margin = tuple((p - cost) * u for p, u in zip(prices, point, strict=True))
    return PriceCurve(
        product_id=str(row.get("product_id", "")),
        prices=prices,
        units=tuple(point),
        units_low=tuple(low),
        units_high=tuple(high),
        revenue=_times(prices, point),
        revenue_low=_times(prices, low),
        revenue_high=_times(prices, high),
        margin=margin,
        current_price=current,
        recommended_price=recommended,
        stored=False,
    )


def curve_caption(curve: PriceCurve) -> str:
    source = (
        tr("the model's curve stored with this computation")
        if curve.stored
        else tr("rebuilt from this product's stored elasticity")
    )
    parts = [
        tr("Shaded: the range the model considers plausible."),
        tr("Curve: {source}.").format(source=source),
    ]
    if curve.margin is None:
        parts.append(tr("No margin curve: this product's unit cost is not known."))
    return " ".join(parts)


def _from_stored(stored: Mapping[str, Any]) -> PriceCurve:
    prices = tuple(p for p in (number(v) for v in sequence(stored.get("prices"))))
    margin = stored.get("margin")
    return PriceCurve(
        product_id=str(stored.get("product_id", "")),
        prices=tuple(p if p is not None else float("nan") for p in prices),
        units=_numbers(stored.get("units")),
        units_low=_numbers(stored.get("units_low")),
        units_high=_numbers(stored.get("units_high")),
        revenue=_numbers(stored.get("revenue")),
        revenue_low=_numbers(stored.get("revenue_low")),
        revenue_high=_numbers(stored.get("revenue_high")),
        margin=_numbers(margin) if isinstance(margin, list) else None,
        current_price=number(stored.get("current_price")),
        recommended_price=number(stored.get("recommended_price")),
        stored=True,
    )


def _numbers(value: Any) -> tuple[float | None, ...]:
    return tuple(number(v) for v in sequence(value))


def _times(prices: Sequence[float], units: Sequence[float]) -> tuple[float, ...]:
    return tuple(p * u for p, u in zip(prices, units, strict=True))


__all__ = ["Cell", "PriceCurve", "curve_caption", "curve_for", "derive_curve", "pricing_table"]
