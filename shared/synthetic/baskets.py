"""Turn product-day demand into shopping baskets and plant the complementary pairs.

Bundle models learn from what is bought together, so lines are grouped into receipts with a
time, a customer and a segment, and planted category pairs are co-added at a known rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.synthetic.arrays import FloatArray, IntArray
from shared.synthetic.labels import SEGMENTS
from shared.synthetic.world import PlantedPair

BUSINESS_SHARE = 0.12
VISITS_PER_KNOWN_CUSTOMER = 25.0
LOYALTY, WALK_IN, BUSINESS = (SEGMENTS.index(s) for s in ("loyalty", "walk-in", "business"))


@dataclass(frozen=True)
class Lines:
    """Sales lines as parallel arrays: which product, on which day, in which basket, how many."""

    product: IntArray
    day: IntArray
    basket: IntArray
    quantity: IntArray

    def __len__(self) -> int:
        return len(self.product)

    def concat(self, other: Lines) -> Lines:
        return Lines(
            np.concatenate([self.product, other.product]),
            np.concatenate([self.day, other.day]),
            np.concatenate([self.basket, other.basket]),
            np.concatenate([self.quantity, other.quantity]),
        )


@dataclass(frozen=True)
class Baskets:
    """Per-basket attributes; a basket's lines share its time, customer, segment and store."""

    day: IntArray
    seconds: IntArray  # seconds after midnight
    customer: IntArray  # -1 = anonymous
    segment: IntArray  # index into labels.SEGMENTS
    store: IntArray

    def __len__(self) -> int:
        return len(self.day)


def group_into_baskets(
    product: IntArray, day: IntArray, mean_lines: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Shuffle each day's lines and cut them into baskets of geometric size with the given mean.

    Returns the reordered products and days, each line's basket and each basket's day.
    """
    order = np.lexsort((rng.random(len(day)), day))
    product, day = product[order], day[order]
    new_day = np.ones(len(day), dtype=bool)
    new_day[1:] = day[1:] != day[:-1]
    starts = new_day | (rng.random(len(day)) < 1.0 / mean_lines)
    basket = np.cumsum(starts).astype(np.int64) - 1
    return product, day, basket, day[starts]


def shopping_times(
    count: int, opening_hours: tuple[int, int], rng: np.random.Generator
) -> IntArray:
    """Seconds after midnight with a late-morning and an after-work peak inside opening hours."""
    open_h, close_h = opening_hours
    mode = rng.random(count)
    hours = np.where(
        mode < 0.4,
        rng.normal(11.5, 1.3, count),
        np.where(mode < 0.8, rng.normal(17.3, 1.3, count), rng.uniform(open_h, close_h, count)),
    )
    seconds = np.round(hours * 3600.0).astype(np.int64)
    return np.clip(seconds, open_h * 3600, close_h * 3600 - 60)


def describe_baskets(
    basket_day: IntArray,
    opening_hours: tuple[int, int],
    anonymous_share: float,
    stores: int,
    rng: np.random.Generator,
) -> Baskets:
    """Give baskets a time, a store and a customer; regulars come back, walk-ins stay anonymous."""
    n = len(basket_day)
    anonymous = rng.random(n) < anonymous_share
    pool = max(40, round((n - int(anonymous.sum())) / VISITS_PER_KNOWN_CUSTOMER))
    pool_segment = np.where(rng.random(pool) < BUSINESS_SHARE, BUSINESS, LOYALTY)
    loyalty = 1.0 / (np.arange(pool) + 3.0) ** 0.9  # a few very regular customers
    customer = rng.choice(pool, size=n, p=loyalty / loyalty.sum()).astype(np.int64)
    customer[anonymous] = -1
    segment = np.where(anonymous, WALK_IN, pool_segment[np.maximum(customer, 0)]).astype(np.int64)
    return Baskets(
        day=basket_day,
        seconds=shopping_times(n, opening_hours, rng),
        customer=customer,
        segment=segment,
        store=rng.integers(stores, size=n).astype(np.int64),
    )


def plant_pairs(
    lines: Lines,
    basket_day: IntArray,
    product_category: IntArray,
    categories: Sequence[str],
    pairs: Sequence[PlantedPair],
    product_weight: FloatArray,
    extra_units: FloatArray,
    rng: np.random.Generator,
) -> Lines:
    """Lines to add: a basket with one side of a planted pair gains the other with p = boost."""
    n_baskets = len(basket_day)
    presence = np.zeros((n_baskets, len(categories)), dtype=bool)
    presence[lines.basket, product_category[lines.product]] = True
    added: list[Lines] = []
    for pair in pairs:
        if pair.first not in categories or pair.second not in categories:
            continue
        a, b = categories.index(pair.first), categories.index(pair.second)
        for source, target in ((a, b), (b, a)):
            hit = presence[:, source] & ~presence[:, target] & (rng.random(n_baskets) < pair.boost)
            baskets = np.flatnonzero(hit).astype(np.int64)
            candidates = np.flatnonzero(product_category == target)
            weights = product_weight[candidates] / product_weight[candidates].sum()
            chosen = rng.choice(candidates, size=len(baskets), p=weights).astype(np.int64)
            quantity = 1 + rng.poisson(extra_units[chosen]).astype(np.int64)
            added.append(Lines(chosen, basket_day[baskets], baskets, quantity))
    empty = np.zeros(0, dtype=np.int64)
    result = Lines(empty, empty, empty, empty)
    for extra in added:
        result = result.concat(extra)
    return result


def merge_duplicates(lines: Lines, n_products: int, basket_day: IntArray) -> Lines:
    """One line per (basket, product): a product scanned twice becomes one line with the sum."""
    key = lines.basket * n_products + lines.product
    unique, inverse = np.unique(key, return_inverse=True)
    quantity = np.bincount(inverse, weights=lines.quantity, minlength=len(unique))
    basket = unique // n_products
    return Lines(
        product=(unique % n_products).astype(np.int64),
        day=basket_day[basket],
        basket=basket.astype(np.int64),
        quantity=np.rint(quantity).astype(np.int64),
    )
