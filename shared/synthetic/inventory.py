"""Stock levels, replenishment and stock-outs.

Demand models must not mistake an empty shelf for low demand, so shelves sometimes run empty:
supplier outages hold a product at zero stock for a few days, and big days can sell out early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.synthetic.arrays import BoolArray, IntArray

OUTAGE_RATE = 1 / 150  # chance per product and day that a supplier outage starts
OUTAGE_LENGTH = (1, 6)
COVER_DAYS = (5.0, 12.0)
REORDER_DAYS = 2.0
BULK_SHARE = 0.05  # products kept in a large back room, whose stock runs into thousands
BULK_STOCK = (1000, 3000)


@dataclass(frozen=True)
class Stock:
    """Units on the shelf at the start of every (product, day), and the stock-out tally."""

    start_of_day: IntArray
    stockout_days: int
    outage_days: int


def simulate_stock(demand: IntArray, open_day: BoolArray, rng: np.random.Generator) -> Stock:
    """Order-up-to replenishment each morning plus random supplier outages (per-day loop)."""
    n, days = demand.shape
    open_days = max(int(open_day.sum()), 1)
    mean_daily = demand[:, open_day].sum(axis=1) / open_days
    target = np.ceil(mean_daily * rng.uniform(*COVER_DAYS, n)).astype(np.int64) + 3
    reorder = np.ceil(mean_daily * REORDER_DAYS).astype(np.int64) + 1
    bulk = rng.choice(n, size=max(1, round(BULK_SHARE * n)), replace=False)
    target[bulk] = rng.integers(*BULK_STOCK, size=len(bulk))
    reorder[bulk] = target[bulk] // 4
    outage_draws = rng.random((n, days))
    outage_lengths = rng.integers(*OUTAGE_LENGTH, size=(n, days))
    stock = target.copy()
    outage_left = np.zeros(n, dtype=np.int64)
    start = np.zeros((n, days), dtype=np.int64)
    outage_days = 0
    for d in range(days):
        begin = (outage_left == 0) & (outage_draws[:, d] < OUTAGE_RATE) & open_day[d]
        outage_left[begin] = outage_lengths[begin, d]
        out = outage_left > 0
        stock[out] = 0
        refill = ~out & (stock <= reorder)
        stock[refill] = target[refill]
        start[:, d] = stock
        stock = stock - np.minimum(demand[:, d], stock)
        if open_day[d]:
            outage_days += int(out.sum())
            outage_left[out] -= 1
    stockout_days = int((start[:, open_day] == 0).sum())
    return Stock(start_of_day=start, stockout_days=stockout_days, outage_days=outage_days)


def serve_from_stock(
    product: IntArray,
    day: IntArray,
    order_key: IntArray,
    quantity: IntArray,
    start_of_day: IntArray,
) -> tuple[IntArray, IntArray]:
    """Serve each product-day's lines in time order until the shelf is empty.

    Returns the quantity actually sold per line (0 = customer left without it) and the stock
    left on the shelf right after the line, both in the input order.
    """
    days = start_of_day.shape[1]
    key = product * days + day
    order = np.lexsort((order_key, key))
    key_s, qty_s = key[order], quantity[order]
    first = np.ones(len(key_s), dtype=bool)
    first[1:] = key_s[1:] != key_s[:-1]
    running = np.cumsum(qty_s)
    group = np.cumsum(first) - 1
    before = running - qty_s - (running - qty_s)[first][group]
    cap = start_of_day[product[order], day[order]]
    sold_s = np.clip(cap - before, 0, qty_s)
    left_s = np.maximum(cap - before - sold_s, 0)
    sold = np.empty_like(sold_s)
    left = np.empty_like(left_s)
    sold[order] = sold_s
    left[order] = left_s
    return sold, left
