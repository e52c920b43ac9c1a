"""The forecast rule, and its replay on the retailer's own holdout that calibrates the intervals.

The rule (``run_forecast``), used identically for the real forecast and for the replay: expected
units per product and day from the model under the future-driver rule (``forecast_grid``),
scaled by the product's recent level ratio (actual / model-expected units over the last 8 weeks,
shrunk towards its category's ratio, the category's towards 1). The level ratio re-anchors the
forecast where the model has drifted from the shop's recent sales; on synthetic shops it cut
the weekly WAPE and kept coverage (``APPLY_LEVEL_RATIO`` switches it off for both at once).

The replay mimics the real situation. A model with offsets fitted on the training part only
(``ctx.personalised_on(ctx.train)``) forecasts from an origin at the first holdout day, knowing
only what was known then (prices as of the origin, no promotion, the seasonal weights' seen
range ending before it), for every product not dormant at the origin, over the whole holdout.
Forecasts and actual units are summed per product, and per category over all its sales, over
every window of the horizon's length inside the holdout (1 day for daily, 7 for weekly, 30 for
monthly), one window per start day. Overlapping windows are what make monthly calibration
possible: a year of history leaves a ~73-day holdout, two disjoint 30-day blocks but 44
overlapping windows per product (26 on a 55-day holdout). They are correlated, so the
finite-sample level is taken for the number of roughly independent windows (per key, windows
overlapping by at most half: ``round(2 * days / window)``), not for all of them: with a few
categories and one or two months of holdout that widens monthly category intervals, which
otherwise covered 75% instead of 80% in the federated benchmark (products barely change).
A holdout shorter than a window gives windows cut to the holdout. Each pool (scope x horizon)
gets its own conformal quantile; categories reuse the product pool's spread shape, since a few
categories' cells are too few to fit it. (Rolling origins over the whole history were tried
too: no better coverage, four times slower.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.insights.context import LOCAL_MODEL_VERSION, InsightContext, product_facts
from shared.insights.forecast_conformal import Calibration, calibrate, fallback_calibration
from shared.insights.forecast_grid import (
    DAY,
    Scenario,
    actual_units,
    block_sums,
    day,
    forecast_grid,
    product_categories,
    recent_weeks,
    scenario_at,
)
from shared.insights.forecast_trend import TREND_WEEKS, level_ratio
from shared.model import DemandModel

HORIZON_DAYS: dict[str, int] = {"daily": 1, "weekly": 7, "monthly": 30}
APPLY_LEVEL_RATIO = True


@dataclass(frozen=True)
class ForecastRun:
    """One forecast from one origin: per forecast product its category and expected units per
    day (level-adjusted), plus the recent weeks the level and trend were read from."""

    ids: list[str]  # forecast product ids
    categories: list[str]  # their taxonomy codes
    model_category: np.ndarray  # their category index in the model
    keys: list[str]  # sorted taxonomy codes with at least one forecast product
    group: np.ndarray  # per product, its row in ``keys``
    dates: np.ndarray
    mean: np.ndarray  # (products, days)
    actual_weeks: np.ndarray  # (products, TREND_WEEKS)
    expected_weeks: np.ndarray
    category_ratio: np.ndarray  # per row of ``keys``

    def category_mean(self) -> np.ndarray:
        """Expected units per category (row of ``keys``) and day: the sum of its products."""
        return category_sums(self.mean, self.group, len(self.keys))


def run_forecast(
    model: DemandModel, ctx: InsightContext, scenario: Scenario, days: int
) -> ForecastRun:
    """The forecast rule, shared by the real forecast and its calibration replay."""
    dates, mean = forecast_grid(model, ctx.data, scenario, days)
    actual_weeks, expected_weeks = recent_weeks(model, ctx.data, ctx.frame, scenario, TREND_WEEKS)
    model_category = product_categories(ctx.data)[scenario.products]
    codes = [ctx.data.categories[c] for c in model_category]
    keys = sorted(set(codes))
    group = np.array([keys.index(code) for code in codes], dtype=np.int64)
    product_ratio, category_ratio = level_ratios(actual_weeks, expected_weeks, group)
    if APPLY_LEVEL_RATIO:
        mean = mean * product_ratio[:, None]
    return ForecastRun(
        ids=[ctx.data.product_ids[i] for i in scenario.products],
        categories=codes,
        model_category=model_category,
        keys=keys,
        group=group,
        dates=dates,
        mean=mean,
        actual_weeks=actual_weeks,
        expected_weeks=expected_weeks,
        category_ratio=category_ratio,
    )


def level_ratios(
    actual_weekly: np.ndarray, expected_weekly: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Recent actual/expected levels per product and per category (``group``: category row of
    each product). Categories are shrunk towards 1, products towards their category's ratio,
    so a slow seller follows its category rather than its own few sales."""
    actual = actual_weekly.sum(axis=-1)
    expected = expected_weekly.sum(axis=-1)
    n_groups = int(group.max()) + 1 if len(group) else 0
    category_actual = np.bincount(group, weights=actual, minlength=n_groups)
    category_expected = np.bincount(group, weights=expected, minlength=n_groups)
    category = np.array(
        [level_ratio(a, e) for a, e in zip(category_actual, category_expected, strict=True)]
    )
    product = np.array(
        [level_ratio(a, e, category[g]) for a, e, g in zip(actual, expected, group, strict=True)]
    )
    return product, category


