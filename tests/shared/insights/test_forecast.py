"""Demand forecast insight: conformal intervals, trend, seasonality and a real synthetic shop."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ingest.pipeline import import_file
from shared.insights.context import InsightContext
from shared.insights.forecast import (
    DemandForecast,
    ForecastSettings,
    TrendAnalysis,
    forecast_demand,
    interval_coverage,
)
from shared.insights.forecast_conformal import (
    Spread,
    calibrate,
    conformal_quantile,
    interval_bounds,
)
from shared.insights.forecast_grid import DAY, Scenario, weekday_factors, yearly_factor
from shared.insights.forecast_trend import analyse_trend, level_ratio
from shared.model import DemandModel
from shared.model.features import WEEKDAYS
from shared.synthetic import generate_demo

HORIZON_LENGTHS = {"daily": (14, 1), "weekly": (8, 7), "monthly": (3, 30)}
WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

counts = st.lists(st.integers(0, 400), min_size=1, max_size=80)
means = st.floats(-5.0, 1e4) | st.just(math.nan)
levels = st.floats(0.05, 0.95)


# --- Property: forecasts are never negative and intervals contain them ----------------------


@settings(max_examples=200, deadline=None)
@given(
    actual=counts,
    noise=st.lists(st.floats(0.0, 3.0), min_size=80, max_size=80),
    forecasts=st.lists(means, min_size=1, max_size=30),
    level=levels,
)
def test_intervals_are_non_negative_and_contain_the_forecast(
    actual: list[int], noise: list[float], forecasts: list[float], level: float
) -> None:
    """Property 11: Multi-Horizon Forecasting Capability - whatever the calibration cells (also
    too few for a quantile: the fallback) and whatever point forecast is mapped (negative or
    NaN count as 0), bounds are finite, never negative and contain the point forecast."""
    y = np.array(actual, dtype=np.float64)
    mu = y * np.array(noise[: len(y)])
    calibration = calibrate(y, mu, level)
    assert calibration.quantile >= 0 and math.isfinite(calibration.quantile)
    assert calibration.calibrated == (len(y) >= 20)
    point = np.clip(np.nan_to_num(np.array(forecasts)), 0.0, None)
    low, high = calibration.interval(np.array(forecasts))
    assert np.all(np.isfinite(low)) and np.all(np.isfinite(high))
    assert np.all(low >= 0.0)
    assert np.all(low <= point) and np.all(point <= high)


@settings(max_examples=150, deadline=None)
@given(
    mean=st.floats(0.0, 1e5),
    units=st.floats(0.0, 10.0),
    relative=st.floats(0.0, 2.0),
    q1=st.floats(0.0, 5.0),
    q2=st.floats(0.0, 5.0),
)
def test_a_larger_quantile_gives_a_nested_wider_interval(
    mean: float, units: float, relative: float, q1: float, q2: float
) -> None:
    """Property 11: Multi-Horizon Forecasting Capability - intervals are nested in the score
    quantile, so a higher interval level can never give a narrower interval."""
    small, large = sorted((q1, q2))
    spread = Spread(units, relative)
    low_s, high_s = interval_bounds(np.array([mean]), spread, small)
    low_l, high_l = interval_bounds(np.array([mean]), spread, large)
    assert low_l[0] <= low_s[0] <= mean <= high_s[0] <= high_l[0]


# --- Property: the conformal quantile's finite-sample guarantee -----------------------------


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 6) | st.floats(0.0, 100.0), min_size=2, max_size=60),
    level=levels,
)
def test_conformal_quantile_covers_every_left_out_score(values: list[float], level: float) -> None:
    """Property 10: Adaptive Intelligence Systems - the finite-sample guarantee, checked exactly.
    For n + 1 exchangeable scores, P(new <= quantile of the other n) is the average over which
    score is the new one; for any values (ties included) that average is at least ``level``,
    and with distinct values it exceeds ``level`` by less than 1 / (n + 1) (not conservative).
    """
    scores = np.array(values, dtype=np.float64)
    held = [
        scores[i] <= conformal_quantile(np.delete(scores, i), level) for i in range(len(scores))
    ]
    share = float(np.mean(held))
    assert share >= level - 1e-12
    if len(np.unique(scores)) == len(scores):
        assert share < level + 1.0 / len(scores) + 1e-12


def test_conformal_quantile_is_infinite_when_too_few_scores_and_rejects_bad_levels() -> None:
    """Property 10: Adaptive Intelligence Systems - with n scores no finite quantile is valid
    above level n / (n + 1); the function says so instead of returning the maximum."""
    assert conformal_quantile(np.arange(9.0), 0.95) == math.inf  # rank ceil(9.5) = 10 > 9
    assert conformal_quantile(np.arange(9.0), 0.9) == 8.0  # level n / (n + 1): the maximum
    assert conformal_quantile(np.arange(9.0), 0.8) == 7.0  # ceil(10 * 0.8) = 8th smallest
    with pytest.raises(ValueError, match="level"):
        conformal_quantile(np.arange(3.0), 1.0)


@settings(max_examples=100, deadline=None)
@given(
    actual=st.lists(st.integers(0, 50), min_size=20, max_size=120),
    level=levels,
    share=st.floats(0.01, 1.0),
)
def test_fewer_independent_cells_never_narrow_the_interval(
    actual: list[int], level: float, share: float
) -> None:
    """Property 10: Adaptive Intelligence Systems - overlapping calibration windows count as
    fewer exchangeable units; the finite-sample level for fewer units is higher, so the
    interval can only widen, and with as many units as cells nothing changes."""
    y = np.array(actual, dtype=np.float64)
    mu = np.full(len(y), float(np.mean(y)))
    plain = calibrate(y, mu, level)
    fewer = calibrate(y, mu, level, independent=max(1, round(share * len(y))))
    assert fewer.quantile >= plain.quantile
    assert calibrate(y, mu, level, independent=len(y)).quantile == plain.quantile
    low, high = fewer.interval(mu)
    assert np.all(low <= mu) and np.all(mu <= high)


def test_calibrated_intervals_reach_their_level_on_exchangeable_counts() -> None:
    """Property 10: Adaptive Intelligence Systems - calibrated on overdispersed counts with a
    biased forecast (promotions the forecast cannot see), the intervals cover fresh cells from
    the same process at the nominal 80% (fixed seed, so deterministic)."""
    rng = np.random.default_rng(3)

    def cells(n: int) -> tuple[np.ndarray, np.ndarray]:
        mu = rng.lognormal(1.0, 1.2, n)
        promo = np.where(rng.random(n) < 0.2, 1.6, 1.0)
        y = rng.poisson(mu * promo * rng.gamma(4.0, 0.25, n))
        return y.astype(np.float64), mu

    calibration = calibrate(*cells(4000), 0.8)
    y, mu = cells(20000)
    low, high = calibration.interval(mu)
    coverage = float(np.mean((y >= low) & (y <= high)))
    assert 0.78 <= coverage <= 0.82


# --- Property: a data shift moves the forecast the right way --------------------------------


@settings(max_examples=150, deadline=None)
@given(
    expected=st.lists(st.floats(5.0, 500.0), min_size=8, max_size=8),
    factor=st.floats(0.2, 0.9) | st.floats(1.1, 5.0),  # a shift of 10% or more
)
def test_level_ratio_follows_a_shift_in_actual_sales(expected: list[float], factor: float) -> None:
    """Property 10: Adaptive Intelligence Systems - when recent sales are a multiple of what the
    model expected, the level ratio moves the same way, shrunk towards 1 but never past it."""
    e = np.array(expected)
    trend = analyse_trend(e * factor, e)
    if factor > 1.0:
        assert 1.0 < trend.level_ratio <= factor + 1e-9
    elif factor < 1.0:
        assert factor - 1e-9 <= trend.level_ratio < 1.0
    assert analyse_trend(e * factor * 1.5, e).level_ratio > trend.level_ratio


@settings(max_examples=150, deadline=None)
@given(
    level=st.floats(50.0, 2000.0),
    growth=st.floats(0.08, 0.3),
    season=st.lists(st.floats(0.7, 1.4), min_size=8, max_size=8),
)
def test_trend_direction_separates_growth_from_season(
    level: float, growth: float, season: list[float]
) -> None:
    """Property 10: Adaptive Intelligence Systems - weekly sales growing (or shrinking) beyond
    what the model expected read as rising (falling); the same swings when the model expected
    them (season, prices) read as flat."""
    expected = level * np.array(season)
    weeks = np.arange(8)
    rising = analyse_trend(expected * (1 + growth * weeks), expected)
    falling = analyse_trend(expected * (1 - growth) ** weeks, expected)
    flat = analyse_trend(expected, expected)
    assert rising.direction == "rising" and rising.weekly_change_pct > 0
    assert falling.direction == "falling" and falling.weekly_change_pct < 0
    assert flat == TrendAnalysis("flat", 0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(
    actual=st.floats(0.0, 1e4),
    expected=st.floats(0.0, 1e4),
    prior=st.floats(0.1, 10.0),
    more=st.floats(0.1, 1e3),
)
def test_level_ratio_is_monotone_and_shrinks_to_its_prior(
    actual: float, expected: float, prior: float, more: float
) -> None:
    """Property 10: Adaptive Intelligence Systems - more actual sales never lower the level,
    more expected sales never raise it, and without evidence a product gets its category's."""
    base = level_ratio(actual, expected, prior)
    assert level_ratio(actual + more, expected, prior) > base
    assert level_ratio(actual, expected + more, prior) < base
    assert level_ratio(0.0, 0.0, prior) == pytest.approx(prior)


