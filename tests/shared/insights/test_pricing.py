"""Pricing insight: bounds, intervals, direction of change, and a real synthetic retailer."""

from __future__ import annotations

import builtins
import copy
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ingest.pipeline import import_file
from shared.insights import pricing
from shared.insights.context import InsightContext
from shared.insights.price_math import (
    antithetic_normals,
    evaluate,
    optimal_prices,
    raw_from_elasticity,
)
from shared.insights.pricing import (
    PriceRecommendation,
    PricingSettings,
    market_position,
    optimal_price,
    price_curve,
    recommend_prices,
)
from shared.synthetic import generate_demo

prices = st.floats(0.05, 500.0, allow_nan=False, allow_infinity=False)
elasticities = st.floats(-5.0, -0.05, exclude_min=True, exclude_max=True)
lower_factors = st.floats(0.05, 1.0)
upper_factors = st.floats(1.0, 3.0)
cost_factors = st.none() | st.floats(0.0, 4.0)  # unit cost as a share of the current price


def _objective(price: np.ndarray, current: float, elasticity: float, cost: float | None) -> Any:
    """What the optimiser maximises, up to the (positive) demand at the current price."""
    units = (price / current) ** elasticity
    return (price - (cost or 0.0)) * units


# --- Property 1: recommended prices respect the retailer's bounds and the unit cost ---------


@settings(max_examples=200, deadline=None)
@given(prices, elasticities, cost_factors, lower_factors, upper_factors)
def test_recommended_price_stays_in_bounds_and_above_cost(
    current: float, elasticity: float, cost_share: float | None, low: float, high: float
) -> None:
    """Property 9: Comprehensive Business Intelligence - the recommended price lies inside
    [max(min, cost), max], is a cent value whenever that range holds one, and is the upper
    bound (to the cent) when the cost is above it."""
    # Unit costs are currency amounts: whole cents, as an import gives them.
    cost = None if cost_share is None else round(cost_share * current, 2)
    price_min, price_max = low * current, high * current
    price = optimal_price(current, elasticity, cost, price_min, price_max)
    assert price_min <= price <= price_max
    cost_fits = cost is None or math.ceil(round(cost * 100, 6)) / 100 <= price_max
    floor = price_min if cost is None or not cost_fits else max(price_min, cost)
    if price_max - floor >= 0.01:  # the feasible range holds a cent value: it is one
        assert abs(price * 100 - round(price * 100)) < 1e-6, price
    if cost is not None and cost_fits:
        assert price >= cost
    if not cost_fits:  # no cent price covers the cost: the upper bound, to the cent
        assert price_max - 0.01 <= price <= price_max


@settings(max_examples=150, deadline=None)
@given(prices, elasticities, cost_factors, lower_factors, upper_factors)
def test_closed_form_beats_a_grid_search(
    current: float, elasticity: float, cost_share: float | None, low: float, high: float
) -> None:
    """Property 9: Comprehensive Business Intelligence - the closed-form optimum is at least as
    good as every price of a fine grid over the feasible range, and rounding moves it by at
    most a cent."""
    cost = None if cost_share is None else cost_share * current
    price_min, price_max = low * current, high * current
    if cost is not None and math.ceil(round(cost * 100, 6)) / 100 > price_max:
        return  # covered above: no cent price honours the cost
    exact = float(optimal_prices(current, np.array([elasticity]), cost, price_min, price_max)[0])
    floor = price_min if cost is None else max(price_min, cost)
    grid = np.linspace(floor, price_max, 2001)
    best = float(np.max(_objective(grid, current, elasticity, cost)))
    got = float(_objective(np.array([exact]), current, elasticity, cost)[0])
    assert got >= best - 1e-9 * max(1.0, abs(best))
    rounded = optimal_price(current, elasticity, cost, price_min, price_max)
    assert abs(rounded - exact) <= 0.01 + 1e-9


# --- Property 2: intervals contain their point estimates -------------------------------------


@st.composite
def product_inputs(draw: st.DrawFn) -> dict[str, Any]:
    current = draw(prices)
    cost_share = draw(cost_factors)
    return {
        "current_price": current,
        "base_units": draw(st.floats(0.0, 1e4)),
        "raw": raw_from_elasticity(draw(elasticities)),
        "se_raw": draw(st.floats(0.0, 3.0)),
        "unit_cost": None if cost_share is None else cost_share * current,
        "price_min": draw(lower_factors) * current,
        "price_max": draw(upper_factors) * current,
        "normals": antithetic_normals(draw(st.integers(2, 300)), draw(st.integers(0, 2**32))),
        "level": draw(st.floats(0.5, 0.99)),
    }


