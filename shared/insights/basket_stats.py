"""A node's basket statistics for bundles and market trends, bounded and noised before release.

What is counted, over the taxonomy (never products, so no catalogue leaves the shop):
- ``singles[c]``: baskets holding category c; ``pairs[a<b]``: baskets holding both;
- ``weekly[c, w]``: baskets holding c in week w of a window both sides agree on (trends);
- ``baskets``: the number of baskets.

Each basket is one record. Its category set is cut to at most ``MAX_CATEGORIES`` (a seeded random
subset, so no category is favoured), so one basket changes at most m singles, m(m-1)/2 pairs, m
weekly cells and the total, each by one: the L2 sensitivity is sqrt(2m + m(m-1)/2 + 1). Gaussian
noise of that sensitivity times the ledger's noise multiplier makes the release (ε, δ)-DP at the
basket level; the ledger charges it as one Gaussian count release before anything leaves.

``contributes[c]`` (does this shop sell category c at all) is released without noise: it is a
fact about the shop, not about any customer, and the coordinator only ever sees its sum over at
least five shops (SecAgg+), which is what the k >= 5 publication rule counts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from shared.taxonomy import load_taxonomy

MAX_CATEGORIES = 4
TREND_WEEKS = 26
# Without a transaction id, a customer's lines on one day form a basket.
BASKET_TIME_UNIT = "D"


class NoBasketsError(ValueError):
    """The shop's data cannot form baskets (no transaction id and no customer id)."""


def sensitivity(max_categories: int = MAX_CATEGORIES) -> float:
    """L2 norm of one basket's largest possible contribution (see the module docstring)."""
    m = max_categories
    return math.sqrt(2 * m + m * (m - 1) // 2 + 1)


def pair_index(n: int) -> np.ndarray:
    """(n, n) table of each unordered pair's position in the flat ``pairs`` vector; -1 on the
    diagonal. Pairs are ordered (0,1), (0,2), ..., (1,2), ... as np.triu_indices(n, 1)."""
    table = np.full((n, n), -1, dtype=np.int64)
    first, second = np.triu_indices(n, 1)
    table[first, second] = np.arange(len(first))
    table[second, first] = np.arange(len(first))
    return table


def week_window(end: date, weeks: int = TREND_WEEKS) -> tuple[date, ...]:
    """Monday of each of the ``weeks`` weeks ending with the week holding ``end``."""
    last_monday = end - timedelta(days=end.weekday())
    return tuple(last_monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks))