def category_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Rows of ``values`` summed by group index (products -> categories)."""
    out = np.zeros((n_groups, values.shape[-1]), dtype=np.float64)
    np.add.at(out, groups, values)
    return out


def model_seen_last(ctx: InsightContext) -> np.datetime64:
    """The last day the model's seasonal (global) weights were fitted on.

    A local-only context fits its global part on the training part alone (``from_frame``); a
    federated model is taken to have seen the node's whole history.
    """
    if ctx.model_version == LOCAL_MODEL_VERSION and len(ctx.train):
        return day(ctx.train.dates.max())
    return ctx.last_date


@dataclass(frozen=True)
class ForecastCalibration:
    """Interval calibration per horizon, for product and for category forecasts."""

    product: dict[str, Calibration]
    category: dict[str, Calibration]

    @classmethod
    def fallback(cls, level: float) -> ForecastCalibration:
        """Uncalibrated intervals, for a node without a usable holdout."""
        pools = {name: fallback_calibration(level) for name in HORIZON_DAYS}
        return cls(product=dict(pools), category=dict(pools))


def calibrate_forecasts(
    ctx: InsightContext, level: float, dormant_days: int
) -> ForecastCalibration:
    """Split-conformal calibration of every horizon's intervals on the node's own holdout."""
    if len(ctx.holdout) == 0 or len(ctx.train) == 0:
        return ForecastCalibration.fallback(level)
    origin = day(ctx.holdout.dates.min())
    days = int((ctx.last_date - origin) // DAY) + 1
    before = frame_before(ctx.frame, origin)
    if before.empty:
        return ForecastCalibration.fallback(level)
    facts = product_facts(before, ctx.data)
    seen = min(model_seen_last(ctx), origin - DAY)
    scenario = scenario_at(ctx.data, facts, origin, dormant_days, seen)
    if len(scenario.products) == 0:
        return ForecastCalibration.fallback(level)
    run = run_forecast(ctx.personalised_on(ctx.train), ctx, scenario, days)
    actual = actual_units(ctx.frame, run.ids, origin, days)
    # A category's actual units are all its sales, also of products without a forecast.
    category_of = {str(pid): str(code) for pid, code in ctx.products["category"].items()}
    category_actual = actual_units(ctx.frame, run.keys, origin, days, category_of)
    category_mean = run.category_mean()
    product: dict[str, Calibration] = {}
    category: dict[str, Calibration] = {}
    for name, length in HORIZON_DAYS.items():
        window = min(length, days)
        # Roughly independent windows per key: those overlapping by half at most.
        blocks = max(1, round(2 * days / window))
        product[name] = calibrate(
            block_sums(actual, window, 1),
            block_sums(run.mean, window, 1),
            level,
            independent=len(run.ids) * blocks,
        )
        category[name] = calibrate(
            block_sums(category_actual, window, 1),
            block_sums(category_mean, window, 1),
            level,
            product[name].spread,
            independent=len(run.keys) * blocks,
        )
    return ForecastCalibration(product=product, category=category)


def frame_before(frame: pd.DataFrame, origin: np.datetime64) -> pd.DataFrame:
    """The rows of ``frame`` dated before ``origin``."""
    stamps = frame["timestamp"].to_numpy().astype("datetime64[D]")
    return frame.loc[stamps < origin]