@settings(max_examples=200, deadline=None)
@given(product_inputs())
def test_intervals_contain_their_estimates(inputs: dict[str, Any]) -> None:
    """Property 10: Adaptive Intelligence Systems - every interval (recommended price,
    elasticity, revenue and margin change) contains its point estimate, for any parameter
    uncertainty, level and number of draws."""
    out = evaluate(**inputs)
    assert out.recommended_low <= out.recommended <= out.recommended_high
    assert out.elasticity_low <= out.elasticity <= out.elasticity_high
    assert out.revenue_change_low <= out.revenue_change <= out.revenue_change_high
    if inputs["unit_cost"] is None:
        assert out.margin_change is None
    else:
        assert out.margin_change is not None
        assert out.margin_change_low is not None and out.margin_change_high is not None
        assert out.margin_change_low <= out.margin_change <= out.margin_change_high
    # the interval's ends are feasible prices too
    assert inputs["price_min"] <= out.recommended_low
    assert out.recommended_high <= inputs["price_max"]


@settings(max_examples=100, deadline=None)
@given(product_inputs(), st.floats(1.0, 5.0))
def test_more_parameter_uncertainty_never_narrows_the_interval(
    inputs: dict[str, Any], widen: float
) -> None:
    """Property 10: Adaptive Intelligence Systems - the intervals come from the model's
    parameter uncertainty: a larger standard error gives nested, wider intervals, and a zero
    standard error gives none at all."""
    narrow = evaluate(**inputs)
    wide = evaluate(**{**inputs, "se_raw": inputs["se_raw"] * widen})
    assert wide.elasticity_low <= narrow.elasticity_low
    assert wide.elasticity_high >= narrow.elasticity_high
    assert wide.recommended_low <= narrow.recommended_low
    assert wide.recommended_high >= narrow.recommended_high
    exact = evaluate(**{**inputs, "se_raw": 0.0})
    assert exact.elasticity_low == exact.elasticity == exact.elasticity_high
    assert exact.recommended_low == exact.recommended == exact.recommended_high


def test_draws_are_reproducible_and_seeded() -> None:
    """The same seed gives the same draws; another seed different ones."""
    assert np.array_equal(antithetic_normals(400, 3), antithetic_normals(400, 3))
    assert not np.array_equal(antithetic_normals(400, 3), antithetic_normals(400, 4))


# --- Property 3: recommendations move the right way when the data shift ---------------------


@settings(max_examples=150, deadline=None)
@given(prices, elasticities, elasticities, cost_factors, lower_factors, upper_factors)
def test_more_elastic_demand_never_raises_the_price(
    current: float, e1: float, e2: float, cost_share: float | None, low: float, high: float
) -> None:
    """Property 10: Adaptive Intelligence Systems - a more elastic category gets a
    lower-or-equal recommended price."""
    cost = None if cost_share is None else cost_share * current
    elastic, inelastic = min(e1, e2), max(e1, e2)
    args = (cost, low * current, high * current)
    assert optimal_price(current, elastic, *args) <= optimal_price(current, inelastic, *args)


@settings(max_examples=150, deadline=None)
@given(prices, elasticities, st.floats(0.0, 4.0), st.floats(0.0, 4.0), lower_factors, upper_factors)
def test_higher_unit_cost_never_lowers_the_price(
    current: float, elasticity: float, c1: float, c2: float, low: float, high: float
) -> None:
    """Property 10: Adaptive Intelligence Systems - a higher unit cost gets a higher-or-equal
    recommended price."""
    cheap, dear = sorted((c1 * current, c2 * current))
    bounds = (low * current, high * current)
    assert optimal_price(current, elasticity, cheap, *bounds) <= optimal_price(
        current, elasticity, dear, *bounds
    )


@settings(max_examples=100, deadline=None)
@given(prices, st.floats(0.2, 5.0))
def test_market_position_follows_the_competitor_price(current: float, ratio: float) -> None:
    """Property 9: Comprehensive Business Intelligence - own price against the competitor's:
    level within 2%, otherwise below or above, and unknown without a competitor price."""
    competitor = current / ratio
    position = market_position(current, competitor)
    if abs(ratio - 1.0) <= 0.0199:
        assert position == "level"
    elif ratio < 0.98:
        assert position == "below"
    elif ratio > 1.0201:
        assert position == "above"
    assert market_position(current, None) == "unknown"


def test_settings_are_validated() -> None:
    for bad in ({"lower": 0.0}, {"lower": 1.1}, {"upper": 0.9}, {"upper": 3.5}, {"level": 1.0}):
        with pytest.raises(ValueError):
            PricingSettings(**bad)
    PricingSettings(lower=1.0, upper=1.0)  # a fixed price is allowed


def test_optimal_price_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        optimal_price(1.0, 0.5, None, 0.8, 1.2)  # demand cannot rise with price
    with pytest.raises(ValueError):
        optimal_price(1.0, -1.5, None, 1.2, 0.8)  # empty range