def _seasonal_model(weights: list[float]) -> DemandModel:
    model = DemandModel(("p",), node="n")
    with torch.no_grad():
        model.calendar.weight.zero_()
        model.calendar.weight[0, : len(weights)] = torch.tensor(weights)
    return model


def _scenario(first: str, seen_last: str, origin: str) -> Scenario:
    return Scenario(
        origin=np.datetime64(origin),
        products=np.zeros(0, dtype=np.int64),
        drivers=np.zeros((0, 4), dtype=np.float32),
        last_sale=np.zeros(0, dtype="datetime64[D]"),
        open_weekdays=np.ones(WEEKDAYS, dtype=bool),
        open_history=np.zeros(0, dtype="datetime64[D]"),
        first_day=np.datetime64(first),
        seen_last=np.datetime64(seen_last),
    )


@settings(max_examples=100, deadline=None)
@given(amplitude=st.floats(0.05, 1.5), weekday=st.lists(st.floats(-1, 1), min_size=7, max_size=7))
def test_yearly_factor_follows_the_season_of_the_forecast_period(
    amplitude: float, weekday: list[float]
) -> None:
    """Property 10: Adaptive Intelligence Systems - with a yearly season peaking in spring (a
    positive first sine weight), a spring forecast period gets a yearly factor above 1 and an
    autumn one below 1; weekday factors average 1 whatever the weekday weights."""
    model = _seasonal_model([*weekday, amplitude])
    scenario = _scenario("2025-11-01", "2026-10-31", "2026-11-01")
    spring = np.datetime64("2027-03-20") + np.arange(30) * DAY
    autumn = np.datetime64("2026-09-20") + np.arange(30) * DAY
    assert (
        yearly_factor(model, 0, scenario, spring) > 1.0 > yearly_factor(model, 0, scenario, autumn)
    )
    factors = weekday_factors(model, 0, np.ones(WEEKDAYS, dtype=bool))
    assert tuple(factors) == WEEKDAY_KEYS
    assert np.mean(list(factors.values())) == pytest.approx(1.0, abs=1e-3)
    closed = np.array([True] * 6 + [False])
    assert weekday_factors(model, 0, closed)["sun"] == 0.0


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.floats(-3.0, 3.0), min_size=4, max_size=4),
    seen_days=st.integers(60, 330),
)
def test_unseen_season_is_interpolated_not_extrapolated(
    weights: list[float], seen_days: int
) -> None:
    """Property 10: Adaptive Intelligence Systems - on days of the year the model's season was
    never fitted on, the forecast's yearly effect stays between the last value seen and the
    value seen a year earlier: a season fitted on a few months cannot explode."""
    first = np.datetime64("2025-11-01")
    seen_last = first + (seen_days - 1) * DAY
    scenario = _scenario(str(first), str(seen_last), str(seen_last + DAY))
    w = np.array(weights)
    dates = seen_last + DAY + np.arange(365 - seen_days) * DAY
    effect = scenario.calendar(dates)[:, WEEKDAYS:].astype(np.float64) @ w
    ends = (
        _scenario(str(first), str(first + 400 * DAY), str(first + 401 * DAY))
        .calendar(np.array([seen_last, first]))[:, WEEKDAYS:]
        .astype(np.float64)
        @ w
    )
    assert np.all(effect >= ends.min() - 1e-5) and np.all(effect <= ends.max() + 1e-5)


