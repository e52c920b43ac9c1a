"""Bundle suggestions: which of this shop's products to sell together, at what price, for whom.

Which categories go together comes from the market (the published, noised basket statistics of
at least five shops, see ``market``); which products, at what price and for which customers
comes from this shop alone (its own current prices, costs, best sellers, baskets and segments).

The bundle discount is a multi-objective choice (design property 13): the shop's revenue (or
margin when costs are known) under the federated model's elasticities, against a customer-value
proxy, the discount depth weighted by how strongly the items belong together. New products, which
have no basket history yet, get suggestions through their category (property 12).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared.insights.basket_stats import NoBasketsError, basket_keys
from shared.insights.context import InsightContext
from shared.insights.market import Association, MarketStatistics, associations

NEW_PRODUCT_DAYS = 28
RECENT_DAYS = 28
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class BundleSettings:
    max_bundles: int = 10
    revenue_weight: float = 0.7  # the rest weighs the customer-value proxy
    discounts: tuple[float, ...] = (0.0, 0.05, 0.10, 0.15, 0.20)
    min_lift: float = 1.1
    min_evidence: float = 2.0  # z-score of the market association
    products_per_category: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.revenue_weight <= 1.0:
            raise ValueError("revenue_weight must be in [0, 1]")
        if not self.discounts or any(not 0.0 <= d < 0.9 for d in self.discounts):
            raise ValueError("discounts must be in [0, 0.9)")


@dataclass(frozen=True)
class BundleRecommendation:
    """The design's BundleRecommendation plus the reasoning a shop owner can check."""

    bundle_id: str
    products: tuple[str, ...]
    categories: tuple[str, ...]
    bundle_price: float
    individual_prices: tuple[float, ...]
    discount_pct: float
    expected_lift: float
    confidence: float
    target_segments: tuple[str, ...]
    score: float
    revenue_index: float  # expected bundle revenue (or margin) relative to no discount
    customer_value: float
    context: str
    new_product: bool = False
    notes: tuple[str, ...] = field(default=())

    def to_row(self) -> dict[str, Any]:
        return {
            "bundle_id": self.bundle_id,
            "products": list(self.products),
            "categories": list(self.categories),
            "bundle_price": self.bundle_price,
            "individual_prices": list(self.individual_prices),
            "discount_pct": self.discount_pct,
            "expected_lift": self.expected_lift,
            "confidence": self.confidence,
            "target_segments": list(self.target_segments),
            "score": self.score,
            "revenue_index": self.revenue_index,
            "customer_value": self.customer_value,
            "context": self.context,
            "new_product": self.new_product,
            "notes": list(self.notes),
        }


def choose_discount(
    prices: Sequence[float],
    costs: Sequence[float | None],
    elasticity: float,
    affinity: float,
    settings: BundleSettings,
) -> tuple[float, float, float, float]:
    """(discount, score, revenue index, customer value) of the best discount on the grid.

    Revenue index: units scale by (1 - d)^elasticity, price by (1 - d); with every cost known
    it is the margin ratio instead. Customer value: discount depth times affinity (in [0, 1]).
    A discount that would sell below the items' total cost is never chosen.
    """
    total = float(sum(prices))
    known_costs = [c for c in costs if c is not None and math.isfinite(c)]
    cost = float(sum(known_costs)) if len(known_costs) == len(costs) and costs else None
    best = (0.0, -math.inf, 1.0, 0.0)
    for d in settings.discounts:
        units = (1.0 - d) ** elasticity
        if cost is not None:
            if total * (1.0 - d) < cost:
                continue
            base = total - cost
            index = ((total * (1.0 - d) - cost) * units / base) if base > 0 else 0.0
        else:
            index = (1.0 - d) * units
        value = d * affinity
        score = settings.revenue_weight * (index - 1.0) + (1.0 - settings.revenue_weight) * value
        if score > best[1] + 1e-12:
            best = (d, score, index, value)
    return best


