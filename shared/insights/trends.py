"""Market trends: weekly demand index per category from statistics of at least five shops.

The index is the market's weekly count of baskets holding the category, relative to its mean
over the window (100 = an average week). It comes only from published market statistics, which
already withhold any category fewer than five retailers sell (k >= 5); such categories appear
here as withheld, with the reason, never with numbers. Beside it, the shop's own index from its
own baskets (which never left the machine) shows whether it follows the market.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.insights.basket_stats import NoBasketsError, count_baskets, week_window
from shared.insights.context import InsightContext
from shared.insights.market import MIN_CONTRIBUTORS, MarketStatistics

RECENT_WEEKS = 4


@dataclass(frozen=True)
class CategoryTrend:
    category: str
    weeks: tuple[str, ...]
    index: tuple[float | None, ...]
    own_index: tuple[float | None, ...]
    contributors: int
    status: str  # published | withheld
    reason: str
    change_pct: float | None  # last RECENT_WEEKS weeks against the RECENT_WEEKS before

    def to_row(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "weeks": list(self.weeks),
            "index": list(self.index),
            "own_index": list(self.own_index),
            "contributors": self.contributors,
            "status": self.status,
            "reason": self.reason,
            "change_pct": self.change_pct,
        }


def demand_index(counts: np.ndarray) -> np.ndarray:
    """100 x counts / their mean (an average week is 100); noise may push a count below 0."""
    clipped = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    mean = clipped.mean() if clipped.size else 0.0
    if mean <= 0:
        return np.full(clipped.shape, np.nan)
    return 100.0 * clipped / mean


def recent_change(index: np.ndarray, weeks: int = RECENT_WEEKS) -> float | None:
    if len(index) < 2 * weeks or not np.isfinite(index[-2 * weeks :]).all():
        return None
    before, after = index[-2 * weeks : -weeks].mean(), index[-weeks:].mean()
    return float(100.0 * (after - before) / before) if before > 0 else None


def market_trends(ctx: InsightContext, market: MarketStatistics | None) -> list[CategoryTrend]:
    """One row per taxonomy category: published with its index, or withheld with the reason."""
    own_weeks = week_window(ctx.last_date.astype(object))
    weeks = market.weeks if market is not None and market.aligned else own_weeks
    labels = tuple(w.isoformat() for w in weeks)
    try:
        own = count_baskets(ctx.frame, end=weeks[-1], weeks=len(weeks))
        own_weekly = dict(zip(own.categories, own.weekly, strict=True))
    except NoBasketsError:
        own_weekly = {}
    codes = market.categories if market is not None else ctx.data.categories
    out = []
    for code in codes:
        own_index = _values(demand_index(own_weekly[code])) if code in own_weekly else ()
        if market is None:
            out.append(
                CategoryTrend(code, labels, (), own_index, 0, "withheld",
                              "no market statistics yet: take part in a campaign that collects "
                              "basket statistics", None)
            )  # fmt: skip
            continue
        contributors = market.category_contributors.get(code, 0)
        if code in market.withheld or code not in market.weekly:
            reason = market.withheld.get(
                code, f"fewer than {MIN_CONTRIBUTORS} retailers contributed"
            )
            out.append(
                CategoryTrend(code, labels, (), own_index, contributors, "withheld", reason, None)
            )
            continue
        index = demand_index(np.array(market.weekly[code]))
        out.append(
            CategoryTrend(
                category=code,
                weeks=labels,
                index=_values(index),
                own_index=own_index,
                contributors=contributors,
                status="published",
                reason=f"{contributors} retailers contributed",
                change_pct=recent_change(index),
            )
        )
    return out


def _values(array: np.ndarray) -> tuple[float | None, ...]:
    return tuple(round(float(v), 2) if np.isfinite(v) else None for v in array)