# --- Integration: a small synthetic retailer ------------------------------------------------


@pytest.fixture(scope="module")
def frame_and_node(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str]:
    """The smaller of two generated retailers' imported sales."""
    manifest = generate_demo(tmp_path_factory.mktemp("demo"), retailers=2, seed=7, scale=0.3)
    entry = min(manifest.retailers, key=lambda r: r.rows)
    frame = import_file(entry.path).frame
    assert frame is not None
    return frame, entry.retailer_id


@pytest.fixture(scope="module")
def shop(frame_and_node: tuple[pd.DataFrame, str]) -> InsightContext:
    frame, node = frame_and_node
    return InsightContext.from_frame(frame, node)


@pytest.fixture(scope="module")
def forecasts(shop: InsightContext) -> list[DemandForecast]:
    return forecast_demand(shop)


def test_every_product_and_category_gets_three_horizons(
    shop: InsightContext, forecasts: list[DemandForecast]
) -> None:
    """Property 11: Multi-Horizon Forecasting Capability - daily (14 days), weekly (8 x 7 days)
    and monthly (3 x 30 days) forecasts per active product and per category, starting the day
    after the last day of data, finite, non-negative, inside their intervals and JSON-able."""
    first = str(shop.last_date + DAY)
    last = pd.Timestamp(str(shop.last_date))
    active = shop.products.loc[shop.products["last_sale"] >= last - pd.Timedelta(days=56)]
    for scope, keys in (
        ("product", sorted(map(str, active.index))),
        ("category", sorted(set(active["category"]))),
    ):
        for name, (count, length) in HORIZON_LENGTHS.items():
            chosen = [f for f in forecasts if f.scope == scope and f.horizon == name]
            assert sorted(f.key for f in chosen) == keys
            for f in chosen:
                assert len(f.predicted_demand) == len(f.confidence_bounds) == count
                assert f.period_days == (length,) * count
                assert f.period_starts[0] == first
                assert f.period_starts == tuple(
                    str(shop.last_date + DAY + i * length * DAY) for i in range(count)
                )
                for point, (low, high) in zip(f.predicted_demand, f.confidence_bounds, strict=True):
                    assert math.isfinite(high) and 0.0 <= low <= point <= high
                assert set(f.seasonality_factors) == {*WEEKDAY_KEYS, "yearly"}
                assert f.trend_components.direction in {"rising", "falling", "flat"}
                assert f.interval_level == 0.8
                row = f.to_row()
                assert json.loads(json.dumps(row, allow_nan=False)) == row
                assert row["trend"]["level_ratio"] > 0
    assert len(forecasts) == 3 * (len(active) + len(set(active["category"])))


