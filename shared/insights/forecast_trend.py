"""Recent trend: the shop's actual weekly units against what the demand model expected.

The model already explains seasonality, prices and promotions, so the trend is what it does
not explain: ``level_ratio`` is actual / expected units over the last weeks and
``weekly_change_pct`` is the Theil-Sen slope (robust to a single promotion or stock-out week)
of the weekly units after dividing out the model's expectation, in percent of their mean level
per week. A slope only counts as "rising"/"falling" when it is both material and larger than
count noise could produce over the window; otherwise the direction is "flat".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TREND_WEEKS = 8
FLAT_PCT = 2.0  # |weekly change| below this many percent per week is "flat"
NOISE_Z = 2.0  # and so is a slope within this many standard errors of count noise
RELATIVE_NOISE = 0.1  # week-to-week scatter of a high-volume product beyond Poisson noise
# Pseudo-units added to actual and expected when forming the level ratio, so that a slow seller's
# handful of sales cannot swing it wildly (it shrinks the ratio towards its prior: the category's
# ratio for a product, 1 for a category).
LEVEL_PSEUDO_UNITS = 5.0


@dataclass(frozen=True)
class TrendAnalysis:
    """Recent direction, percent change per week and actual/expected level."""

    direction: str  # "rising" | "falling" | "flat"
    weekly_change_pct: float
    level_ratio: float


def theil_sen_slope(values: np.ndarray) -> float:
    """Median of pairwise slopes over equally spaced points; 0 for fewer than two points."""
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    if n < 2:
        return 0.0
    i, j = np.triu_indices(n, k=1)
    return float(np.median((y[j] - y[i]) / (j - i)))


def level_ratio(actual: float, expected: float, prior: float = 1.0) -> float:
    """Actual/expected units shrunk towards ``prior``: the prior without evidence, the plain
    ratio with plenty (a product is shrunk towards its category's ratio, a category to 1)."""
    k = LEVEL_PSEUDO_UNITS
    return float((max(actual, 0.0) + k * prior) / (max(expected, 0.0) + k))


def analyse_trend(
    actual_weekly: np.ndarray, expected_weekly: np.ndarray, prior: float = 1.0
) -> TrendAnalysis:
    """Trend from per-week actual and model-expected units (oldest week first)."""
    actual = np.clip(np.asarray(actual_weekly, dtype=np.float64), 0.0, None)
    expected = np.clip(np.asarray(expected_weekly, dtype=np.float64), 0.0, None)
    ratio = level_ratio(float(actual.sum()), float(expected.sum()), prior)
    known = expected > 0
    if known.sum() < 3:
        return TrendAnalysis("flat", 0.0, round(ratio, 4))
    # Weekly units with the model's expected variation (season, prices, promotions) divided out.
    adjusted = actual[known] * expected[known].mean() / expected[known]
    level = float(adjusted.mean())
    if level <= 0.0:
        return TrendAnalysis("flat", 0.0, round(ratio, 4))
    slope = theil_sen_slope(adjusted)
    pct = 100.0 * slope / level
    n = len(adjusted)
    # Standard error of a least-squares slope when weekly units scatter like counts with a
    # relative noise floor (variance = level + (RELATIVE_NOISE * level)^2).
    spread = math.sqrt(level + (RELATIVE_NOISE * level) ** 2)
    noise = spread * math.sqrt(12.0 / (n * (n * n - 1)))
    material = abs(pct) >= FLAT_PCT and abs(slope) >= NOISE_Z * noise
    direction = ("rising" if slope > 0 else "falling") if material else "flat"
    return TrendAnalysis(direction, round(pct, 4), round(ratio, 4))
