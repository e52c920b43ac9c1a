"""Basket statistics, the k-rules of publication, bundles, trends and the value of collaboration."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ingest.pipeline import import_file
from shared.insights.basket_stats import (
    BasketStats,
    add_noise,
    count_baskets,
    pair_index,
    sensitivity,
    week_window,
)
from shared.insights.bundles import BundleSettings, choose_discount, recommend_bundles
from shared.insights.context import InsightContext
from shared.insights.market import (
    MIN_CONTRIBUTORS,
    MIN_SELLERS_FOR_ASSOCIATIONS,
    MarketStatistics,
    associations,
    publish,
)
from shared.insights.trends import demand_index, market_trends
from shared.insights.value import collaboration_value, explain
from shared.synthetic import generate_demo
from shared.taxonomy import load_taxonomy

CODES = load_taxonomy().codes
END = date(2026, 10, 31)


@st.composite
def basket_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Lines of 2..25 baskets over random categories and days (a basket may repeat categories)."""
    n = draw(st.integers(2, 25))
    rows = []
    for b in range(n):
        day = END - timedelta(days=draw(st.integers(0, 200)))
        for code in draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=9)):
            rows.append(
                {
                    "transaction_id": f"t{b}",
                    "category": code,
                    "timestamp": pd.Timestamp(day),
                    "quantity_sold": draw(st.integers(1, 3)),
                }
            )
    return pd.DataFrame(rows)


@settings(max_examples=150, deadline=None)
@given(basket_frames(), st.data())
def test_one_basket_moves_the_counts_by_at_most_the_sensitivity(
    frame: pd.DataFrame, data: st.DataObject
) -> None:
    """Feature: retail-intelligence-platform, Property 1: Privacy Preservation Across All
    Operations. Removing any one basket changes the released counts by at most the L2
    sensitivity the Gaussian noise is scaled to, however many categories the basket holds."""
    baskets = sorted(frame["transaction_id"].unique())
    gone = data.draw(st.sampled_from(baskets))
    full = count_baskets(frame, end=END)
    rest = count_baskets(frame.loc[frame["transaction_id"] != gone], end=END)
    fields = ("singles", "pairs", "weekly")
    diff = np.concatenate([np.ravel(getattr(full, f) - getattr(rest, f)) for f in fields])
    diff = np.append(diff, full.baskets - rest.baskets)
    assert full.baskets - rest.baskets == 1
    assert float(np.linalg.norm(diff)) <= sensitivity() + 1e-9
    assert full.singles.sum() <= 4 * full.baskets  # each basket counts at most 4 categories


@settings(max_examples=120, deadline=None)
@given(
    st.integers(1, 12),
    st.lists(st.integers(0, 12), min_size=len(CODES), max_size=len(CODES)),
    st.integers(0, 2**32 - 1),
)
def test_publication_withholds_what_too_few_retailers_sold(
    participants: int, sellers: list[int], seed: int
) -> None:
    """Feature: retail-intelligence-platform, Property 1: Privacy Preservation Across All
    Operations. Nothing is published from fewer than 5 participants; a trend only for categories
    at least 5 retailers sell, an association only for categories at least 2 sell."""
    rng = np.random.default_rng(seed)
    sellers = [min(s, participants) for s in sellers]
    weeks = week_window(END)
    c = len(CODES)
    summed = BasketStats(
        categories=CODES,
        weeks=weeks,
        singles=rng.uniform(0, 1000, c),
        pairs=rng.uniform(0, 100, c * (c - 1) // 2),
        weekly=rng.uniform(0, 50, (c, len(weeks))),
        baskets=5000.0,
        contributes=np.array(sellers, dtype=np.float64),
    )
    market = publish(summed.vector(), participants, CODES, weeks)
    again = MarketStatistics.from_json(market.to_json())
    for stats in (market, again):
        for code, count in zip(CODES, sellers, strict=True):
            enough = participants >= MIN_CONTRIBUTORS
            assert (code in stats.weekly) == (enough and count >= MIN_CONTRIBUTORS)
            assert (code in stats.withheld) == (code not in stats.weekly)
            assert (code in stats.singles) == (enough and count >= MIN_SELLERS_FOR_ASSOCIATIONS)
        for a, b in stats.pairs:
            assert a in stats.singles and b in stats.singles


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.5, 200.0), min_size=2, max_size=3),
    st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=3, max_size=3),
    st.floats(-4.0, -0.05),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_bundle_discount_weighs_revenue_against_customer_value(
    prices: list[float],
    cost_shares: list[float | None],
    elasticity: float,
    affinity: float,
    weight: float,
) -> None:
    """Feature: retail-intelligence-platform, Property 13: Multi-Objective Bundle Optimization.
    The chosen discount never sells below total cost, is the best score on the grid, and moves
    the right way: all weight on revenue with inelastic demand gives no discount, all weight on
    the customer gives the deepest discount that covers cost."""
    costs = [None if s is None else p * s for p, s in zip(prices, cost_shares, strict=False)]
    grid = BundleSettings(revenue_weight=weight)
    discount, score, _, _ = choose_discount(prices, costs, elasticity, affinity, grid)
    total = sum(prices)
    if all(c is not None for c in costs):
        assert total * (1 - discount) >= sum(c for c in costs if c is not None) - 1e-9
    for d in grid.discounts:
        single = BundleSettings(revenue_weight=weight, discounts=(d,))
        other = choose_discount(prices, costs, elasticity, affinity, single)
        if other[1] > -np.inf:
            assert other[1] <= score + 1e-9
    revenue_only = BundleSettings(revenue_weight=1.0)
    if elasticity > -1.0:
        assert choose_discount(prices, costs, elasticity, affinity, revenue_only)[0] == 0.0
    customer_only = BundleSettings(revenue_weight=0.0)
    if affinity > 0.01 and all(c is None for c in costs):
        assert choose_discount(prices, costs, elasticity, affinity, customer_only)[0] == max(
            grid.discounts
        )