def test_categories_are_the_sums_of_their_products(forecasts: list[DemandForecast]) -> None:
    """Property 11: Multi-Horizon Forecasting Capability - a category's forecast is the sum of
    its products' at every horizon, and the weekly and monthly totals add up the daily rule."""
    for horizon in HORIZON_LENGTHS:
        products = [f for f in forecasts if f.scope == "product" and f.horizon == horizon]
        for category in (f for f in forecasts if f.scope == "category" and f.horizon == horizon):
            members = [f for f in products if f.category == category.key]
            total = np.sum([f.predicted_demand for f in members], axis=0)
            assert np.allclose(category.predicted_demand, total, rtol=1e-9, atol=1e-9)
    daily = {f.key: f for f in forecasts if f.scope == "product" and f.horizon == "daily"}
    weekly = {f.key: f for f in forecasts if f.scope == "product" and f.horizon == "weekly"}
    for key, f in daily.items():
        assert weekly[key].predicted_demand[0] == pytest.approx(sum(f.predicted_demand[:7]))


def test_settings_change_horizons_and_dormant_products(shop: InsightContext) -> None:
    """Property 11: Multi-Horizon Forecasting Capability - horizon lengths and the dormancy
    window come from the settings; products without a recent sale get no forecast."""
    custom = ForecastSettings(level=0.9, daily_days=3, weekly_weeks=2, monthly_months=1)
    lengths = {"daily": 3, "weekly": 2, "monthly": 1}
    result = forecast_demand(shop, custom)
    assert all(len(f.predicted_demand) == lengths[f.horizon] for f in result)
    assert all(f.interval_level == 0.9 for f in result)
    strict = forecast_demand(shop, ForecastSettings(dormant_days=3))
    last = pd.Timestamp(str(shop.last_date))
    recent = shop.products.index[shop.products["last_sale"] >= last - pd.Timedelta(days=3)]
    assert {f.key for f in strict if f.scope == "product"} == set(map(str, recent))
    assert len(recent) < len(shop.products)


