"""Real insight-engine output, recorded once, loaded into fresh insight stores by the tests.

Why a recording: computing insights needs a trained model and torch (tens of seconds), and the
Insights/Reports tests only read a store. The snapshot holds batches the real engines wrote for
one retailer of `retail-coordinator simulate` (the federated model, real market statistics),
plus an earlier pricing batch computed for the same shop with a local-only model (the history a
shop has from before it joined). Rebuild it after changing an engine's row shape:

    retail-node generate-demo /tmp/ins-data --retailers 5 --seed 7
    retail-coordinator simulate --partitions /tmp/ins-data --rounds 2 --epsilon 3 \
        --workdir /tmp/ins-fed
    python tests/desktop_client/insight_snapshot.py /tmp/ins-fed/nodes/<a small node dir>
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.insights.store import INSIGHTS_FILENAME, InsightStore, to_plain

SNAPSHOT = Path(__file__).with_name("data") / "insights_snapshot.json"


def load_batches() -> list[dict[str, Any]]:
    """The recorded batches, oldest first (``StoredBatch.to_json`` shape)."""
    data = json.loads(SNAPSHOT.read_text("utf-8"))
    return list(data["batches"])


def populate(node_dir: Path, kinds: set[str] | None = None) -> Path:
    """Write the recorded batches (of ``kinds``, default all) into a new store in ``node_dir``,
    with their recorded times; returns the store's path."""
    batches = [b for b in load_batches() if kinds is None or b["kind"] in kinds]
    times = iter([datetime.fromisoformat(b["created_at"]) for b in batches])
    path = Path(node_dir) / INSIGHTS_FILENAME
    with InsightStore(path, clock=lambda: next(times)) as store:
        for batch in batches:
            store.save(
                batch["kind"],
                batch["rows"],
                node=batch["node"],
                model_version=batch["model_version"],
                data_fingerprint=batch["data_fingerprint"],
                epsilon_spent=batch["epsilon_spent"],
                meta=batch["meta"],
            )
    return path


def record(node_dir: Path) -> None:  # pragma: no cover - run by hand, see the docstring
    """Record the real engines' output for ``node_dir``'s shop: a local-only pricing batch
    (its history from before joining), then every kind with the simulation's federated model.

    Market statistics are the sum of noised basket counts, published with the k >= 5 rule,
    exactly as a campaign's SecAgg+ round would produce them, over the simulated shops plus
    ten more generated ones (five demo shops rarely share a category five times, and the
    Insights page needs published trends as well as withheld ones to be tested).
    """
    import tempfile

    import numpy as np
    import pandas as pd

    from shared.ingest.pipeline import import_file
    from shared.insights.basket_stats import add_noise, count_baskets, sensitivity, week_window
    from shared.insights.context import CANONICAL_FILE, InsightContext
    from shared.insights.engine import MarketInput, compute_insights
    from shared.insights.market import publish
    from shared.insights.pricing import price_curve, recommend_prices
    from shared.synthetic import generate_demo
    from shared.taxonomy import load_taxonomy

    federated = InsightContext.from_node_dir(node_dir)
    local = InsightContext.from_frame(
        federated.frame, federated.node, data_fingerprint=federated.data_fingerprint
    )
    prices = recommend_prices(local)
    earlier = {
        "kind": "pricing",
        "node": local.node,
        "created_at": "2026-11-01T09:00:00+00:00",
        "model_version": local.model_version,
        "data_fingerprint": local.data_fingerprint,
        "epsilon_spent": 0.0,
        "rows": [p.to_row() for p in prices],
        "meta": {"curves": [price_curve(local, p.product_id).to_row() for p in prices[:5]]},
    }
    frames = [pd.read_parquet(d / CANONICAL_FILE) for d in sorted(node_dir.parent.iterdir())]
    with tempfile.TemporaryDirectory() as extra:
        manifest = generate_demo(Path(extra), retailers=10, seed=11, scale=0.3)
        frames += [f for e in manifest.retailers if (f := import_file(e.path).frame) is not None]
    end = max(f["timestamp"].max() for f in frames).date()
    noise = 1.0
    rng = np.random.default_rng(7)
    total = sum(add_noise(count_baskets(f, end=end), noise, rng).vector() for f in frames)
    market = publish(np.asarray(total), len(frames), load_taxonomy().codes, week_window(end))
    noise_sd = noise * sensitivity() * len(frames) ** 0.5
    computed = compute_insights(federated, MarketInput(market, noise_sd))
    batches = [earlier]
    for kind, (rows, meta) in computed.items():
        batches.append(
            {
                "kind": kind,
                "node": federated.node,
                "created_at": "2026-11-29T18:30:00+00:00",
                "model_version": federated.model_version,
                "data_fingerprint": federated.data_fingerprint,
                "epsilon_spent": federated.epsilon_spent,
                "rows": to_plain(rows),
                "meta": to_plain(meta),
            }
        )
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(
        json.dumps({"source": str(node_dir), "batches": to_plain(batches)}, indent=1) + "\n"
    )


if __name__ == "__main__":  # pragma: no cover
    record(Path(sys.argv[1]))
