"""Pricing insight: a recommended price per product, with intervals from the model's uncertainty.

Runs on the retailer's machine from the federated demand model and this retailer's own data
(an ``InsightContext``). Per product it reports the current price, the price that maximises
margin (revenue when the unit cost is unknown) inside the retailer's bounds, the elasticity
used, the expected revenue and margin change over the horizon, and where the current price
sits against the competitor's.

Anti-collusion: recommendations use ONLY this retailer's own prices and costs
(``ctx.products``) and the federated model, which carries elasticities and never any other
shop's prices. The competitor price is never a target: it only sets ``market_position`` and
enters demand through the model's existing competitor term, held at its last known value.

Demand over the horizon (default the 28 days after ``ctx.last_date``) is the model's forecast
at today's price with the calendar of those days, no promotion and the competitor price at its
last known value. Only the price varies after that, and the model's elasticity is constant, so
``units(p) = units(current) * (p / current) ** elasticity`` and the optimum is closed-form
(``price_math``). Uncertainty comes from the model: the raw (pre-softplus) elasticity
parameter is drawn from the normal given by the cluster-robust sandwich of
``shared.model.elasticity_intervals``, the optimum is recomputed for every draw, and intervals
are percentiles of the draws (fixed seed, so results repeat). Where the sandwich cannot be
trusted (no price variation in the category, or fewer than ``MIN_PRODUCTS_FOR_INTERVAL``
products with price variation, one cluster having no spread) a wide prior is used instead and
``note`` says so. The reported elasticity interval is the same draws' percentiles, so it matches
the sandwich interval at ``settings.level`` up to Monte Carlo error.

Two guards keep a weakly identified model from producing absurd volumes, each flagged in
``note``: the forecast's calendar terms are held to the range the product's own history saw
(see ``_horizon_units``), and an elasticity interval reaching past -6 is called indicative.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from shared.insights.context import InsightContext
from shared.insights.price_math import (
    PRIOR_SE_RAW,
    antithetic_normals,
    elasticity_draws,
    evaluate,
    feasible_range,
    optimal_price,
    quantiles,
)
from shared.model import (
    DemandData,
    DemandModel,
    Interval,
    calendar_features,
    elasticity_intervals,
)

__all__ = [
    "PriceCurve",
    "PriceRecommendation",
    "PricingSettings",
    "market_position",
    "optimal_price",
    "price_curve",
    "recommend_prices",
]

# The current price is "level" with the competitor's within this relative distance.
LEVEL_TOLERANCE = 0.02
# The sandwich is clustered by product: with a single product it has no spread to measure.
MIN_PRODUCTS_FOR_INTERVAL = 2
# Elasticities closer to zero than this barely respond to price: the bound decides.
FLAT_ELASTICITY = 0.1
# A product unsold for longer than this may be delisted; the forecast assumes it is not.
STALE_DAYS = 56
# Elasticities beyond this are implausible for retail: an interval reaching past it is flagged.
WIDE_ELASTICITY = 6.0
INTERVAL_CACHE_SIZE = 4
_INTERVAL_CACHE: dict[tuple[int, bytes], tuple[weakref.ref[DemandData], dict[str, Interval]]] = {}
# The what-if curve reaches this share beyond the bounds on either side.
CURVE_MARGIN = 0.05


@dataclass(frozen=True)
class PricingSettings:
    """Retailer-level choices: bounds relative to the current price, horizon and intervals."""

    lower: float = 0.8
    upper: float = 1.2
    horizon_days: int = 28
    level: float = 0.9
    draws: int = 400
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.lower <= 1 <= self.upper <= 3:
            raise ValueError(f"need 0 < lower <= 1 <= upper <= 3, got {self.lower}, {self.upper}")
        if self.horizon_days < 1:
            raise ValueError("horizon_days must be at least 1")
        if not 0 < self.level < 1:
            raise ValueError("level must be between 0 and 1")
        if self.draws < 2:
            raise ValueError("draws must be at least 2")


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class PriceRecommendation:
    """One product's recommendation; units, revenue and margin changes are over the horizon."""

    product_id: str
    category: str
    current_price: float
    recommended_price: float
    recommended_low: float
    recommended_high: float
    price_min: float
    price_max: float
    unit_cost: float | None
    elasticity: float
    elasticity_low: float
    elasticity_high: float
    objective: str  # "margin" | "revenue"
    expected_units: float
    revenue_change: float
    revenue_change_low: float
    revenue_change_high: float
    margin_change: float | None
    margin_change_low: float | None
    margin_change_high: float | None
    competitor_price: float | None
    market_position: str  # "below" | "level" | "above" | "unknown"
    note: str

    @property
    def improvement(self) -> float:
        """The change in the quantity being maximised (margin, else revenue)."""
        if self.objective == "margin" and self.margin_change is not None:
            return self.margin_change
        return self.revenue_change

    def to_row(self) -> dict[str, Any]:
        """A JSON-able dict; non-finite numbers become None."""
        row: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            row[name] = _json_float(value) if isinstance(value, float) else value
        return row