def recommend_bundles(
    ctx: InsightContext,
    market: MarketStatistics,
    settings: BundleSettings | None = None,
    *,
    noise_sd: float = 0.0,
) -> list[BundleRecommendation]:
    """Bundles of this shop's products for the market's strongest category associations."""
    settings = settings or BundleSettings()
    products = ctx.products
    sold = set(products["category"])
    elasticities = ctx.model.elasticities()
    local = _LocalBaskets.from_frame(ctx.frame, ctx.products)
    out: list[BundleRecommendation] = []
    for pair in associations(market, noise_sd):
        if len(out) >= settings.max_bundles:
            break
        if pair.lift < settings.min_lift or pair.z < settings.min_evidence:
            continue
        if pair.first not in sold or pair.second not in sold:
            continue
        out.extend(
            _bundles_for(pair, ctx, local, elasticities, settings)[
                : settings.max_bundles - len(out)
            ]
        )
    return sorted(out, key=lambda b: b.score, reverse=True)


def _bundles_for(
    pair: Association,
    ctx: InsightContext,
    local: _LocalBaskets,
    elasticities: dict[str, float],
    settings: BundleSettings,
) -> list[BundleRecommendation]:
    products = ctx.products
    last = pd.Timestamp(ctx.last_date)
    chosen: dict[str, list[str]] = {}
    new_ids: set[str] = set()
    for code in (pair.first, pair.second):
        in_category = products.loc[products["category"] == code]
        active = in_category.loc[in_category["last_sale"] >= last - pd.Timedelta(days=RECENT_DAYS)]
        top = active.sort_values("units_sold", ascending=False).index[
            : settings.products_per_category
        ]
        fresh = local.new_products(code, last)
        new_ids |= set(fresh)
        chosen[code] = list(dict.fromkeys([*top, *fresh]))[: settings.products_per_category + 1]
    elasticity = float(np.mean([elasticities[pair.first], elasticities[pair.second]]))
    segments = local.segments_for(pair.first, pair.second)
    season = local.season_for(pair.first, pair.second)
    bundles = []
    for first in chosen[pair.first]:
        for second in chosen[pair.second]:
            items = (str(first), str(second))
            prices = [float(products["current_price"].loc[p]) for p in items]
            costs = [_optional(products["unit_cost"].loc[p]) for p in items]
            promoted = [p for p in items if local.on_promotion(p)]
            grid = settings
            notes = []
            if promoted:  # do not stack a bundle discount on a running promotion
                grid = BundleSettings(
                    **{**settings.__dict__, "discounts": tuple(
                        d for d in settings.discounts if d <= 0.05
                    )}
                )  # fmt: skip
                notes.append("an item is on promotion: bundle discount kept at 5% or less")
            discount, score, index, value = choose_discount(
                prices, costs, elasticity, pair.confidence, grid
            )
            is_new = any(p in new_ids for p in items)
            if is_new:
                notes.append("new product: suggested through its category's associations")
            context = "; ".join(
                part
                for part in (
                    season,
                    f"market: {pair.first} and {pair.second} are bought together "
                    f"{pair.lift:.1f}x as often as chance",
                )
                if part
            )
            bundles.append(
                BundleRecommendation(
                    bundle_id=_bundle_id(items),
                    products=items,
                    categories=(pair.first, pair.second),
                    bundle_price=round(sum(prices) * (1.0 - discount), 2),
                    individual_prices=tuple(round(p, 2) for p in prices),
                    discount_pct=round(100.0 * discount, 1),
                    expected_lift=round(pair.lift, 3),
                    confidence=round(pair.confidence, 3),
                    target_segments=segments,
                    score=round(score, 5),
                    revenue_index=round(index, 4),
                    customer_value=round(value, 4),
                    context=context,
                    new_product=is_new,
                    notes=tuple(notes),
                )
            )
    bundles.sort(key=lambda b: b.score, reverse=True)
    kept = bundles[:2]
    newest = next((b for b in bundles if b.new_product), None)
    if newest is not None and newest not in kept:  # a new product always gets its suggestion
        kept.append(newest)
    return kept


