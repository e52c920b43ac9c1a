"""Simulate one retailer's year of sales lines from its profile and the shared world.

Demand per product-day is negative binomial with log mean
``log base + elasticity*log(price/ref) + log(lift)*promo + log(weekly) + log(yearly)
+ cross*log(competitor/ref)``; lines are grouped into baskets, planted pairs co-added, sales
capped by stock, and a few returns appended. The result is a frame in canonical column names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.synthetic.arrays import BoolArray, FloatArray, IntArray
from shared.synthetic.baskets import (
    Baskets,
    Lines,
    describe_baskets,
    group_into_baskets,
    merge_duplicates,
    plant_pairs,
    shopping_times,
)
from shared.synthetic.dialects import IdStyle
from shared.synthetic.inventory import Stock, serve_from_stock, simulate_stock
from shared.synthetic.labels import SEGMENTS, product_names
from shared.synthetic.pricing import PricePaths, charm_price, simulate_prices
from shared.synthetic.profiles import RetailerProfile
from shared.synthetic.world import World

RETURN_SHARE = 0.005
RETURN_WITHIN_DAYS = 14
COST_RATIO_RANGE = (0.55, 0.75)
PRODUCT_SPREAD = 0.9  # lognormal sigma of product popularity within a category


@dataclass(frozen=True)
class Catalogue:
    """The retailer's products: category, reference price, cost ratio and popularity."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    category: IntArray  # index into the profile's categories
    ref_price: FloatArray
    cost_ratio: FloatArray
    weight: FloatArray  # share of the retailer's expected lines

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class RetailerSales:
    """One retailer's simulated sales in canonical columns, plus what the file cannot show."""

    profile: RetailerProfile
    frame: pd.DataFrame
    exported_columns: tuple[str, ...]
    catalogue_size: int
    stockout_days: int
    zero_inventory_lines: int
    return_lines: int
    co_added_lines: int
    unserved_lines: int


def make_catalogue(profile: RetailerProfile, world: World, rng: np.random.Generator) -> Catalogue:
    """Every category gets at least one product; the rest follow category demand levels."""
    k = len(profile.categories)
    params = [world.categories[code] for code in profile.categories]
    levels = np.array([p.base_demand for p in params])
    counts = 1 + rng.multinomial(profile.n_products - k, levels / levels.sum())
    category = np.repeat(np.arange(k), counts).astype(np.int64)
    low = np.log([params[c].price_range[0] for c in category])
    high = np.log([params[c].price_range[1] for c in category])
    ref_price = charm_price(np.exp(rng.uniform(low, high)))
    weight = levels[category] * rng.lognormal(0.0, PRODUCT_SPREAD, len(category))
    names = [
        name
        for code, count in zip(profile.categories, counts.tolist(), strict=True)
        for name in product_names(code, count, rng)
    ]
    numbers = rng.permutation(len(category)).tolist()
    return Catalogue(
        ids=tuple(profile.dialect.product_ids.render(n) for n in numbers),
        names=tuple(names),
        category=category,
        ref_price=ref_price,
        cost_ratio=rng.uniform(*COST_RATIO_RANGE, len(category)),
        weight=weight / weight.sum(),
    )


def expected_lines(
    profile: RetailerProfile,
    world: World,
    catalogue: Catalogue,
    paths: PricePaths,
    open_day: BoolArray,
) -> FloatArray:
    """Mean sales lines per (product, day) under the planted demand model."""
    params = [world.categories[code] for code in profile.categories]
    cat = catalogue.category
    elasticity = np.array([p.elasticity for p in params])[cat][:, None]
    lift = np.log(np.array([p.promo_lift for p in params]))[cat][:, None]
    cross = np.array([p.cross_price_elasticity for p in params])[cat][:, None]
    weekly = np.log(np.array([p.weekly for p in params]))[:, world.weekdays()][cat]
    doy = world.days_of_year()
    yearly = np.log(np.stack([p.yearly_multiplier(doy) for p in params]))[cat]
    ref = catalogue.ref_price[:, None]
    log_mean = (
        np.log(profile.daily_lines * catalogue.weight)[:, None]
        + elasticity * np.log(paths.price / ref)
        + lift * paths.promotion
        + weekly
        + yearly
        + cross * np.log(paths.competitor / ref)
    )
    return np.asarray(np.exp(log_mean) * open_day[None, :], dtype=np.float64)