@dataclass(frozen=True)
class PriceCurve:
    """Demand, revenue and margin over a price grid, for the what-if chart.

    ``units*`` and ``revenue*`` are totals over the horizon; the bands are the elasticity
    interval's spread at each price. ``margin`` is None without a unit cost.
    """

    product_id: str
    prices: tuple[float, ...]
    units: tuple[float, ...]
    units_low: tuple[float, ...]
    units_high: tuple[float, ...]
    revenue: tuple[float, ...]
    revenue_low: tuple[float, ...]
    revenue_high: tuple[float, ...]
    margin: tuple[float, ...] | None
    current_price: float
    recommended_price: float

    def to_row(self) -> dict[str, Any]:
        """A JSON-able dict with lists; non-finite numbers become None."""
        row: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, tuple):
                row[name] = [_json_float(v) for v in value]
            elif isinstance(value, float):
                row[name] = _json_float(value)
            else:
                row[name] = value
        return row


@dataclass(frozen=True)
class _Inputs:
    """Everything the arithmetic needs for one product, taken from the context."""

    product_id: str
    category: str
    current_price: float
    unit_cost: float | None
    competitor_price: float | None
    bound_low: float
    bound_high: float
    base_units: float
    raw: float
    se_raw: float
    notes: tuple[str, ...]


def _known(value: Any) -> float | None:
    """A positive finite number, else None (missing cost or competitor price)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def market_position(current_price: float, competitor_price: float | None) -> str:
    """Own price against the competitor's: "level" within 2%, else "below"/"above"."""
    if competitor_price is None:
        return "unknown"
    ratio = current_price / competitor_price
    if abs(ratio - 1.0) <= LEVEL_TOLERANCE:
        return "level"
    return "below" if ratio < 1.0 else "above"


def _model_digest(model: DemandModel) -> bytes:
    digest = hashlib.sha256()
    for value in model.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.digest()


def _intervals(model: DemandModel, data: DemandData) -> dict[str, Interval]:
    """``elasticity_intervals``, remembered for the last few (model, data) pairs.

    The sandwich takes seconds on a large shop and every what-if curve needs it; the key is the
    data object (held weakly, so a recycled id cannot match) and a hash of the parameters, so a
    changed model is never served stale intervals. Only ``standard_error`` is used, which does
    not depend on the level.
    """
    key = (id(data), _model_digest(model))
    hit = _INTERVAL_CACHE.get(key)
    if hit is not None and hit[0]() is data:
        return hit[1]
    intervals = elasticity_intervals(model, data)
    _INTERVAL_CACHE[key] = (weakref.ref(data), intervals)
    while len(_INTERVAL_CACHE) > INTERVAL_CACHE_SIZE:
        _INTERVAL_CACHE.pop(next(iter(_INTERVAL_CACHE)))
    return intervals


def _elasticity_parameters(ctx: InsightContext) -> dict[str, tuple[float, float, str]]:
    """Per category ``(raw, se_raw, note)``; the note is empty unless the prior is used."""
    model = ctx.model
    data = ctx.data
    intervals = _intervals(model, data)
    raw = model.elasticity_raw.weight.detach().squeeze(-1).double().numpy()
    moving = data.drivers[:, 0].abs().numpy() > 1e-9
    pairs = np.unique(
        np.stack([data.category.numpy()[moving], data.product.numpy()[moving]], axis=1), axis=0
    )
    varying = np.bincount(pairs[:, 0], minlength=len(model.categories)) if len(pairs) else None
    out: dict[str, tuple[float, float, str]] = {}
    for index, code in enumerate(model.categories):
        r = float(raw[index])
        interval = intervals.get(code)
        slope = 1.0 / (1.0 + math.exp(-r)) if r > -700 else 0.0
        products = int(varying[index]) if varying is not None else 0
        if interval is None:
            reason = "no price variation in this category"
        elif products < MIN_PRODUCTS_FOR_INTERVAL:
            reason = f"only {products} product with price changes in this category"
        elif not (slope > 0 and math.isfinite(interval.standard_error)):
            reason = "the model's interval is degenerate"
        else:
            out[code] = (r, interval.standard_error / slope, "")
            continue
        out[code] = (
            r,
            PRIOR_SE_RAW,
            f"elasticity interval from a wide prior ({reason}), not from the data",
        )
    return out


