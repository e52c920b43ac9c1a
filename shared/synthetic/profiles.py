"""Who the synthetic retailers are: size, range, vocabulary and export habits.

Federated learning has to work when a few large shops sit next to many small ones, so sizes are
skewed on purpose, and each retailer carries a different slice of the market in its own words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from shared.synthetic.dialects import DIALECTS, Dialect
from shared.synthetic.labels import category_labels
from shared.synthetic.world import World
from shared.taxonomy import Taxonomy

LARGEST_TO_SMALLEST = 10.0
# Expected sales lines per day of a size-1 retailer at scale 1.0 (before co-purchases and lifts).
BASE_DAILY_LINES = 9.0
PRODUCTS_RANGE = (15, 200)
CATEGORIES_RANGE = (6, 10)


@dataclass(frozen=True)
class RetailerProfile:
    """The fixed traits of one synthetic retailer; sales are simulated from these."""

    number: int
    retailer_id: str
    dialect: Dialect
    size: float
    categories: tuple[str, ...]
    category_labels: Mapping[str, str]  # taxonomy code -> the retailer's own label
    n_products: int
    daily_lines: float
    mean_basket_lines: float
    tracks_competitor: bool
    closed_weekdays: tuple[int, ...]
    opening_hours: tuple[int, int]
    stores: int
    anonymous_share: float
    promo_rate: float
    markdown_rate: float


def skewed_sizes(count: int, rng: np.random.Generator) -> list[float]:
    """Relative sizes from 1 to about 10, convex in rank: many small retailers, a few large."""
    if count == 1:
        return [1.0]
    ranks = np.arange(count) / (count - 1)
    sizes = LARGEST_TO_SMALLEST ** (ranks**2) * rng.uniform(0.92, 1.08, count)
    return sorted(float(s) for s in sizes)


def _assign_sizes(dialects: list[Dialect], rng: np.random.Generator) -> list[float]:
    """Spreadsheet retailers get the smallest sizes: openpyxl is slow and real ones are small."""
    sizes = skewed_sizes(len(dialects), rng)
    slow = [i for i, d in enumerate(dialects) if d.file_format == "xlsx"]
    rest = [i for i, d in enumerate(dialects) if d.file_format != "xlsx"]
    order = slow + [rest[i] for i in rng.permutation(len(rest)).tolist()]
    assigned = [0.0] * len(dialects)
    for size, index in zip(sizes, order, strict=True):
        assigned[index] = size
    return assigned


def _choose_categories(
    world: World, count: int, taxonomy: Taxonomy, rng: np.random.Generator
) -> tuple[str, ...]:
    """A range that always contains at least one planted pair, so associations are observable."""
    codes = list(world.categories)
    pairs = list(world.pairs)
    n_pairs = min(len(pairs), 2 if count >= 8 else 1)
    chosen: list[str] = []
    for index in rng.choice(len(pairs), size=n_pairs, replace=False).tolist():
        chosen += [pairs[index].first, pairs[index].second]
    remaining = [code for code in codes if code not in chosen]
    extra = count - len(chosen)
    chosen += [remaining[i] for i in rng.choice(len(remaining), size=extra, replace=False)]
    order = {code: i for i, code in enumerate(taxonomy.codes)}
    return tuple(sorted(set(chosen), key=order.__getitem__))


def build_profiles(
    world: World, count: int, scale: float, taxonomy: Taxonomy, rng: np.random.Generator
) -> tuple[RetailerProfile, ...]:
    """Draw ``count`` retailers, each in the next dialect of the cycle."""
    dialects = [DIALECTS[i % len(DIALECTS)] for i in range(count)]
    sizes = _assign_sizes(dialects, rng)
    profiles = []
    for index, (dialect, size) in enumerate(zip(dialects, sizes, strict=True)):
        n_categories = int(
            np.clip(round(CATEGORIES_RANGE[0] + 4 * math.log10(size)), *CATEGORIES_RANGE)
        )
        n_categories = min(n_categories, len(world.categories))
        categories = _choose_categories(world, n_categories, taxonomy, rng)
        n_products = round(PRODUCTS_RANGE[0] * size**1.15 * rng.uniform(0.9, 1.1))
        n_products = int(
            np.clip(n_products, max(PRODUCTS_RANGE[0], n_categories), PRODUCTS_RANGE[1])
        )
        profiles.append(
            RetailerProfile(
                number=index + 1,
                retailer_id=f"retailer_{index + 1:02d}",
                dialect=dialect,
                size=round(size, 3),
                categories=categories,
                category_labels=category_labels(categories, dialect.label_style, taxonomy, rng),
                n_products=n_products,
                daily_lines=BASE_DAILY_LINES * size * scale,
                mean_basket_lines=round(float(rng.uniform(2.2, 3.4)), 2),
                # Every other retailer watches a competitor (where its export has the column);
                # the pattern flips with each pass through the dialects so no dialect always has it.
                tracks_competitor=index % 2 == (index // len(DIALECTS)) % 2
                and "competitor_price" in dialect.columns,
                # German-style shops close on Sundays: real exports have weekly gaps.
                closed_weekdays=(6,) if dialect.label_style == "de" else (),
                opening_hours=(int(rng.integers(7, 10)), int(rng.integers(18, 22))),
                stores=1 + int(size >= 3.0) + int(size >= 7.0),
                anonymous_share=round(float(rng.uniform(0.2, 0.45)), 3),
                promo_rate=float(rng.uniform(1 / 100, 1 / 45)),
                markdown_rate=float(rng.uniform(1 / 90, 1 / 45)),
            )
        )
    return tuple(profiles)
