"""Pricing arithmetic without a context: optimal prices, cent rounding and elasticity draws.

Kept apart from ``pricing`` so the rules can be property-tested on generated numbers alone.

The demand model has a constant elasticity ``e`` per category, so over any horizon
``units(p) = units(p0) * (p / p0) ** e`` exactly, whatever the calendar, offset or competitor
terms are. The optimum over a price range is therefore closed-form:

* revenue ``p * units(p)`` grows like ``p ** (1 + e)``: it rises with price when ``e > -1``
  (upper bound), falls when ``e < -1`` (lower bound) and is flat at ``e = -1`` (keep the price);
* margin ``(p - c) * units(p)`` has its only stationary point at the Lerner price
  ``c * e / (1 + e)`` when ``e < -1`` and rises for every ``p > c`` when ``e >= -1`` (upper
  bound); the curve is single-peaked, so clipping the stationary point to the range is optimal.

Every map used here (elasticity -> optimal price, elasticity -> units, revenue or margin at a
fixed price) is monotone in the elasticity. With antithetic normal draws (each ``z`` paired
with ``-z``) at least half the draws fall on either side of the point estimate, so a
lower/upper quantile of any such map can never exclude the value at the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

# When the model's own interval cannot be used, the raw (pre-softplus) elasticity parameter is
# drawn from a normal around the model's estimate with this standard deviation: at an estimate
# of -1 the 90% interval is about -2.3 to -0.3, the range most retail elasticities fall in.
PRIOR_SE_RAW = 1.0
# Quantile rule for intervals: an actual draw, never an interpolation between two (so a
# monotone map of the draws has exactly the mapped quantile, see the module docstring).
QUANTILE_METHOD: Final = "inverted_cdf"


def softplus(x: np.ndarray | float) -> np.ndarray:
    """log(1 + exp(x)) without overflow; the model's elasticity is ``-softplus(raw)``."""
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def raw_from_elasticity(elasticity: float) -> float:
    """Inverse of ``-softplus``: the raw parameter that gives ``elasticity`` (< 0)."""
    if not elasticity < 0:
        raise ValueError("elasticity must be negative")
    return math.log(math.expm1(-elasticity))


