"""Market statistics: the summed, noised basket counts of at least five shops, and what they say.

The coordinator only ever holds the SecAgg+ sum of the nodes' noised counts, and nothing at all
is published from a round with fewer than ``MIN_CONTRIBUTORS`` (5) shops. ``publish`` then
applies two rules per category, counted from the shops' "sells this category" flags:
- market trends (weekly indices) only for categories at least 5 shops sell (k >= 5);
- associations (category and pair counts, for bundles) only for categories at least
  ``MIN_SELLERS_FOR_ASSOCIATIONS`` (2) shops sell, so no published count is one shop's alone.
  Every pair count is still a sum over all 5+ participants' noised vectors and each shop's
  counts are DP-noised at the basket level; a category sold by few shops carries more noise
  relative to its counts, which the association ranking accounts for.
Withheld figures are dropped, not sent; the reason is. Nodes read the published statistics back
for bundles (associations) and market trends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from shared.insights.basket_stats import BasketStats, pair_index

MIN_CONTRIBUTORS = 5
MIN_SELLERS_FOR_ASSOCIATIONS = 2
FORMAT = "retail-market-statistics/1"


@dataclass(frozen=True)
class MarketStatistics:
    """Published statistics: counts per category and pair, None where withheld."""

    contributors: int
    categories: tuple[str, ...]
    weeks: tuple[date, ...]
    baskets: float
    singles: dict[str, float]
    pairs: dict[tuple[str, str], float]
    weekly: dict[str, list[float]]
    category_contributors: dict[str, int]
    withheld: dict[str, str]  # category -> why its trend is withheld
    campaign: str = ""
    # False when nodes counted the weeks up to their own last day of data (no common end date
    # was set): then ``weeks`` are placeholders and each node labels them with its own weeks.
    aligned: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "campaign": self.campaign,
                "contributors": self.contributors,
                "categories": list(self.categories),
                "weeks": [w.isoformat() for w in self.weeks],
                "baskets": round(self.baskets, 3),
                "singles": {k: round(v, 3) for k, v in self.singles.items()},
                "pairs": [[a, b, round(v, 3)] for (a, b), v in self.pairs.items()],
                "weekly": {k: [round(x, 3) for x in v] for k, v in self.weekly.items()},
                "category_contributors": self.category_contributors,
                "withheld": self.withheld,
                "aligned": self.aligned,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MarketStatistics:
        """Parse and check published statistics (they arrive over the network: never trusted)."""
        try:
            raw = json.loads(text)
            if raw.get("format") != FORMAT:
                raise ValueError(f"not {FORMAT}")
            categories = tuple(str(c) for c in raw["categories"])
            known = set(categories)
            pairs = {(str(a), str(b)): float(v) for a, b, v in raw["pairs"]}
            if any(a not in known or b not in known for a, b in pairs):
                raise ValueError("pair of unknown categories")
            return cls(
                contributors=int(raw["contributors"]),
                categories=categories,
                weeks=tuple(date.fromisoformat(w) for w in raw["weeks"]),
                baskets=float(raw["baskets"]),
                singles={str(k): float(v) for k, v in raw["singles"].items() if k in known},
                pairs=pairs,
                weekly={
                    str(k): [float(x) for x in v] for k, v in raw["weekly"].items() if k in known
                },
                category_contributors={
                    str(k): int(v) for k, v in raw["category_contributors"].items()
                },
                withheld={str(k): str(v) for k, v in raw["withheld"].items()},
                campaign=str(raw.get("campaign", "")),
                aligned=bool(raw.get("aligned", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"market statistics are malformed: {exc}") from exc


def publish(
    total: np.ndarray,
    contributors: int,
    categories: tuple[str, ...],
    weeks: tuple[date, ...],
    *,
    campaign: str = "",
    aligned: bool = True,
    min_contributors: int = MIN_CONTRIBUTORS,
) -> MarketStatistics:
    """From the SecAgg+ sum over ``contributors`` nodes to what may be published (k-rule)."""
    summed = BasketStats.from_vector(total, categories, weeks)
    per_category = np.rint(summed.contributes).astype(int)
    withheld: dict[str, str] = {}
    trending: list[int] = []
    associated: list[int] = []
    for index, code in enumerate(categories):
        count = max(int(per_category[index]), 0)
        if contributors < min_contributors:
            withheld[code] = (
                f"only {contributors} retailers took part; {min_contributors} are needed"
            )
            continue
        if count >= MIN_SELLERS_FOR_ASSOCIATIONS:
            associated.append(index)
        if count >= min_contributors:
            trending.append(index)
        else:
            withheld[code] = f"sold by {count} retailers; {min_contributors} are needed"
    table = pair_index(len(categories))
    pairs = {
        (categories[a], categories[b]): float(summed.pairs[table[a, b]])
        for i, a in enumerate(associated)
        for b in associated[i + 1 :]
    }
    return MarketStatistics(
        contributors=contributors,
        categories=categories,
        weeks=weeks,
        baskets=summed.baskets if contributors >= min_contributors else 0.0,
        singles={categories[i]: float(summed.singles[i]) for i in associated},
        pairs=pairs,
        weekly={categories[i]: summed.weekly[i].tolist() for i in trending},
        category_contributors={c: int(per_category[i]) for i, c in enumerate(categories)},
        withheld=withheld,
        campaign=campaign,
        aligned=aligned,
    )


@dataclass(frozen=True)
class Association:
    """How much more often two categories share a basket than chance across the market."""

    first: str
    second: str
    together: float  # noised baskets holding both
    support: float  # share of baskets holding both
    confidence: float  # P(second | first), the larger of the two directions
    lift: float  # P(both) / (P(first) P(second))
    z: float  # evidence: (together - expected) / sqrt(expected + noise variance)


def associations(market: MarketStatistics, noise_sd: float = 0.0) -> list[Association]:
    """Category pairs ranked by evidence of co-purchase (z), strongest first.

    Ranking by lift alone puts rare pairs first, whose few noised baskets give huge ratios; the
    z-score weighs the excess by how much of it could be chance or DP noise. ``noise_sd`` is the
    standard deviation of the noise in one summed cell, if known.
    """
    total = max(market.baskets, 1.0)
    out = []
    for (a, b), together in market.pairs.items():
        na, nb = market.singles.get(a, 0.0), market.singles.get(b, 0.0)
        if na <= 0 or nb <= 0:
            continue
        expected = na * nb / total
        positive = max(together, 0.0)
        out.append(
            Association(
                first=a,
                second=b,
                together=together,
                support=positive / total,
                confidence=min(1.0, positive / min(na, nb)),
                lift=positive / expected if expected > 0 else 0.0,
                z=(together - expected) / math.sqrt(expected + noise_sd**2 + 1.0),
            )
        )
    return sorted(out, key=lambda item: item.z, reverse=True)


def market_summary(market: MarketStatistics) -> dict[str, Any]:
    return {
        "contributors": market.contributors,
        "baskets": round(market.baskets),
        "categories_in_associations": len(market.singles),
        "pairs_published": len(market.pairs),
        "categories_in_trends": len(market.weekly),
        "trends_withheld": len(market.withheld),
    }