# --- Integration: one real synthetic retailer ------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> InsightContext:
    """The smaller of two generated retailers, built only from its own export."""
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=7, scale=0.3)
    entry = min(manifest.retailers, key=lambda r: r.rows)
    frame = import_file(entry.path).frame
    assert frame is not None
    return InsightContext.from_frame(frame, entry.retailer_id)


@pytest.fixture(scope="module")
def recommendations(shop: InsightContext) -> list[PriceRecommendation]:
    return recommend_prices(shop)


def _by_id(recs: list[PriceRecommendation]) -> dict[str, PriceRecommendation]:
    return {r.product_id: r for r in recs}


def test_every_product_gets_a_sane_recommendation(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 9: Comprehensive Business Intelligence - one finite, bounded recommendation
    per product of this shop, best improvement first, JSON-able without NaN."""
    assert sorted(r.product_id for r in recommendations) == sorted(map(str, shop.products.index))
    for rec in recommendations:
        facts = shop.products.loc[rec.product_id]
        assert rec.current_price == pytest.approx(float(facts["current_price"]))
        assert rec.price_min <= rec.recommended_low <= rec.recommended_price
        assert rec.recommended_price <= rec.recommended_high <= rec.price_max
        assert rec.price_max == pytest.approx(1.2 * rec.current_price)
        if rec.unit_cost is not None and rec.unit_cost <= rec.price_max:
            assert rec.recommended_price >= rec.unit_cost
        assert rec.elasticity_low <= rec.elasticity <= rec.elasticity_high <= 0
        assert rec.revenue_change_low <= rec.revenue_change <= rec.revenue_change_high
        assert rec.objective == ("revenue" if rec.unit_cost is None else "margin")
        assert math.isfinite(rec.expected_units) and rec.expected_units > 0
        # expected units are a plausible 28-day volume, not an extrapolation blow-up
        daily_history = float(facts["units_sold"]) / len(np.unique(shop.data.dates))
        assert rec.expected_units < 100 * max(daily_history, 1.0) * 28
        row = rec.to_row()
        json.dumps(row, allow_nan=False)
        assert set(row) >= {"product_id", "recommended_price", "note", "market_position"}
    gains = [
        r.margin_change if r.margin_change is not None else r.revenue_change
        for r in recommendations
    ]
    assert gains == sorted(gains, reverse=True)


def test_results_are_reproducible(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    assert recommend_prices(shop) == recommendations
    other_seed = recommend_prices(shop, PricingSettings(seed=1))
    assert [r.recommended_price for r in other_seed] == [
        r.recommended_price for r in recommendations
    ]  # the point recommendation does not depend on the draws


def test_single_product_category_falls_back_to_the_prior(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 10: Adaptive Intelligence Systems - a category whose interval cannot come from
    the data gets a wide prior interval and says so."""
    counts = shop.products["category"].value_counts()
    lonely = set(counts[counts == 1].index)
    assert lonely, "the fixture should have a one-product category"
    for rec in recommendations:
        if rec.category in lonely:
            assert "prior" in rec.note
            assert rec.elasticity_low < rec.elasticity <= rec.elasticity_high
        elif "prior" not in rec.note:
            assert rec.elasticity_low < rec.elasticity_high


def test_pricing_reads_nothing_but_the_context(
    shop: InsightContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property 9: Comprehensive Business Intelligence - anti-collusion: recommendations come
    from this shop's context alone; no file (another shop's data, a price list) is opened."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"pricing opened a file: {args[:1]}")

    monkeypatch.setattr(pricing, "_INTERVAL_CACHE", {})  # recompute the intervals too
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(Path, "open", refuse)
    fresh = recommend_prices(replace(shop, _fitted={}), PricingSettings(seed=5))
    assert len(fresh) == len(shop.products)


def test_competitor_price_moves_position_not_price(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 9: Comprehensive Business Intelligence - the competitor price is never a
    target: changing it flips market_position but leaves every recommended price unchanged."""
    before = _by_id(recommendations)
    for factor, position in ((0.5, "above"), (1.0, "level"), (2.0, "below")):
        products = shop.products.copy()
        products["competitor_price"] = products["current_price"] * factor
        after = recommend_prices(replace(shop, products=products))
        for rec in after:
            assert rec.market_position == position
            assert rec.competitor_price == pytest.approx(rec.current_price * factor)
            assert rec.recommended_price == before[rec.product_id].recommended_price


def test_more_elastic_category_gets_lower_prices(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 10: Adaptive Intelligence Systems - when the federated model says a category
    is more elastic, its products' recommended prices do not rise, and some fall."""
    model = copy.deepcopy(shop.model)
    category = str(shop.products["category"].value_counts().index[0])
    index = model.categories.index(category)
    with torch.no_grad():
        model.elasticity_raw.weight[index] += 1.5  # larger softplus: more elastic
    after = _by_id(recommend_prices(replace(shop, model=model)))
    before = _by_id(recommendations)
    moved = 0
    for pid, rec in after.items():
        if rec.category == category:
            assert rec.elasticity < before[pid].elasticity
            assert rec.recommended_price <= before[pid].recommended_price
            moved += rec.recommended_price < before[pid].recommended_price
        else:
            assert rec.recommended_price == before[pid].recommended_price
    assert moved > 0


def test_higher_costs_raise_prices_and_missing_costs_switch_to_revenue(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 10: Adaptive Intelligence Systems - a higher unit cost never lowers the
    recommendation; without costs the objective is revenue and margins are None."""
    before = _by_id(recommendations)
    dearer = shop.products.copy()
    dearer["unit_cost"] = dearer["unit_cost"] * 1.3
    for rec in recommend_prices(replace(shop, products=dearer)):
        assert rec.recommended_price >= before[rec.product_id].recommended_price
    costless = shop.products.copy()
    costless["unit_cost"] = np.nan
    for rec in recommend_prices(replace(shop, products=costless)):
        assert rec.objective == "revenue" and rec.margin_change is None
        # constant elasticity: revenue is monotone in price, so a bound is optimal
        corner = rec.price_min if rec.elasticity < -1 else rec.price_max
        assert rec.recommended_price == pytest.approx(corner, abs=0.01)


def test_overrides_set_absolute_bounds(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 9: Comprehensive Business Intelligence - retailer-set bounds are honoured; a
    cost above them gives the upper bound with a flag; unknown products are refused."""
    first, second = recommendations[0], recommendations[1]
    assert first.unit_cost is not None
    cost_above = (first.unit_cost * 0.5, first.unit_cost * 0.9)
    wide = (second.current_price * 0.5, second.current_price * 2.0)
    after = _by_id(
        recommend_prices(shop, overrides={first.product_id: cost_above, second.product_id: wide})
    )
    capped = after[first.product_id]
    assert capped.price_max == pytest.approx(cost_above[1])
    assert cost_above[1] - 0.01 <= capped.recommended_price <= cost_above[1]
    assert "above the upper bound" in capped.note
    opened = after[second.product_id]
    assert wide[0] <= opened.recommended_price <= wide[1]
    with pytest.raises(KeyError, match="unknown products"):
        recommend_prices(shop, overrides={"no-such-product": (1.0, 2.0)})


def test_price_curves_are_finite_and_consistent(
    shop: InsightContext, recommendations: list[PriceRecommendation]
) -> None:
    """Property 9: Comprehensive Business Intelligence - the what-if curve spans the bounds,
    demand falls with price, the bands contain the curve, and it agrees with the
    recommendation."""
    for rec in recommendations:
        curve = price_curve(shop, rec.product_id, points=21)
        assert len(curve.prices) == len(curve.units) == len(curve.revenue) == 21
        assert curve.prices[0] <= rec.price_min and curve.prices[-1] >= rec.price_max
        assert curve.recommended_price == rec.recommended_price
        assert curve.current_price == rec.current_price
        units = np.array(curve.units)
        assert np.all(np.isfinite(units)) and np.all(units > 0)
        assert np.all(np.diff(units) <= 1e-9 * units[:-1])
        assert np.all(np.array(curve.units_low) <= units * (1 + 1e-12))
        assert np.all(units <= np.array(curve.units_high) * (1 + 1e-12))
        assert np.all(np.array(curve.revenue_low) <= np.array(curve.revenue_high))
        assert (curve.margin is None) == (rec.unit_cost is None)
        if curve.margin is not None and rec.unit_cost is not None:
            # margin is single-peaked: the best feasible grid price is within a grid step of
            # the recommendation (plus a cent of rounding)
            grid = np.array(curve.prices)
            feasible = (grid >= rec.price_min) & (grid <= rec.price_max)
            best = grid[feasible][int(np.argmax(np.array(curve.margin)[feasible]))]
            assert abs(best - rec.recommended_price) <= (grid[1] - grid[0]) + 0.01
        json.dumps(curve.to_row(), allow_nan=False)


def test_price_curve_rejects_unknown_product(shop: InsightContext) -> None:
    with pytest.raises(KeyError, match="not among this shop"):
        price_curve(shop, "no-such-product")


def test_products_without_positive_price_are_skipped(shop: InsightContext) -> None:
    products = shop.products.copy()
    dropped = str(products.index[0])
    products.loc[dropped, "current_price"] = np.nan
    recs = recommend_prices(replace(shop, products=products))
    assert dropped not in {r.product_id for r in recs}
    assert len(recs) == len(products) - 1