def antithetic_normals(draws: int, seed: int) -> np.ndarray:
    """Standard normal draws in ``z, -z`` pairs from a fixed-seed generator (rounded up to even).

    The same numbers serve every product (common random numbers), so a product's interval does
    not depend on which other products are in the list.
    """
    if draws < 2:
        raise ValueError("need at least 2 draws")
    half = np.random.default_rng(seed).standard_normal((draws + 1) // 2)
    return np.concatenate([half, -half])


def elasticity_draws(raw: float, se_raw: float, normals: np.ndarray) -> np.ndarray:
    """Elasticities ``-softplus(raw + se_raw * z)``: the normal lives on the unconstrained
    parameter, as in ``shared.model.uncertainty``, so every draw is negative."""
    return -softplus(raw + se_raw * normals)


def quantiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval over the first axis (the draws)."""
    tail = (1.0 - level) / 2.0
    low = np.quantile(values, tail, axis=0, method=QUANTILE_METHOD)
    high = np.quantile(values, 1.0 - tail, axis=0, method=QUANTILE_METHOD)
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def _check_inputs(
    current_price: float, unit_cost: float | None, price_min: float, price_max: float
) -> None:
    if not (math.isfinite(current_price) and current_price > 0):
        raise ValueError(f"current price must be positive, got {current_price}")
    if not (math.isfinite(price_min) and math.isfinite(price_max) and 0 < price_min <= price_max):
        raise ValueError(f"need 0 < price_min <= price_max, got {price_min}, {price_max}")
    if unit_cost is not None and not (math.isfinite(unit_cost) and unit_cost >= 0):
        raise ValueError(f"unit cost must be a non-negative number or None, got {unit_cost}")


def feasible_range(
    unit_cost: float | None, price_min: float, price_max: float
) -> tuple[float, float, bool]:
    """``(low, high, cost_above_range)``: the bounds raised to the unit cost when it fits.

    The cost does not fit when no cent price at or above it is within the upper bound; the
    range is then left as given and the caller recommends the upper bound and says so. (Taking
    "fits" to the cent keeps the recommendation monotone in the cost.)
    """
    if unit_cost is None:
        return price_min, price_max, False
    if unit_cost > _floor_cent(price_max):
        return price_min, price_max, True
    return max(price_min, unit_cost), price_max, False


def optimal_prices(
    current_price: float,
    elasticity: np.ndarray,
    unit_cost: float | None,
    price_min: float,
    price_max: float,
) -> np.ndarray:
    """Exact (unrounded) optimum for each elasticity; margin when the cost is known."""
    _check_inputs(current_price, unit_cost, price_min, price_max)
    e = np.asarray(elasticity, dtype=np.float64)
    if not np.all(np.isfinite(e) & (e <= 0)):
        raise ValueError("elasticities must be finite and not positive")
    low, high, cost_above = feasible_range(unit_cost, price_min, price_max)
    if cost_above:
        return np.full(e.shape, high)
    elastic = e < -1.0
    if unit_cost is None:
        keep = min(max(current_price, low), high)
        out = np.where(elastic, low, np.where(e > -1.0, high, keep))
    else:
        safe = np.where(elastic, e, -2.0)  # avoids dividing by 1 + e = 0 in the unused branch
        lerner = unit_cost * safe / (1.0 + safe)
        out = np.where(elastic, np.clip(lerner, low, high), high)
    return np.asarray(out, dtype=np.float64)


def _ceil_cent(value: float) -> float:
    cents = math.ceil(round(value * 100.0, 6)) / 100.0
    return cents if cents >= value else (round(cents * 100.0) + 1) / 100.0


def _floor_cent(value: float) -> float:
    cents = math.floor(round(value * 100.0, 6)) / 100.0
    return cents if cents <= value else (round(cents * 100.0) - 1) / 100.0


def round_to_cents(prices: np.ndarray, low: float, high: float) -> np.ndarray:
    """Nearest cent, moved to the nearest cent inside ``[low, high]`` when rounding left it.

    A range narrower than a cent holds no cent value: the prices are then only clipped.
    Rounding is monotone, so it keeps every ordering the optimum has.
    """
    prices = np.asarray(prices, dtype=np.float64)
    first, last = _ceil_cent(low), _floor_cent(high)
    if first > last:
        return np.clip(prices, low, high)
    return np.clip(np.round(prices * 100.0) / 100.0, first, last)


def optimal_price(
    current_price: float,
    elasticity: float,
    unit_cost: float | None,
    price_min: float,
    price_max: float,
) -> float:
    """The price (in cents) that maximises margin, or revenue without a cost, in the range.

    Never below the unit cost unless no cent price from the cost up to ``price_max`` exists:
    then ``price_max`` (rounded down to a cent) is returned, the best the range allows.
    """
    exact = optimal_prices(current_price, np.array([elasticity]), unit_cost, price_min, price_max)
    low, high, _ = feasible_range(unit_cost, price_min, price_max)
    return float(round_to_cents(exact, low, high)[0])


@dataclass(frozen=True)
class Outcome:
    """One product's recommendation with intervals; units and changes are over the horizon."""

    recommended: float
    recommended_low: float
    recommended_high: float
    elasticity: float
    elasticity_low: float
    elasticity_high: float
    expected_units: float
    revenue_change: float
    revenue_change_low: float
    revenue_change_high: float
    margin_change: float | None
    margin_change_low: float | None
    margin_change_high: float | None


def evaluate(
    *,
    current_price: float,
    base_units: float,
    raw: float,
    se_raw: float,
    unit_cost: float | None,
    price_min: float,
    price_max: float,
    normals: np.ndarray,
    level: float,
) -> Outcome:
    """Recommendation and intervals for one product from its demand at today's price.

    ``base_units`` is the model's expected demand over the horizon at ``current_price``; it is
    taken as known (it is what the shop observes), so the intervals carry the uncertainty of
    the price response only. The recommendation interval is the spread of the optimum over the
    elasticity draws; the revenue and margin intervals are for the recommended (point) price.
    """
    if not (math.isfinite(base_units) and base_units >= 0):
        raise ValueError(f"base units must be a non-negative number, got {base_units}")
    if not (math.isfinite(raw) and math.isfinite(se_raw) and se_raw >= 0):
        raise ValueError("raw elasticity and its standard error must be finite, se >= 0")
    point = -float(softplus(raw))
    draws = elasticity_draws(raw, se_raw, normals)
    low, high, _ = feasible_range(unit_cost, price_min, price_max)
    recommended = float(
        round_to_cents(
            optimal_prices(current_price, np.array([point]), unit_cost, price_min, price_max),
            low,
            high,
        )[0]
    )
    optima = round_to_cents(
        optimal_prices(current_price, draws, unit_cost, price_min, price_max), low, high
    )
    ratio = recommended / current_price
    units_point = base_units * ratio**point
    units = base_units * ratio**draws
    revenue = recommended * units - current_price * base_units
    revenue_point = recommended * units_point - current_price * base_units
    (rec_low, e_low, rev_low), (rec_high, e_high, rev_high) = (
        tuple(float(v) for v in bound)
        for bound in quantiles(np.stack([optima, draws, revenue], axis=1), level)
    )
    margin: tuple[float | None, float | None, float | None] = (None, None, None)
    if unit_cost is not None:
        today = (current_price - unit_cost) * base_units
        margins = (recommended - unit_cost) * units - today
        m_low, m_high = quantiles(margins, level)
        margin = ((recommended - unit_cost) * units_point - today, float(m_low), float(m_high))
    return Outcome(
        recommended=recommended,
        recommended_low=rec_low,
        recommended_high=rec_high,
        elasticity=point,
        elasticity_low=e_low,
        elasticity_high=e_high,
        expected_units=float(units_point),
        revenue_change=float(revenue_point),
        revenue_change_low=rev_low,
        revenue_change_high=rev_high,
        margin_change=margin[0],
        margin_change_low=margin[1],
        margin_change_high=margin[2],
    )