def _render(style: IdStyle, numbers: IntArray) -> np.ndarray:
    """Identifier strings for many numbers, formatting each distinct number once."""
    unique, inverse = np.unique(numbers, return_inverse=True)
    texts = np.array([style.render(int(n)) for n in unique], dtype=object)
    return texts[inverse]


def _returns(
    lines: Lines,
    baskets: Baskets,
    stock: Stock,
    sold_per_day: IntArray,
    open_day: np.ndarray,
    profile: RetailerProfile,
    rng: np.random.Generator,
) -> tuple[Lines, Baskets, IntArray, IntArray]:
    """A few lines come back within two weeks, each on its own return receipt.

    Returns the return lines, their baskets (numbered after the existing ones), the day the
    goods were bought (their refund price) and the shelf stock recorded on the return line.
    """
    days = len(open_day)
    count = rng.binomial(len(lines), RETURN_SHARE)
    picked = rng.choice(len(lines), size=count, replace=False)
    back_day = lines.day[picked] + rng.integers(1, RETURN_WITHIN_DAYS + 1, size=count)
    product = lines.product[picked]
    valid = back_day < days
    valid[valid] &= open_day[back_day[valid]]
    valid[valid] &= stock.start_of_day[product[valid], back_day[valid]] > 0
    picked, back_day, product = picked[valid], back_day[valid], product[valid]
    origin = lines.basket[picked]
    new_basket = len(baskets) + np.arange(len(picked), dtype=np.int64)
    returned = Lines(product, back_day, new_basket, -lines.quantity[picked])
    receipts = Baskets(
        day=back_day,
        seconds=shopping_times(len(picked), profile.opening_hours, rng),
        customer=baskets.customer[origin],
        segment=baskets.segment[origin],
        store=baskets.store[origin],
    )
    shelf = stock.start_of_day[product, back_day] - sold_per_day[product, back_day]
    return returned, receipts, lines.day[picked], shelf.astype(np.int64)


def _shopping(
    profile: RetailerProfile,
    world: World,
    catalogue: Catalogue,
    paths: PricePaths,
    open_day: BoolArray,
    rng: np.random.Generator,
) -> tuple[Lines, Baskets, int]:
    """What customers want: demand lines in baskets, planted pairs co-added (before stock)."""
    days = world.days
    n_products = len(catalogue)
    params = [world.categories[code] for code in profile.categories]
    extra_units = np.array([p.extra_units_per_line for p in params])[catalogue.category]
    mean = expected_lines(profile, world, catalogue, paths, open_day)
    noise = rng.gamma(world.dispersion, 1.0 / world.dispersion, size=mean.shape)
    counts = rng.poisson(mean * noise)
    flat = np.repeat(np.arange(n_products * days, dtype=np.int64), counts.ravel())
    product, day, basket, basket_day = group_into_baskets(
        flat // days, flat % days, profile.mean_basket_lines, rng
    )
    baskets = describe_baskets(
        basket_day, profile.opening_hours, profile.anonymous_share, profile.stores, rng
    )
    quantity = 1 + rng.poisson(extra_units[product]).astype(np.int64)
    business = baskets.segment[basket] == SEGMENTS.index("business")
    quantity[business] *= rng.integers(1, 4, size=int(business.sum()))
    lines = Lines(product, day, basket, quantity)
    co_added = plant_pairs(
        lines,
        basket_day,
        catalogue.category,
        profile.categories,
        world.pairs,
        catalogue.weight,
        extra_units,
        rng,
    )
    merged = merge_duplicates(lines.concat(co_added), n_products, basket_day)
    return merged, baskets, len(co_added)