def _calendar_ranges(ctx: InsightContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calendar weights per category and, per product, the lowest and highest calendar term
    over the product's own history."""
    model = ctx.model
    data = ctx.data
    weights = (model.category_calendar.weight + model.calendar.weight).detach().double().numpy()
    product = data.product.numpy()
    seen = (weights[data.category.numpy()] * data.calendar.double().numpy()).sum(axis=1)
    low = np.full(len(model.product_ids), np.inf)
    high = np.full(len(model.product_ids), -np.inf)
    np.minimum.at(low, product, seen)
    np.maximum.at(high, product, seen)
    return weights, low, high


def _horizon_units(
    ctx: InsightContext, facts: pd.DataFrame, horizon_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Expected units per product over the horizon at the current price (model forecast), and
    whether the seasonal guard below changed a product's forecast by more than 5%.

    Future days use their own calendar terms, no promotion and the last known competitor price.
    Guard: each day's calendar term is held inside the range it took over the product's own
    history. The yearly terms are fitted on at most a year of data and, for a category with few
    products, can reach unseen months (and a product's offset, fitted on a few days, can reach
    unseen weekdays) with multipliers in the hundreds.
    """
    model = ctx.model
    position = {pid: i for i, pid in enumerate(model.product_ids)}
    code_index = {code: i for i, code in enumerate(model.categories)}
    days = ctx.last_date + np.arange(1, horizon_days + 1).astype("timedelta64[D]")
    calendar = calendar_features(days)
    n = len(facts)
    reference = facts["reference_price"].to_numpy(np.float64)
    current = facts["current_price"].to_numpy(np.float64)
    competitor = facts["competitor_price"].to_numpy(np.float64)
    present = np.isfinite(competitor) & (competitor > 0)
    drivers = np.zeros((n, 4), dtype=np.float64)
    drivers[:, 0] = np.log(current / reference)
    drivers[present, 2] = np.log(competitor[present] / reference[present])
    drivers[:, 3] = present
    product = np.array([position[str(pid)] for pid in facts.index], dtype=np.int64)
    category = np.array([code_index[str(code)] for code in facts["category"]], dtype=np.int64)
    with torch.no_grad():
        log_mean = model(
            torch.from_numpy(np.repeat(product, horizon_days)),
            torch.from_numpy(np.repeat(category, horizon_days)),
            torch.from_numpy(np.repeat(drivers, horizon_days, axis=0).astype(np.float32)),
            torch.from_numpy(np.tile(calendar, (n, 1))),
        )
    raw = log_mean.double().numpy().reshape(n, horizon_days)
    weights, low, high = _calendar_ranges(ctx)
    term = weights[category] @ calendar.astype(np.float64).T  # (n, horizon)
    held = np.clip(term, low[product, None], high[product, None])
    units = np.exp(raw - term + held).sum(axis=1)
    unguarded = np.exp(raw).sum(axis=1)
    changed = np.abs(unguarded - units) > 0.05 * units
    return np.asarray(units, dtype=np.float64), np.asarray(changed, dtype=bool)


def _inputs(
    ctx: InsightContext,
    settings: PricingSettings,
    overrides: Mapping[str, tuple[float, float]] | None,
    only: str | None = None,
) -> list[_Inputs]:
    """Per product, the facts, bounds, forecast and elasticity parameters (own data only)."""
    facts = ctx.products
    facts = facts.loc[np.isfinite(facts["current_price"]) & (facts["current_price"] > 0)]
    overrides = dict(overrides or {})
    unknown = sorted(set(map(str, overrides)) - {str(pid) for pid in facts.index})
    if unknown:
        raise KeyError(f"price bounds given for unknown products: {', '.join(unknown[:5])}")
    if only is not None:
        facts = facts.loc[[pid for pid in facts.index if str(pid) == only]]
        if facts.empty:
            raise KeyError(f"product {only!r} is not among this shop's priced products")
    if facts.empty:
        return []
    units, guarded = _horizon_units(ctx, facts, settings.horizon_days)
    elasticity = _elasticity_parameters(ctx)
    stale_before = pd.Timestamp(ctx.last_date) - pd.Timedelta(days=STALE_DAYS)
    out = []
    for (pid, row), base_units, held in zip(facts.iterrows(), units, guarded, strict=True):
        current = float(row["current_price"])
        if str(pid) in overrides:
            low, high = (float(v) for v in overrides[str(pid)])
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ValueError(f"{pid}: bounds must satisfy 0 < min <= max, got {low}, {high}")
        else:
            low, high = settings.lower * current, settings.upper * current
        raw, se_raw, note = elasticity[str(row["category"])]
        notes = [note] if note else []
        if held:
            notes.append("seasonal terms held to the range seen in this shop's history")
        last_sale = row.get("last_sale")
        if last_sale is not None and not pd.isna(last_sale) and last_sale < stale_before:
            notes.append(f"last sold {pd.Timestamp(last_sale).date()}: assumes still on sale")
        out.append(
            _Inputs(
                product_id=str(pid),
                category=str(row["category"]),
                current_price=current,
                unit_cost=_known(row.get("unit_cost")),
                competitor_price=_known(row.get("competitor_price")),
                bound_low=low,
                bound_high=high,
                base_units=float(base_units),
                raw=raw,
                se_raw=se_raw,
                notes=tuple(notes),
            )
        )
    return out


def _recommend(
    item: _Inputs, settings: PricingSettings, normals: np.ndarray
) -> PriceRecommendation:
    outcome = evaluate(
        current_price=item.current_price,
        base_units=item.base_units,
        raw=item.raw,
        se_raw=item.se_raw,
        unit_cost=item.unit_cost,
        price_min=item.bound_low,
        price_max=item.bound_high,
        normals=normals,
        level=settings.level,
    )
    price_min, price_max, cost_above = feasible_range(
        item.unit_cost, item.bound_low, item.bound_high
    )
    notes = list(item.notes)
    if cost_above:
        notes.append(
            f"unit cost {item.unit_cost:.2f} is above the upper bound {item.bound_high:.2f}:"
            " recommending the upper bound, which still sells at a loss"
        )
    if -outcome.elasticity < FLAT_ELASTICITY:
        notes.append("demand barely responds to price in the model: the bound sets the price")
    if outcome.elasticity_low < -WIDE_ELASTICITY:
        notes.append(
            f"the data barely pin down the elasticity (interval {outcome.elasticity_low:.1f} to"
            f" {outcome.elasticity_high:.1f}): the impact range is indicative only"
        )
    if outcome.recommended_low < item.current_price < outcome.recommended_high:
        notes.append("the interval spans both a price cut and a rise: the direction is uncertain")
    return PriceRecommendation(
        product_id=item.product_id,
        category=item.category,
        current_price=item.current_price,
        recommended_price=outcome.recommended,
        recommended_low=outcome.recommended_low,
        recommended_high=outcome.recommended_high,
        price_min=price_min,
        price_max=price_max,
        unit_cost=item.unit_cost,
        elasticity=outcome.elasticity,
        elasticity_low=outcome.elasticity_low,
        elasticity_high=outcome.elasticity_high,
        objective="revenue" if item.unit_cost is None else "margin",
        expected_units=outcome.expected_units,
        revenue_change=outcome.revenue_change,
        revenue_change_low=outcome.revenue_change_low,
        revenue_change_high=outcome.revenue_change_high,
        margin_change=outcome.margin_change,
        margin_change_low=outcome.margin_change_low,
        margin_change_high=outcome.margin_change_high,
        competitor_price=item.competitor_price,
        market_position=market_position(item.current_price, item.competitor_price),
        note="; ".join(notes),
    )


def recommend_prices(
    ctx: InsightContext,
    settings: PricingSettings = PricingSettings(),
    overrides: Mapping[str, tuple[float, float]] | None = None,
) -> list[PriceRecommendation]:
    """A recommendation per product, best expected improvement first.

    ``overrides`` maps a product id to the retailer's absolute ``(min, max)`` price bounds,
    replacing the relative ``settings.lower``/``settings.upper`` for that product.
    """
    normals = antithetic_normals(settings.draws, settings.seed)
    out = [_recommend(item, settings, normals) for item in _inputs(ctx, settings, overrides)]
    return sorted(out, key=lambda r: (-r.improvement, r.product_id))


def price_curve(
    ctx: InsightContext,
    product_id: str,
    settings: PricingSettings = PricingSettings(),
    points: int = 41,
) -> PriceCurve:
    """What-if curve for one product over its bounds, widened a little on either side."""
    if points < 2:
        raise ValueError("points must be at least 2")
    (item,) = _inputs(ctx, settings, None, only=str(product_id))
    normals = antithetic_normals(settings.draws, settings.seed)
    recommendation = _recommend(item, settings, normals)
    first = (1.0 - CURVE_MARGIN) * min(item.bound_low, item.current_price)
    last = (1.0 + CURVE_MARGIN) * max(item.bound_high, item.current_price)
    prices = np.linspace(first, last, points)
    ratio = prices / item.current_price
    point = item.base_units * ratio**recommendation.elasticity
    draws = elasticity_draws(item.raw, item.se_raw, normals)
    spread = item.base_units * ratio[None, :] ** draws[:, None]
    low, high = quantiles(spread, settings.level)

    def values(array: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in array)

    margin = None if item.unit_cost is None else values((prices - item.unit_cost) * point)
    return PriceCurve(
        product_id=item.product_id,
        prices=values(prices),
        units=values(point),
        units_low=values(low),
        units_high=values(high),
        revenue=values(prices * point),
        revenue_low=values(prices * low),
        revenue_high=values(prices * high),
        margin=margin,
        current_price=item.current_price,
        recommended_price=recommendation.recommended_price,
    )
