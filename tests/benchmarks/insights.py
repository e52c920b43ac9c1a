"""Insight-quality benchmark: forecast coverage, pricing revenue and bundle recovery vs truth.

Data: the default synthetic federation (``generate_demo``, 8 retailers, seed 7, scale 1). The
last ``--hide-days`` (default 91) of every retailer are hidden; a real federated campaign (the
ServerApp and ClientApp in Flower's simulation engine: the basket statistics round and DP-SGD
rounds, all through SecAgg+) runs on what is left, then every node computes its insights exactly
as ``retail-node insights refresh`` does, and they are scored against the hidden days and the
planted truth. Reported (JSON on stdout; nothing asserted):

* forecast: empirical coverage of the 80% intervals on the hidden days, per horizon (daily 14
  days, weekly 8 weeks, monthly 3 months), pooled over retailers, per product and per category.
  Target: 75-85% at each horizon.
* pricing: for each product, revenue under the TRUE planted elasticity at the price the engine
  recommends when maximising revenue (within +/-20%), divided by the true optimum in the same
  bounds. Target: the median product within 5% (ratio >= 0.95).
* bundles: planted complementary category pairs among the market's top-ranked associations from
  the basket statistics at ε = 1: precision at 10 and precision at k = number of planted pairs.
  Target: top-10 precision >= 0.8 (see ``note`` in the output).

    python tests/benchmarks/insights.py [--retailers 8] [--rounds 3] [--hide-days 91] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 7
STATISTICS_EPSILON = 1.0
TRAINING_EPSILON = 3.0


def _hide_future(frame: Any, days: int) -> tuple[Any, Any]:
    cutoff = frame["timestamp"].max().normalize() - timedelta(days=days - 1)
    return frame.loc[frame["timestamp"] < cutoff].copy(), frame.loc[frame["timestamp"] >= cutoff]


def _pricing_ratios(ctx: Any, truth: dict[str, Any]) -> list[float]:
    from shared.insights.pricing import PricingSettings, optimal_price, recommend_prices

    ratios = []
    for rec in recommend_prices(ctx, PricingSettings()):
        true_e = truth["categories"].get(rec.category, {}).get("elasticity")
        if true_e is None:
            continue
        chosen = optimal_price(
            rec.current_price, rec.elasticity, None, rec.price_min, rec.price_max
        )
        best = optimal_price(rec.current_price, true_e, None, rec.price_min, rec.price_max)

        def revenue(price: float, e: float = true_e) -> float:
            return price ** (1.0 + e)

        ratios.append(revenue(chosen) / revenue(best))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retailers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hide-days", type=int, default=91)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import warnings

    warnings.filterwarnings("ignore")

    from shared.federation.node import MARKET_FILE, prepare_node
    from shared.federation.settings import RunSettings
    from shared.federation.simulation import run_federation
    from shared.ingest import import_file
    from shared.insights.context import InsightContext
    from shared.insights.forecast import forecast_demand, interval_coverage
    from shared.insights.market import MarketStatistics, associations
    from shared.schema import Task
    from shared.synthetic import generate_demo

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="insights-bench-"))
    manifest = generate_demo(work / "data", args.retailers, SEED, scale=args.scale)
    truth = json.loads(Path(manifest.ground_truth_path).read_text("utf-8"))
    node_dirs, hidden = [], []
    last_visible = None
    for entry in manifest.retailers:
        frame = import_file(entry.path).frame
        visible, future = _hide_future(frame, args.hide_days)
        last = visible["timestamp"].max().date()
        last_visible = max(last_visible or last, last)
        node_dirs.append(
            prepare_node(
                work / "nodes" / entry.retailer_id,
                visible,
                entry.retailer_id,
                (Task.DEMAND_PRICING, Task.BUNDLES),
            )
        )
        hidden.append(future)
    settings = RunSettings(
        rounds=args.rounds,
        epsilon_per_round=TRAINING_EPSILON / args.rounds,
        statistics_epsilon=STATISTICS_EPSILON,
        trend_end=str(last_visible),
    )
    federation_started = time.monotonic()
    records, _ = run_federation(node_dirs, settings)
    federation_seconds = time.monotonic() - federation_started

    coverage: dict[str, dict[str, list[float]]] = {"product": {}, "category": {}}
    cells: dict[str, dict[str, int]] = {"product": {}, "category": {}}
    ratios: list[float] = []
    insight_seconds = 0.0
    for node_dir, future in zip(node_dirs, hidden, strict=True):
        begin = time.monotonic()
        ctx = InsightContext.from_node_dir(node_dir)
        forecasts = forecast_demand(ctx)
        insight_seconds += time.monotonic() - begin
        for scope in ("product", "category"):
            for horizon, result in interval_coverage(forecasts, future, scope=scope).items():
                n = int(result["cells"])
                coverage[scope].setdefault(horizon, []).append(result["coverage"] * n)
                cells[scope][horizon] = cells[scope].get(horizon, 0) + n
        ratios += _pricing_ratios(ctx, truth["world"])

    market = MarketStatistics.from_json((node_dirs[0] / MARKET_FILE).read_text("utf-8"))
    planted = {frozenset(p["categories"]) for p in truth["world"]["planted_pairs"]}
    ranked = [frozenset((a.first, a.second)) for a in associations(market)]
    k = len(planted)
    result = {
        "benchmark": "insights",
        "retailers": args.retailers,
        "scale": args.scale,
        "rounds": args.rounds,
        "hidden_days": args.hide_days,
        "epsilon": {"training": TRAINING_EPSILON, "basket_statistics": STATISTICS_EPSILON},
        "forecast_coverage_80": {
            scope: {
                horizon: {
                    "coverage": round(sum(v) / max(cells[scope][horizon], 1), 4),
                    "cells": cells[scope][horizon],
                }
                for horizon, v in by_horizon.items()
            }
            for scope, by_horizon in coverage.items()
        },
        "forecast_target": [0.75, 0.85],
        "pricing": {
            "products": len(ratios),
            "median_revenue_ratio": round(statistics.median(ratios), 4) if ratios else None,
            "share_within_5pct": round(sum(r >= 0.95 for r in ratios) / len(ratios), 4)
            if ratios
            else None,
            "target_median_ratio": 0.95,
        },
        "bundles": {
            "planted_pairs": sorted(sorted(p) for p in planted),
            "top_10": [sorted(p) for p in ranked[:10]],
            "precision_at_10": round(sum(p in planted for p in ranked[:10]) / 10, 3),
            f"precision_at_{k}": round(sum(p in planted for p in ranked[:k]) / k, 3),
            "pairs_published": len(market.pairs),
            "note": (
                f"the generator plants {k} pairs (3-5 by design), so precision at 10 cannot "
                f"exceed {k / 10:.1f}; precision at k = {k} is the comparable figure"
            ),
        },
        "rounds_run": [
            {"round": r.round, "stage": r.stage, "status": r.status, "seconds": round(r.seconds, 1)}
            for r in records
        ],
        "seconds": {
            "federation": round(federation_seconds, 1),
            "forecast_and_context": round(insight_seconds, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "load_average": os.getloadavg(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", "utf-8")


if __name__ == "__main__":
    main()