@dataclass(frozen=True)
class BasketStats:
    """Counts over the taxonomy in ``categories`` order; weekly cells start at ``weeks[0]``."""

    categories: tuple[str, ...]
    weeks: tuple[date, ...]
    singles: np.ndarray  # (C,)
    pairs: np.ndarray  # (C*(C-1)/2,)
    weekly: np.ndarray  # (C, W)
    baskets: float
    contributes: np.ndarray  # (C,) 0/1

    def vector(self) -> np.ndarray:
        """Flat float64 vector in the order SecAgg+ sums it: singles, pairs, weekly, baskets,
        contributes."""
        return np.concatenate(
            [
                self.singles.astype(np.float64),
                self.pairs.astype(np.float64),
                self.weekly.astype(np.float64).ravel(),
                np.array([self.baskets], dtype=np.float64),
                self.contributes.astype(np.float64),
            ]
        )

    @classmethod
    def from_vector(
        cls, vector: np.ndarray, categories: tuple[str, ...], weeks: tuple[date, ...]
    ) -> BasketStats:
        c, w = len(categories), len(weeks)
        sizes = [c, c * (c - 1) // 2, c * w, 1, c]
        if len(vector) != sum(sizes):
            raise ValueError(f"expected {sum(sizes)} values, got {len(vector)}")
        parts = np.split(np.asarray(vector, dtype=np.float64), np.cumsum(sizes)[:-1])
        return cls(
            categories=categories,
            weeks=weeks,
            singles=parts[0],
            pairs=parts[1],
            weekly=parts[2].reshape(c, w),
            baskets=float(parts[3][0]),
            contributes=parts[4],
        )


def basket_keys(frame: pd.DataFrame) -> pd.Series:
    """Basket of each line: its transaction id, else its customer and day."""
    if "transaction_id" in frame.columns and frame["transaction_id"].notna().any():
        keys = frame["transaction_id"].astype("string")
        if keys.notna().all():
            return keys
        fallback = _customer_day(frame)
        if fallback is not None:
            return keys.fillna(fallback)
        return keys
    fallback = _customer_day(frame)
    if fallback is None:
        raise NoBasketsError(
            "baskets need a transaction id or a customer id column; map one to compute bundles"
        )
    return fallback


def _customer_day(frame: pd.DataFrame) -> pd.Series | None:
    if "customer_id" not in frame.columns or frame["customer_id"].isna().all():
        return None
    day = frame["timestamp"].dt.floor(BASKET_TIME_UNIT).dt.strftime("%Y-%m-%d")
    return ("c:" + frame["customer_id"].astype("string") + "@" + day).astype("string")


def count_baskets(
    frame: pd.DataFrame,
    *,
    end: date | None = None,
    weeks: int = TREND_WEEKS,
    max_categories: int = MAX_CATEGORIES,
    seed: int = 0,
) -> BasketStats:
    """Exact, contribution-bounded counts from one canonical frame (nothing noised yet).

    A release must pass ``end`` fixed independently of the data; without it the window ends at
    the shop's own last day, which is only for local views (the shop's own trend index).
    """
    taxonomy = load_taxonomy()
    codes = taxonomy.codes
    code_index = {code: i for i, code in enumerate(codes)}
    fallback = code_index[taxonomy.fallback]
    sold = frame.loc[frame["quantity_sold"] > 0]
    keys = basket_keys(sold)
    category = (
        sold["category"].astype("string").map(code_index).fillna(fallback).astype(np.int64)
        if "category" in sold.columns
        else pd.Series(fallback, index=sold.index)
    )
    lines = pd.DataFrame(
        {"basket": keys.to_numpy(), "category": category.to_numpy(), "day": sold["timestamp"]}
    ).dropna(subset=["basket"])
    lines = lines.drop_duplicates(["basket", "category"])
    basket_codes, basket_of_line = np.unique(lines["basket"].to_numpy(), return_inverse=True)
    n_baskets = len(basket_codes)
    # Bound each basket to max_categories categories: rank by a per-(basket, category) hash.
    salt = hashlib.sha256(f"basket-bound:{seed}".encode()).digest()[:8]
    rank_key = pd.util.hash_array(
        (lines["basket"].astype(str) + "|" + lines["category"].astype(str)).to_numpy(),
        hash_key=salt.hex()[:16],
    )
    lines = lines.assign(b=basket_of_line, r=rank_key).sort_values(["b", "r"])
    lines = lines.loc[lines.groupby("b").cumcount() < max_categories]

    c = len(codes)
    singles = np.bincount(lines["category"].to_numpy(), minlength=c).astype(np.float64)
    pairs = np.zeros(c * (c - 1) // 2, dtype=np.float64)
    table = pair_index(c)
    members = lines[["b", "category"]].merge(lines[["b", "category"]], on="b")
    members = members.loc[members["category_x"] < members["category_y"]]
    np.add.at(pairs, table[members["category_x"].to_numpy(), members["category_y"].to_numpy()], 1)

    last_day = pd.Timestamp(lines["day"].max()).date() if len(lines) else date.today()
    window = week_window(end or last_day, weeks)
    weekly = np.zeros((c, weeks), dtype=np.float64)
    basket_day = lines.groupby("b")["day"].min()
    monday = (
        basket_day.dt.normalize() - pd.to_timedelta(basket_day.dt.day_of_week, unit="D")
    ).dt.date
    week_of = {week: i for i, week in enumerate(window)}
    week_index = lines["b"].map(monday).map(week_of)
    inside = week_index.notna().to_numpy()
    np.add.at(
        weekly,
        (lines["category"].to_numpy()[inside], week_index.to_numpy()[inside].astype(np.int64)),
        1,
    )
    return BasketStats(
        categories=codes,
        weeks=window,
        singles=singles,
        pairs=pairs,
        weekly=weekly,
        baskets=float(n_baskets),
        contributes=(singles > 0).astype(np.float64),
    )


def add_noise(
    stats: BasketStats,
    noise_multiplier: float,
    rng: np.random.Generator,
    max_categories: int = MAX_CATEGORIES,
) -> BasketStats:
    """The Gaussian mechanism on every count (not on ``contributes``, see module docstring)."""
    sigma = noise_multiplier * sensitivity(max_categories)
    return BasketStats(
        categories=stats.categories,
        weeks=stats.weeks,
        singles=stats.singles + rng.normal(0.0, sigma, stats.singles.shape),
        pairs=stats.pairs + rng.normal(0.0, sigma, stats.pairs.shape),
        weekly=stats.weekly + rng.normal(0.0, sigma, stats.weekly.shape),
        baskets=stats.baskets + float(rng.normal(0.0, sigma)),
        contributes=stats.contributes.copy(),
    )
