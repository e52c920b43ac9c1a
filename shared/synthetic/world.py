"""The planted market: category demand parameters that every synthetic retailer shares.

Federated models are judged by whether they recover what is common across retailers, so the
common truth has to be known. This module draws it once per seed and nothing downstream alters it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from shared.synthetic.arrays import FloatArray, IntArray
from shared.taxonomy import Taxonomy

END_DATE = date(2026, 10, 31)
HISTORY_DAYS = 365
DAYS_PER_YEAR = 365.25
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Planted ranges; the drawn values are what ground truth records.
ELASTICITY_RANGE = (-2.5, -0.5)
PROMO_LIFT_RANGE = (1.2, 1.8)
CROSS_PRICE_RANGE = (0.05, 0.5)
PAIR_BOOST_RANGE = (0.25, 0.45)
PAIR_COUNT_RANGE = (3, 5)
EXTRA_UNITS_RANGE = (0.1, 0.6)
# Gamma shape of the demand noise: Poisson x Gamma(k, 1/k) = negative binomial, variance mu+mu^2/k.
DISPERSION = 4.0

# Typical store: weekend peak, quiet Sunday (many shops close or shorten hours).
_WEEKLY_SHAPE = (0.85, 0.9, 0.95, 1.0, 1.15, 1.35, 0.8)

# (relative base demand, lowest reference price, highest reference price) per taxonomy code.
CATEGORY_PRIORS: dict[str, tuple[float, float, float]] = {
    "bakery": (1.6, 0.8, 6.0),
    "dairy": (1.8, 0.6, 7.0),
    "produce": (1.7, 0.5, 5.0),
    "meat_fish": (1.0, 3.0, 18.0),
    "pantry": (1.2, 0.8, 6.0),
    "snacks": (1.3, 0.9, 4.5),
    "beverages": (1.6, 0.6, 5.0),
    "alcohol": (0.8, 1.5, 25.0),
    "frozen": (0.8, 1.5, 8.0),
    "household": (0.6, 1.5, 12.0),
    "personal_care": (0.6, 1.5, 15.0),
    "baby": (0.4, 2.0, 20.0),
    "pet": (0.5, 1.5, 25.0),
    "home_garden": (0.3, 3.0, 40.0),
    "clothing": (0.3, 5.0, 60.0),
    "electronics": (0.2, 5.0, 120.0),
    "toys_hobby": (0.3, 3.0, 40.0),
}
_DEFAULT_PRIOR = (0.5, 1.0, 20.0)

# Disjoint, plausible complements; the world plants a few of them.
PAIR_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("bakery", "dairy"),
    ("snacks", "beverages"),
    ("pet", "household"),
    ("baby", "personal_care"),
    ("meat_fish", "produce"),
    ("pantry", "alcohol"),
    ("toys_hobby", "electronics"),
)


@dataclass(frozen=True)
class CategoryParams:
    """True demand behaviour of one taxonomy category, identical at every retailer."""

    code: str
    elasticity: float
    base_demand: float
    promo_lift: float
    cross_price_elasticity: float
    weekly: tuple[float, ...]
    yearly_amplitudes: tuple[float, ...]
    yearly_phases: tuple[float, ...]
    price_range: tuple[float, float]
    extra_units_per_line: float

    def yearly_multiplier(self, day_of_year: IntArray) -> FloatArray:
        """exp(sum_k a_k sin(2 pi k doy / 365.25 + phi_k)), doy counted from 0 on 1 January."""
        angle = 2.0 * math.pi * day_of_year.astype(np.float64) / DAYS_PER_YEAR
        log_mult = np.zeros_like(angle)
        for k, (amp, phase) in enumerate(
            zip(self.yearly_amplitudes, self.yearly_phases, strict=True), start=1
        ):
            log_mult += amp * np.sin(k * angle + phase)
        return np.exp(log_mult)

    def to_json(self) -> dict[str, Any]:
        return {
            "elasticity": self.elasticity,
            "base_demand": self.base_demand,
            "promo_lift": self.promo_lift,
            "cross_price_elasticity": self.cross_price_elasticity,
            "weekly": dict(zip(WEEKDAYS, self.weekly, strict=True)),
            "yearly": [
                {"harmonic": k, "amplitude": amp, "phase": phase}
                for k, (amp, phase) in enumerate(
                    zip(self.yearly_amplitudes, self.yearly_phases, strict=True), start=1
                )
            ],
            "price_range": list(self.price_range),
            "extra_units_per_line": self.extra_units_per_line,
        }


@dataclass(frozen=True)
class PlantedPair:
    """Two complementary categories: a basket holding one gains the other with probability boost."""

    first: str
    second: str
    boost: float

    def to_json(self) -> dict[str, Any]:
        return {"categories": [self.first, self.second], "boost": self.boost}


@dataclass(frozen=True)
class World:
    """Everything planted that is shared by all retailers of one demo."""

    taxonomy_version: str
    start: date
    end: date
    categories: Mapping[str, CategoryParams]
    pairs: tuple[PlantedPair, ...]
    closed_dates: tuple[date, ...]
    dispersion: float

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> np.ndarray:
        """Every calendar day of the history as datetime64[D]."""
        return np.datetime64(self.start, "D") + np.arange(self.days)

    def weekdays(self) -> IntArray:
        """Day of week for every day, Monday = 0."""
        return ((self.dates().astype(np.int64) + 3) % 7).astype(np.int64)

    def days_of_year(self) -> IntArray:
        """0-based day of year for every day, the phase reference of yearly seasonality."""
        days = self.dates()
        offsets = days - days.astype("datetime64[Y]").astype("datetime64[D]")
        return np.asarray(offsets.astype(np.int64), dtype=np.int64)

    def closed_mask(self) -> np.ndarray:
        """True on public holidays on which every shop is closed."""
        closed = np.array(self.closed_dates, dtype="datetime64[D]")
        return np.isin(self.dates(), closed)


def _round(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _category(code: str, rng: np.random.Generator) -> CategoryParams:
    level, low, high = CATEGORY_PRIORS.get(code, _DEFAULT_PRIOR)
    weekly = np.array(_WEEKLY_SHAPE) * rng.lognormal(0.0, 0.08, 7)
    weekly = weekly / weekly.mean()
    return CategoryParams(
        code=code,
        elasticity=_round(rng.uniform(*ELASTICITY_RANGE)),
        base_demand=_round(level * rng.lognormal(0.0, 0.15)),
        promo_lift=_round(rng.uniform(*PROMO_LIFT_RANGE)),
        cross_price_elasticity=_round(rng.uniform(*CROSS_PRICE_RANGE)),
        weekly=tuple(_round(w) for w in weekly),
        yearly_amplitudes=(_round(rng.uniform(0.05, 0.35)), _round(rng.uniform(0.0, 0.1))),
        yearly_phases=(
            _round(rng.uniform(0.0, 2 * math.pi)),
            _round(rng.uniform(0.0, 2 * math.pi)),
        ),
        price_range=(low, high),
        extra_units_per_line=_round(rng.uniform(*EXTRA_UNITS_RANGE)),
    )


def build_world(taxonomy: Taxonomy, rng: np.random.Generator) -> World:
    """Draw the market's planted parameters for every taxonomy category except the fallback."""
    codes = [code for code in taxonomy.codes if code != taxonomy.fallback]
    categories = {code: _category(code, rng) for code in codes}
    candidates = [
        pair for pair in PAIR_CANDIDATES if pair[0] in categories and pair[1] in categories
    ]
    count = min(len(candidates), int(rng.integers(PAIR_COUNT_RANGE[0], PAIR_COUNT_RANGE[1] + 1)))
    chosen = sorted(rng.choice(len(candidates), size=count, replace=False).tolist())
    pairs = tuple(
        PlantedPair(candidates[i][0], candidates[i][1], _round(rng.uniform(*PAIR_BOOST_RANGE)))
        for i in chosen
    )
    start = END_DATE - timedelta(days=HISTORY_DAYS - 1)
    holidays = {date(year, 12, 25) for year in (start.year, END_DATE.year)}
    holidays |= {date(year, 1, 1) for year in (start.year, END_DATE.year)}
    closed = tuple(sorted(day for day in holidays if start <= day <= END_DATE))
    return World(
        taxonomy_version=taxonomy.version,
        start=start,
        end=END_DATE,
        categories=categories,
        pairs=pairs,
        closed_dates=closed,
        dispersion=DISPERSION,
    )
