"""Price, promotion and competitor-price paths per product and day.

Elasticity can only be learned where prices move, so products get occasional permanent price
changes, temporary markdowns and flagged promotions, and a competitor moves its prices too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.synthetic.arrays import BoolArray, FloatArray, IntArray

PERMANENT_CHANGES_PER_YEAR = 1.5
PERMANENT_CHANGE_RANGE = (0.88, 1.15)
PROMO_LENGTH = (5, 15)
PROMO_DISCOUNTS = (0.0, 0.1, 0.15, 0.2, 0.25)
MARKDOWN_LENGTH = (3, 11)
MARKDOWN_RANGE = (0.1, 0.35)
COMPETITOR_RATE = 1 / 30
COMPETITOR_LENGTH = (3, 9)
COMPETITOR_DISCOUNT = (0.1, 0.25)
MIN_PRICE = 0.05


@dataclass(frozen=True)
class PricePaths:
    """(products x days) arrays of what the shop charged and what the competitor charged."""

    list_price: FloatArray
    price: FloatArray
    promotion: BoolArray
    markdown: BoolArray
    competitor: FloatArray
    unit_cost: FloatArray


def charm_price(value: FloatArray) -> FloatArray:
    """Shelf prices end in 9: 2.43 -> 2.49, 37.40 -> 37.99."""
    small = np.floor(value * 10.0) / 10.0 + 0.09
    large = np.floor(value) + 0.99
    return np.asarray(
        np.round(np.maximum(np.where(value < 10.0, small, large), 0.19), 2), np.float64
    )


def _episodes(
    rate: FloatArray | float,
    draws: FloatArray,
    lengths: IntArray,
    blocked: BoolArray | None = None,
) -> IntArray:
    """Index (0 = none) of the episode covering each (product, day); episodes never overlap.

    An episode starts on a free day with probability ``rate`` and lasts ``lengths[p, d]`` days;
    ``blocked`` marks days that belong to a competing kind of episode.
    """
    n, days = draws.shape
    left = np.zeros(n, dtype=np.int64)
    current = np.zeros(n, dtype=np.int64)
    out = np.zeros((n, days), dtype=np.int64)
    starts = draws < rate
    for d in range(days):
        free = left == 0
        if blocked is not None:
            free &= ~blocked[:, d]
        begin = free & starts[:, d]
        left[begin] = lengths[begin, d]
        current[begin] = d + 1
        active = left > 0
        out[:, d] = np.where(active, current, 0)
        left[active] -= 1
    return out


def simulate_prices(
    ref_price: FloatArray,
    cost_ratio: FloatArray,
    days: int,
    promo_rate: float,
    markdown_rate: float,
    rng: np.random.Generator,
) -> PricePaths:
    """Walk every product's price through the year (per-day loops over product vectors)."""
    n = len(ref_price)
    shape = (n, days)
    rows = np.arange(n)[:, None]
    perm_rate = PERMANENT_CHANGES_PER_YEAR / 365.0

    # Permanent changes compound; shelf prices keep their 9-endings.
    steps = np.where(rng.random(shape) < perm_rate, rng.uniform(*PERMANENT_CHANGE_RANGE, shape), 1)
    list_price = charm_price(ref_price[:, None] * np.cumprod(steps, axis=1))

    promo = _episodes(promo_rate, rng.random(shape), rng.integers(*PROMO_LENGTH, shape))
    promo_discount = rng.choice(PROMO_DISCOUNTS, size=shape)
    markdown = _episodes(
        markdown_rate, rng.random(shape), rng.integers(*MARKDOWN_LENGTH, shape), promo > 0
    )
    markdown_discount = rng.uniform(*MARKDOWN_RANGE, shape)
    # An episode keeps the discount drawn on its first day.
    discount = np.where(
        promo > 0,
        promo_discount[rows, np.maximum(promo - 1, 0)],
        np.where(markdown > 0, markdown_discount[rows, np.maximum(markdown - 1, 0)], 0.0),
    )
    price = np.maximum(np.round(list_price * (1.0 - discount), 2), MIN_PRICE)

    comp_steps = np.where(rng.random(shape) < perm_rate, rng.uniform(0.9, 1.1, shape), 1)
    comp_list = ref_price[:, None] * rng.uniform(0.9, 1.1, (n, 1)) * np.cumprod(comp_steps, axis=1)
    comp = _episodes(COMPETITOR_RATE, rng.random(shape), rng.integers(*COMPETITOR_LENGTH, shape))
    comp_discount = rng.uniform(*COMPETITOR_DISCOUNT, shape)
    comp_off = np.where(comp > 0, comp_discount[rows, np.maximum(comp - 1, 0)], 0.0)
    competitor = np.maximum(np.round(comp_list * (1.0 - comp_off), 2), MIN_PRICE)

    # Cost follows the list price (suppliers raise prices too) but not markdowns or promotions.
    unit_cost = np.round(list_price * cost_ratio[:, None], 2)
    on_promo = promo > 0
    return PricePaths(
        list_price, price, on_promo, (markdown > 0) & ~on_promo, competitor, unit_cost
    )
