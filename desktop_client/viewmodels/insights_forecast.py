"""The forecast view: which product or category to chart, and its series per horizon.

A batch holds, per product and per category, one row per horizon (daily, weekly, monthly) with
the predicted units per period and the interval (80% unless the row says otherwise). The page
offers categories first (what a manager plans stock by), then products.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from desktop_client.viewmodels.insights import tr
from desktop_client.viewmodels.insights_tables import number, sequence
from shared.insights.store import StoredBatch

HORIZONS = ("daily", "weekly", "monthly")
HORIZON_WORDS = {"daily": "Daily", "weekly": "Weekly", "monthly": "Monthly"}


@dataclass(frozen=True)
class ForecastChoice:
    """One entry of the product/category combo box."""

    scope: str  # "category" | "product"
    key: str

    def label(self) -> str:
        if self.scope == "category":
            return tr("Category: {key}").format(key=self.key)
        return tr("Product: {key}").format(key=self.key)


@dataclass(frozen=True)
class ForecastSeries:
    """One horizon's chart: period start dates, predictions and the interval band."""

    choice: ForecastChoice
    horizon: str
    period_starts: tuple[str, ...]
    predicted: tuple[float | None, ...]
    lower: tuple[float | None, ...]
    upper: tuple[float | None, ...]
    level: float | None
    trend_direction: str
    weekly_change_pct: float | None

    def caption(self) -> str:
        level = self.level
        if level is not None and 0 < level <= 1:
            band = tr("Shaded: {level}% interval.").format(level=f"{level * 100:.0f}")
        else:
            band = tr("Shaded: prediction interval.")
        parts = [band]
        if self.trend_direction:
            if self.weekly_change_pct is not None:
                parts.append(
                    tr("Trend: {direction} ({change}% a week).").format(
                        direction=self.trend_direction, change=f"{self.weekly_change_pct:+.1f}"
                    )
                )
            else:
                parts.append(tr("Trend: {direction}.").format(direction=self.trend_direction))
        return " ".join(parts)

    def total(self) -> float | None:
        known = [v for v in self.predicted if v is not None]
        return sum(known) if known else None


def choices(batch: StoredBatch) -> list[ForecastChoice]:
    """Categories (sorted), then products (sorted), each once."""
    seen: dict[tuple[str, str], ForecastChoice] = {}
    for row in batch.rows:
        scope = "category" if row.get("scope") == "category" else "product"
        key = str(row.get("key", ""))
        seen.setdefault((scope, key), ForecastChoice(scope, key))
    rank = {"category": 0, "product": 1}
    return sorted(seen.values(), key=lambda c: (rank[c.scope], c.key.casefold()))


def horizons(batch: StoredBatch, choice: ForecastChoice) -> list[str]:
    """The horizons stored for ``choice``, in daily, weekly, monthly order."""
    found = {str(r.get("horizon")) for r in _rows_of(batch, choice)}
    return [h for h in HORIZONS if h in found] + sorted(found - set(HORIZONS))


def series(batch: StoredBatch, choice: ForecastChoice, horizon: str) -> ForecastSeries | None:
    for row in _rows_of(batch, choice):
        if row.get("horizon") == horizon:
            return _series(choice, row)
    return None


def horizon_label(horizon: str) -> str:
    return tr(HORIZON_WORDS[horizon]) if horizon in HORIZON_WORDS else horizon


def _rows_of(batch: StoredBatch, choice: ForecastChoice) -> list[Mapping[str, Any]]:
    scope_of = {"category": "category"}
    return [
        r
        for r in batch.rows
        if scope_of.get(str(r.get("scope")), "product") == choice.scope
        and str(r.get("key", "")) == choice.key
    ]


def _series(choice: ForecastChoice, row: Mapping[str, Any]) -> ForecastSeries:
    trend = row.get("trend")
    trend_map: Mapping[str, Any] = trend if isinstance(trend, Mapping) else {}
    direction = trend_map.get("direction")
    return ForecastSeries(
        choice=choice,
        horizon=str(row.get("horizon", "")),
        period_starts=tuple(str(s) for s in sequence(row.get("period_starts"))),
        predicted=tuple(number(v) for v in sequence(row.get("predicted"))),
        lower=tuple(number(v) for v in sequence(row.get("lower"))),
        upper=tuple(number(v) for v in sequence(row.get("upper"))),
        level=number(row.get("interval_level")),
        trend_direction=str(direction) if isinstance(direction, str) else "",
        weekly_change_pct=number(trend_map.get("weekly_change_pct")),
    )