def _bundle_id(items: Sequence[str]) -> str:
    return "b-" + hashlib.sha256("|".join(sorted(items)).encode()).hexdigest()[:10]


def _optional(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class _LocalBaskets:
    """This shop's own baskets: per basket its categories, segment and month."""

    lines: pd.DataFrame  # basket, category, segment, month, product, day, promotion

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, products: pd.DataFrame) -> _LocalBaskets:
        sold = frame.loc[frame["quantity_sold"] > 0]
        try:
            keys = basket_keys(sold)
        except NoBasketsError:
            keys = pd.Series(pd.NA, index=sold.index, dtype="string")
        lines = pd.DataFrame(
            {
                "basket": keys.to_numpy(),
                "product": sold["product_id"].astype(str).to_numpy(),
                "day": sold["timestamp"].dt.floor("D").to_numpy(),
                "month": sold["timestamp"].dt.month.to_numpy(),
                "segment": (
                    sold["customer_segment"].astype("string").to_numpy()
                    if "customer_segment" in sold.columns
                    else pd.array([pd.NA] * len(sold), dtype="string")
                ),
                "promotion": (
                    sold["promotion_active"].astype("boolean").fillna(False).to_numpy(bool)
                    if "promotion_active" in sold.columns
                    else np.zeros(len(sold), dtype=bool)
                ),
            }
        )
        lines["category"] = lines["product"].map(products["category"]).fillna("other")
        return cls(lines)

    def new_products(self, category: str, last: pd.Timestamp) -> list[str]:
        """Products of ``category`` first sold within the last NEW_PRODUCT_DAYS days."""
        rows = self.lines.loc[self.lines["category"] == category]
        first = rows.groupby("product")["day"].min()
        return sorted(first.index[first >= last - pd.Timedelta(days=NEW_PRODUCT_DAYS)].tolist())

    def on_promotion(self, product: str) -> bool:
        rows = self.lines.loc[self.lines["product"] == product]
        if rows.empty:
            return False
        recent = rows.loc[rows["day"] >= rows["day"].max() - pd.Timedelta(days=7)]
        return bool(recent["promotion"].mean() > 0.5)

    def _both(self, first: str, second: str) -> pd.DataFrame:
        lines = self.lines.dropna(subset=["basket"])
        has = lines.groupby("basket")["category"].agg(lambda c: {first, second} <= set(c))
        return lines.loc[lines["basket"].map(has)].drop_duplicates("basket")

    def segments_for(self, first: str, second: str) -> tuple[str, ...]:
        """Segments over-represented (>= 1.1x their overall share) among baskets with both."""
        both = self._both(first, second).dropna(subset=["segment"])
        every = self.lines.dropna(subset=["basket", "segment"]).drop_duplicates("basket")
        if both.empty or every.empty:
            return ()
        share = both["segment"].value_counts(normalize=True)
        overall = every["segment"].value_counts(normalize=True)
        ratio = (share / overall.reindex(share.index)).dropna().sort_values(ascending=False)
        picked = ratio.index[ratio >= 1.1].tolist() or ratio.index[:1].tolist()
        return tuple(str(s) for s in picked)

    def season_for(self, first: str, second: str) -> str:
        """The month these categories are bought together most, relative to all baskets."""
        both = self._both(first, second)
        every = self.lines.dropna(subset=["basket"]).drop_duplicates("basket")
        if len(both) < 30 or every.empty:
            return ""
        ratio = (
            both["month"].value_counts(normalize=True) / every["month"].value_counts(normalize=True)
        ).dropna()
        if ratio.empty or ratio.max() < 1.15:
            return "bought together all year round"
        month = int(str(ratio.idxmax()))
        return f"bought together most in {MONTHS[month - 1]} ({ratio.max():.1f}x the usual share)"