def simulate_retailer(
    profile: RetailerProfile, world: World, rng: np.random.Generator
) -> RetailerSales:
    """One year of sales lines for one retailer, in canonical column names."""
    days = world.days
    dates = world.dates()
    open_day = ~world.closed_mask() & ~np.isin(world.weekdays(), profile.closed_weekdays)
    catalogue = make_catalogue(profile, world, rng)
    n_products = len(catalogue)
    paths = simulate_prices(
        catalogue.ref_price,
        catalogue.cost_ratio,
        days,
        profile.promo_rate,
        profile.markdown_rate,
        rng,
    )
    lines, baskets, co_added = _shopping(profile, world, catalogue, paths, open_day, rng)

    demand = np.bincount(
        lines.product * days + lines.day, weights=lines.quantity, minlength=n_products * days
    )
    stock = simulate_stock(
        np.rint(demand).astype(np.int64).reshape(n_products, days), open_day, rng
    )
    order_key = baskets.seconds[lines.basket] * (len(baskets) + 1) + lines.basket
    sold, left = serve_from_stock(
        lines.product, lines.day, order_key, lines.quantity, stock.start_of_day
    )
    served = sold > 0
    unserved = int((~served).sum())
    lines = Lines(lines.product[served], lines.day[served], lines.basket[served], sold[served])
    left = left[served]
    sold_per_day = np.bincount(
        lines.product * days + lines.day, weights=lines.quantity, minlength=n_products * days
    )
    sold_per_day = np.rint(sold_per_day).astype(np.int64).reshape(n_products, days)

    returned, receipts, bought_day, return_shelf = _returns(
        lines, baskets, stock, sold_per_day, open_day, profile, rng
    )
    price_day = np.concatenate([lines.day, bought_day])
    all_lines = lines.concat(returned)
    all_baskets = Baskets(
        *(
            np.concatenate([getattr(baskets, f), getattr(receipts, f)])
            for f in ("day", "seconds", "customer", "segment", "store")
        )
    )
    inventory = np.concatenate([left, return_shelf])
    is_return = np.concatenate([np.zeros(len(lines), bool), np.ones(len(returned), bool)])

    frame = _frame(
        profile,
        world,
        catalogue,
        paths,
        all_lines,
        all_baskets,
        price_day,
        inventory,
        is_return,
        dates,
    )
    exported = tuple(
        name
        for name in profile.dialect.columns
        if name != "competitor_price" or profile.tracks_competitor
    )
    return RetailerSales(
        profile=profile,
        frame=frame,
        exported_columns=exported,
        catalogue_size=n_products,
        stockout_days=stock.stockout_days,
        zero_inventory_lines=int((left == 0).sum()),
        return_lines=len(returned),
        co_added_lines=co_added,
        unserved_lines=unserved,
    )


def _frame(
    profile: RetailerProfile,
    world: World,
    catalogue: Catalogue,
    paths: PricePaths,
    lines: Lines,
    baskets: Baskets,
    price_day: IntArray,
    inventory: IntArray,
    is_return: np.ndarray,
    dates: np.ndarray,
) -> pd.DataFrame:
    """Canonical columns (plus product_name and category_code) sorted like a till journal."""
    dialect = profile.dialect
    p, d, b = lines.product, lines.day, lines.basket
    # Receipt numbers run in time order over the baskets that still hold a line.
    used = np.unique(b)
    rank = np.full(len(baskets), -1, dtype=np.int64)
    by_time = used[np.lexsort((used, baskets.seconds[used], baskets.day[used]))]
    rank[by_time] = np.arange(len(by_time))
    codes = np.array(profile.categories, dtype=object)[catalogue.category[p]]
    labels = np.array([profile.category_labels[c] for c in profile.categories], dtype=object)
    params = [world.categories[code] for code in profile.categories]
    doy = world.days_of_year()
    seasonal = np.round(np.stack([q.yearly_multiplier(doy) for q in params]), 2)
    segment_words = np.array([dialect.segment_labels.get(s, s) for s in SEGMENTS], dtype=object)
    customer = baskets.customer[b]
    customer_text = _render(dialect.customer_ids, np.maximum(customer, 0))
    customer_text[customer < 0] = None
    timestamp = dates[d].astype("datetime64[s]") + baskets.seconds[b].astype("timedelta64[s]")
    frame = pd.DataFrame(
        {
            "transaction_id": _render(dialect.transaction_ids, rank[b]),
            "timestamp": timestamp,
            "retailer_id": _render(dialect.store_ids, baskets.store[b]),
            "customer_id": customer_text,
            "customer_segment": segment_words[baskets.segment[b]],
            "product_id": np.array(catalogue.ids, dtype=object)[p],
            "product_name": np.array(catalogue.names, dtype=object)[p],
            "category": labels[catalogue.category[p]],
            "category_code": codes,
            "quantity_sold": lines.quantity,
            "price": paths.price[p, price_day],
            "unit_cost": paths.unit_cost[p, d],
            "promotion_active": paths.promotion[p, d] & ~is_return,
            "competitor_price": paths.competitor[p, d],
            "inventory_level": inventory,
            "seasonal_factor": seasonal[catalogue.category[p], d],
        }
    )
    order = np.lexsort((p, rank[b], timestamp))
    frame = frame.iloc[order].reset_index(drop=True)
    for column in ("transaction_id", "retailer_id", "customer_id", "customer_segment"):
        frame[column] = frame[column].astype("string")
    for column in ("product_id", "product_name", "category", "category_code"):
        frame[column] = frame[column].astype("string")
    return frame
