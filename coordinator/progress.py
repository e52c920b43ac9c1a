"""The database side of a campaign run: round progress, the final model and its card, and the
published market statistics, written by the ServerApp process the SuperLink starts.

That process inherits the daemon's environment (``RETAIL_COORDINATOR_DATA_DIR`` and the database
URL) and opens the same database through the same services, so a round is recorded (and
audited) the moment the ServerApp knows its outcome.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.config import CoordinatorConfig, load
from coordinator.runtime import Coordinator
from shared.federation.strategy import RoundRecord

log = logging.getLogger(__name__)

DATA_DIR_ENV = "RETAIL_COORDINATOR_DATA_DIR"
MARKET_KIND = "market"

INTENDED_USE = (
    "Demand, price-elasticity and seasonality model for small retailers' own insights "
    "(pricing, forecasts, bundles), computed on each retailer's machine with its own offsets."
)
LIMITATIONS = [
    "Trained with DP-SGD: noise lowers accuracy for categories few retailers sell.",
    "Elasticities are per taxonomy category, not per product; local offsets personalise levels.",
    "Evaluated on each retailer's most recent 20% of history; a new season may behave otherwise.",
]


class DatabaseProgressSink:
    """A ``coordinator.flower_app.server.ProgressSink`` over the coordinator's services."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self._coord = Coordinator.open(config)
        self._records: dict[int, list[RoundRecord]] = {}

    def record_round(self, campaign_id: int, record: RoundRecord) -> None:
        self._records.setdefault(campaign_id, []).append(record)
        metrics: dict[str, Any] = {
            "loss": record.loss,
            "wape": record.wape,
            "wape_by_size": record.wape_by_size,
            "seconds": round(record.seconds, 2),
            "declined": len(record.declined),
        }
        self._coord.campaigns.record_round(
            campaign_id,
            round=record.round,
            stage=record.stage,
            attempt=record.attempt,
            status=record.status,
            participants=record.participants,
            dropouts=max(len(record.accepted) - record.participants, 0),
            metrics={k: v for k, v in metrics.items() if v is not None},
        )

    def publish_model(self, campaign_id: int, arrays: list[np.ndarray]) -> None:
        records = [r for r in self._records.get(campaign_id, []) if r.stage == "train"]
        aggregated = [r for r in records if r.status == "aggregated"]
        if not aggregated:
            log.warning("campaign %s: no round was aggregated; no model is published", campaign_id)
            return
        self._coord.models.publish(campaign_id, arrays, self.card(campaign_id, aggregated))

    def card(self, campaign_id: int, aggregated: list[RoundRecord]) -> dict[str, Any]:
        campaign = self._coord.campaigns.get(campaign_id)
        last = aggregated[-1]
        groups = last.wape_by_size or {"small": None, "medium": None, "large": None}
        return {
            "data_summary": {
                "rounds_aggregated": len(aggregated),
                "participants_last_round": last.participants,
                "tasks": list(campaign.tasks) if campaign else [],
            },
            "metrics": {
                "overall": {"holdout_wape": last.wape, "holdout_loss": last.loss},
                "by_size_group": {
                    group: None if value is None else {"holdout_wape": value}
                    for group, value in groups.items()
                },
            },
            "epsilon_spent": float(campaign.epsilon) if campaign else 0.0,
            "intended_use": INTENDED_USE,
            "limitations": LIMITATIONS,
        }

    def over_budget(self, epsilon: float) -> set[int]:
        """Flower node ids of retailers whose mirrored ledger cannot afford ``epsilon`` more."""
        retailers = self._coord.ledger.over_budget(epsilon)
        out = set()
        for retailer_id in retailers:
            record = self._coord.enrollment.retailer(retailer_id)
            if record is not None and record.flower_node_id is not None:
                out.add(int(record.flower_node_id))
        return out

    def publish_market(self, campaign_id: int, market_json: str) -> None:
        payload: Mapping[str, Any] = json.loads(market_json)
        contributors = int(payload["contributors"])
        self._coord.aggregates.publish(MARKET_KIND, campaign_id, contributors, payload)

    def close(self) -> None:
        self._coord.close()


def sink_for_environment(environ: Mapping[str, str] | None = None) -> DatabaseProgressSink | None:
    """The database sink when the daemon started this process, else None."""
    env = os.environ if environ is None else environ
    data_dir = env.get(DATA_DIR_ENV, "")
    if not data_dir:
        return None
    return DatabaseProgressSink(load(Path(data_dir)))