def test_recently_doubled_sales_raise_level_and_forecast(
    frame_and_node: tuple[pd.DataFrame, str], forecasts: list[DemandForecast]
) -> None:
    """Property 10: Adaptive Intelligence Systems - a shop whose sales of the last eight weeks
    doubled gets a higher level ratio and a higher forecast for every category."""
    frame, node = frame_and_node
    recent = frame["timestamp"] > frame["timestamp"].max() - pd.Timedelta(days=56)
    doubled = frame.copy()
    doubled.loc[recent, "quantity_sold"] = doubled.loc[recent, "quantity_sold"] * 2
    shifted = forecast_demand(InsightContext.from_frame(doubled, node))
    before = {f.key: f for f in forecasts if f.scope == "category" and f.horizon == "monthly"}
    after = {f.key: f for f in shifted if f.scope == "category" and f.horizon == "monthly"}
    assert before.keys() == after.keys()
    for key, old in before.items():
        new = after[key]
        assert new.trend_components.level_ratio > old.trend_components.level_ratio
        assert sum(new.predicted_demand) > sum(old.predicted_demand)


def test_intervals_cover_the_hidden_future_of_the_shop(
    frame_and_node: tuple[pd.DataFrame, str],
) -> None:
    """Property 10: Adaptive Intelligence Systems - intervals calibrated on the shop's own
    history cover most of what it sold in the 60 days after a cut (a loose band: one small shop
    gives few, correlated cells), and the WAPE shrinks as periods get longer."""
    frame, node = frame_and_node
    cutoff = frame["timestamp"].max().normalize() - pd.Timedelta(days=59)
    visible = frame.loc[frame["timestamp"] < cutoff]
    hidden = frame.loc[frame["timestamp"] >= cutoff]
    result = forecast_demand(InsightContext.from_frame(visible, node))
    scores = interval_coverage(result, hidden, start=str(cutoff.date()))
    assert set(scores) == {"daily", "weekly", "monthly"}
    assert scores["daily"]["cells"] > 0 and scores["monthly"]["cells"] > 0
    for horizon in ("daily", "weekly"):
        assert 0.65 <= scores[horizon]["coverage"] <= 0.95
    assert scores["monthly"]["wape"] < scores["daily"]["wape"]


def test_interval_coverage_counts_only_fully_observed_periods() -> None:
    """Property 11: Multi-Horizon Forecasting Capability - the benchmark's measure: a period
    counts only when the actual data cover all its days; absent products sold nothing; a
    category's actual units are all its products' sales."""
    trend = TrendAnalysis("flat", 0.0, 1.0)

    def forecast(scope: str, key: str, horizon: str, days: int) -> DemandForecast:
        return DemandForecast(
            scope=scope,
            key=key,
            category="dairy",
            horizon=horizon,
            period_starts=("2026-01-01", str(np.datetime64("2026-01-01") + days * DAY)),
            period_days=(days, days),
            predicted_demand=(3.0, 3.0),
            confidence_bounds=((2.0, 4.0), (2.0, 4.0)),
            interval_level=0.8,
            seasonality_factors={},
            trend_components=trend,
        )

    forecasts = [
        forecast("product", "a", "daily", 1),
        forecast("product", "b", "daily", 1),
        forecast("product", "a", "weekly", 7),
        forecast("category", "dairy", "daily", 1),
    ]
    actual = pd.DataFrame(
        {
            "product_id": ["a", "a", "a", "c"],
            "category": ["dairy"] * 4,
            "timestamp": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-01-02", "2026-01-09"]),
            "quantity_sold": [2, 1, 9, 5],
        }
    )
    products = interval_coverage(forecasts, actual)
    # daily: a sold 3 (inside), b sold 0 (outside) on 1 Jan; a 9 (outside), b 0 on 2 Jan.
    assert products["daily"] == {"coverage": 0.25, "cells": 4.0, "wape": pytest.approx(12 / 12)}
    # weekly: only 1-7 Jan is covered by the data (to 9 Jan): a sold 12, outside [2, 4].
    assert products["weekly"]["cells"] == 1.0 and products["weekly"]["coverage"] == 0.0
    categories = interval_coverage(forecasts, actual, scope="category")
    assert categories["daily"]["cells"] == 2.0  # 3 units (inside) and 9 units (outside)
    assert categories["daily"]["coverage"] == 0.5
    late = interval_coverage(forecasts, actual.iloc[2:])
    assert late["daily"]["cells"] == 2.0  # 1 Jan is before the data's first day
    assert interval_coverage(forecasts, actual.iloc[2:], start="2026-01-01")["daily"]["cells"] == 4
