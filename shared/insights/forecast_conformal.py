"""Split conformal prediction intervals for aggregated unit forecasts (pure numpy).

Nonconformity is the normalised absolute residual ``|y - mu| / sigma(mu)`` with
``sigma(mu)^2 = units * mu + relative * mu^2 + SCALE_FLOOR`` (``Spread``): count noise at low
volume (``units`` > 1 when a sale is often several units), a relative error at high volume
(overdispersion and the model's level error), never zero. The spread's shape is fitted on the
calibration cells; it only decides how the interval width scales with the forecast, the
conformal quantile then sets the width. The interval ``mu -/+ q * sigma(mu)`` (clipped at 0)
covers a new exchangeable cell with probability at least ``level``.

Why symmetric and not signed scores (two quantiles, asymmetric intervals): on synthetic shops
the holdout's bias direction often flipped in the future (a season rising in the holdout and
falling after it), and signed quantiles carried the holdout's direction into the future
intervals; symmetric scores held coverage better (measured, see ``forecast``). Count-data
skew still shows: misses are mostly above the interval (promotions a forecast cannot know).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Added to the variance so that a cell forecast at (near) zero still gets a usable scale.
SCALE_FLOOR = 0.5
# Variance per expected unit is at least this (Poisson is 1; allow a little underdispersion).
MIN_UNITS = 0.5
# Fewer calibration cells than this and the conformal quantile is too coarse to trust.
MIN_SCORES = 20
# Fallback spread when there is nothing to calibrate on: a negative binomial's.
FALLBACK_RELATIVE = 0.25


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) * level)``-th smallest score: P(new score <= it) >= level.

    For n exchangeable scores and one more, the new score's rank is uniform on 1..n+1 (ties
    broken at random), so it is at most this order statistic with probability
    ``ceil((n + 1) * level) / (n + 1) >= level``. Returns +inf when n is too small for that rank
    to exist: then no finite quantile is valid.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    values = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    rank = math.ceil((len(values) + 1) * level)
    if rank > len(values):
        return math.inf
    return float(values[rank - 1])


@dataclass(frozen=True)
class Spread:
    """Variance model of a cell's units: Var(y) = units * mu + relative * mu^2 + SCALE_FLOOR."""

    units: float = 1.0
    relative: float = FALLBACK_RELATIVE

    def scale(self, mean: np.ndarray) -> np.ndarray:
        """sigma(mu), the score normaliser (always > 0)."""
        mu = np.clip(np.asarray(mean, dtype=np.float64), 0.0, None)
        return np.sqrt(max(self.units, 0.0) * mu + max(self.relative, 0.0) * mu**2 + SCALE_FLOOR)


def fit_spread(actual: np.ndarray, mean: np.ndarray, rounds: int = 4) -> Spread:
    """Squared residuals regressed on (mu, mu^2), each cell weighted by its inverse squared
    variance (iterated), so no single huge cell decides the shape."""
    y = np.asarray(actual, dtype=np.float64)
    mu = np.clip(np.asarray(mean, dtype=np.float64), 0.0, None)
    if len(y) == 0 or not np.any(mu > 0):
        return Spread()
    squared = (y - mu) ** 2
    design = np.stack([mu, mu**2], axis=1)
    spread = Spread(1.0, 0.1)
    for _ in range(rounds):
        weight = 1.0 / spread.scale(mu) ** 4
        gram = design.T @ (design * weight[:, None])
        target = design.T @ (squared * weight)
        try:
            units, relative = np.linalg.solve(gram + 1e-12 * np.eye(2), target)
        except np.linalg.LinAlgError:
            break
        if relative < 0:  # no relative term: refit the count term alone
            units, relative = float(target[0] / gram[0, 0]), 0.0
        if units < MIN_UNITS:  # keep count noise: refit the relative term with it fixed
            units = MIN_UNITS
            relative = max(float((target[1] - gram[1, 0] * units) / gram[1, 1]), 0.0)
        if not (math.isfinite(units) and math.isfinite(relative)):
            break
        spread = Spread(float(units), float(relative))
    return spread


def scores(actual: np.ndarray, mean: np.ndarray, spread: Spread) -> np.ndarray:
    """|y - mu| / sigma(mu) per calibration cell."""
    y = np.asarray(actual, dtype=np.float64)
    mu = np.clip(np.asarray(mean, dtype=np.float64), 0.0, None)
    return np.asarray(np.abs(y - mu) / spread.scale(mu), dtype=np.float64)


def interval_bounds(
    mean: np.ndarray, spread: Spread, quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """mu -/+ q * sigma(mu): never negative, always containing mu (a negative or NaN forecast
    is treated as 0)."""
    mu = np.clip(np.nan_to_num(np.asarray(mean, dtype=np.float64)), 0.0, None)
    width = max(quantile, 0.0) * spread.scale(mu)
    return np.clip(mu - width, 0.0, mu), mu + width


@dataclass(frozen=True)
class Calibration:
    """What one pool of cells (scope x horizon) learned: the spread and the score quantile."""

    level: float
    spread: Spread
    quantile: float
    cells: int
    calibrated: bool  # False: too few cells, the uncalibrated fallback is used

    def interval(self, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for point forecasts."""
        return interval_bounds(mean, self.spread, self.quantile)


def calibrate(
    actual: np.ndarray,
    mean: np.ndarray,
    level: float,
    spread: Spread | None = None,
    independent: int | None = None,
) -> Calibration:
    """Split conformal calibration on one pool of (actual, forecast) cells.

    ``spread`` fixes the normalisation (else it is fitted on the pool). ``independent``: how
    many roughly independent cells the pool holds when its cells overlap (windows sliding by a
    day); the quantile is then taken at the finite-sample level for that many,
    ``ceil((m + 1) * level) / m``, since the guarantee's n is the number of exchangeable units.
    """
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    y = np.asarray(actual, dtype=np.float64).ravel()
    mu = np.asarray(mean, dtype=np.float64).ravel()
    keep = np.isfinite(y) & np.isfinite(mu)
    y, mu = y[keep], mu[keep]
    if len(y) < MIN_SCORES:
        return fallback_calibration(level, len(y))
    spread = spread or fit_spread(y, mu)
    values = scores(y, mu, spread)
    target = level
    if independent is not None and 0 < independent < len(y):
        target = math.ceil((independent + 1) * level) / independent
    quantile = conformal_quantile(values, target) if target < 1.0 else math.inf
    if not math.isfinite(quantile):  # too few units for the level: the largest score
        quantile = float(values.max())
    return Calibration(level, spread, quantile, len(y), calibrated=True)


def fallback_calibration(level: float, cells: int = 0) -> Calibration:
    """Normal approximation with a negative-binomial spread, for a node without a holdout."""
    quantile = NormalDist().inv_cdf(0.5 + level / 2.0)
    return Calibration(level, Spread(), quantile, cells, calibrated=False)
