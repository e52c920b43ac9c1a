"""Compute every insight for one node and keep it in the node's insight store.

Runs entirely on the retailer's machine: the node's canonical data, the last global model it
received and the published market statistics it was sent; nothing is sent anywhere. Each kind
of insight is stored as one batch with the model version, data fingerprint and ε spent, so the
app and store managers can read it later with no network, and compare it with earlier batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from shared.insights.basket_stats import sensitivity
from shared.insights.context import InsightContext
from shared.insights.market import MarketStatistics
from shared.insights.store import InsightStore, StoredBatch

log = logging.getLogger(__name__)

MARKET_FILE = Path("market") / "statistics.json"
CURVES_IN_REPORT = 5


@dataclass(frozen=True)
class MarketInput:
    statistics: MarketStatistics | None
    noise_sd: float  # of one summed cell, estimated from this node's own release


def load_market(node_dir: Path) -> MarketInput:
    """The published statistics this node received, if any, and the noise they carry."""
    from shared.privacy import PrivacyLedger, ReleaseKind

    path = node_dir / MARKET_FILE
    if not path.exists():
        return MarketInput(None, 0.0)
    market = MarketStatistics.from_json(path.read_text("utf-8"))
    with PrivacyLedger.in_data_dir(node_dir) as ledger:
        counts = [r for r in ledger.status().releases if r.kind is ReleaseKind.COUNT]
    own = counts[-1].noise_multiplier * sensitivity() if counts else 0.0
    return MarketInput(market, own * math.sqrt(max(market.contributors, 1)))


def compute_insights(
    ctx: InsightContext, market: MarketInput
) -> dict[str, tuple[list[dict[str, object]], dict[str, object]]]:
    """Every kind's rows and metadata; a kind that cannot be computed says why in its meta."""
    from shared.insights.bundles import recommend_bundles
    from shared.insights.forecast import forecast_demand
    from shared.insights.pricing import price_curve, recommend_prices
    from shared.insights.trends import market_trends
    from shared.insights.value import collaboration_value

    out: dict[str, tuple[list[dict[str, object]], dict[str, object]]] = {}
    prices = recommend_prices(ctx)
    curves = [price_curve(ctx, p.product_id).to_row() for p in prices[:CURVES_IN_REPORT]]
    out["pricing"] = ([p.to_row() for p in prices], {"curves": curves})
    out["forecast"] = ([f.to_row() for f in forecast_demand(ctx)], {})
    if market.statistics is None:
        out["bundles"] = ([], {"reason": "no market statistics yet: join a campaign first"})
    else:
        bundles = recommend_bundles(ctx, market.statistics, noise_sd=market.noise_sd)
        out["bundles"] = (
            [b.to_row() for b in bundles],
            {
                "contributors": market.statistics.contributors,
                "campaign": market.statistics.campaign,
            },
        )
    out["trends"] = ([t.to_row() for t in market_trends(ctx, market.statistics)], {})
    out["value"] = ([collaboration_value(ctx).to_row()], {})
    return out


def refresh_insights(node_dir: Path) -> list[StoredBatch]:
    """Recompute every insight from the node's data and last global model; store and return."""
    ctx = InsightContext.from_node_dir(node_dir)
    computed = compute_insights(ctx, load_market(node_dir))
    with InsightStore.in_data_dir(node_dir) as store:
        return [
            store.save(
                kind,
                rows,
                node=ctx.node,
                model_version=ctx.model_version,
                data_fingerprint=ctx.data_fingerprint,
                epsilon_spent=ctx.epsilon_spent,
                meta=meta,
            )
            for kind, (rows, meta) in computed.items()
        ]