def test_associations_rank_planted_pairs_first() -> None:
    """A planted excess of co-purchases ranks first; an independent pair has lift near 1."""
    c = len(CODES)
    table = pair_index(c)
    rng = np.random.default_rng(3)
    singles = rng.uniform(500, 1500, c)
    baskets = 10_000.0
    pairs = np.zeros(c * (c - 1) // 2)
    for a in range(c):
        for b in range(a + 1, c):
            pairs[table[a, b]] = singles[a] * singles[b] / baskets
    i, j = CODES.index("pet"), CODES.index("household")
    pairs[table[i, j]] *= 3.0
    stats = BasketStats(
        CODES, week_window(END), singles, pairs, np.zeros((c, 26)), baskets, np.full(c, 6.0)
    )
    ranked = associations(publish(stats.vector(), 6, CODES, week_window(END)), noise_sd=10.0)
    assert {ranked[0].first, ranked[0].second} == {"pet", "household"}
    assert ranked[0].lift == pytest.approx(3.0, rel=1e-6)
    assert abs(ranked[-1].lift - 1.0) < 1e-6


def test_demand_index_and_collaboration_message() -> None:
    index = demand_index(np.array([10.0, 20.0, 30.0, 0.0, -5.0]))  # mean of clipped: 12
    assert index.tolist() == pytest.approx([250 / 3, 500 / 3, 250.0, 0.0, 0.0])
    assert np.isnan(demand_index(np.zeros(3))).all()
    assert explain(23.4) == (
        "Forecasts are 23% closer with the federation than with your data alone"
    )
    assert "further off" in explain(-12.0)
    assert "about as close" in explain(0.4)


@pytest.fixture(scope="module")
def market_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[pd.DataFrame], dict]:
    out = tmp_path_factory.mktemp("market")
    manifest = generate_demo(out, retailers=6, seed=7, scale=0.3)
    frames = []
    for entry in manifest.retailers:
        frame = import_file(entry.path).frame
        assert frame is not None
        frames.append(frame)
    truth = json.loads(Path(manifest.ground_truth_path).read_text())
    return frames, truth


def _market(frames: list[pd.DataFrame], noise: float) -> MarketStatistics:
    rng = np.random.default_rng(11)
    total = sum(add_noise(count_baskets(f, end=END), noise, rng).vector() for f in frames)
    return publish(np.asarray(total), len(frames), CODES, week_window(END))


def test_bundles_come_from_planted_pairs_and_this_shops_products(
    market_world: tuple[list[pd.DataFrame], dict],
) -> None:
    """Feature: retail-intelligence-platform, Property 12: Collaborative Filtering for New
    Products, with Property 13. Bundles pair this shop's own products in the market's planted
    complementary categories; a product first sold last week is suggested through its category."""
    frames, truth = market_world
    planted = {frozenset(p["categories"]) for p in truth["world"]["planted_pairs"]}
    market = _market(frames, noise=4.0)
    top = [frozenset((a.first, a.second)) for a in associations(market, noise_sd=4.0 * 6)[:3]]
    assert sum(pair in planted for pair in top) >= 2

    frame = frames[-1]  # the largest retailer
    pair = next(iter(p for p in planted if p <= set(frame["category"].astype(str))))
    code = sorted(pair)[0]
    template = frame.loc[frame["category"].astype(str) == code].tail(8).copy()
    template["product_id"] = "NEW-1"
    template["timestamp"] = pd.Timestamp(END) - pd.Timedelta(days=3)
    template["transaction_id"] = [f"new-{i}" for i in range(len(template))]
    extended = pd.concat([frame, template], ignore_index=True)
    extended["product_id"] = extended["product_id"].astype(str)
    ctx = InsightContext.from_frame(extended, "largest")
    bundles = recommend_bundles(ctx, market, BundleSettings(max_bundles=10), noise_sd=24.0)
    assert bundles
    own = set(ctx.products.index)
    for bundle in bundles:
        assert set(bundle.products) <= own
        assert frozenset(bundle.categories) in {frozenset((a.first, a.second)) for a in
                                                 associations(market)}  # fmt: skip
        assert bundle.bundle_price <= sum(bundle.individual_prices) + 1e-9
        assert 0 <= bundle.discount_pct <= 20
    assert any(b.new_product and "NEW-1" in b.products for b in bundles)

    trends = {t.category: t for t in market_trends(ctx, market)}
    for trend in trends.values():
        if trend.status == "published":
            values = [v for v in trend.index if v is not None]
            assert np.mean(values) == pytest.approx(100.0, abs=0.01)  # rounded to 0.01
            assert trend.contributors >= MIN_CONTRIBUTORS
        else:
            assert trend.index == () and trend.reason
    assert any(t.status == "withheld" for t in trends.values())

    value = collaboration_value(ctx)  # a local-only "global" model: little to gain here
    assert np.isfinite(value.federated_wape) and np.isfinite(value.local_wape)
    assert value.message
