"""The server strategy: FedAvg over node updates, sampling only nodes that agreed to join.

SecAgg+ hands ``aggregate_fit`` the example-weighted mean of the updates (never one node's);
the mean is a change to the global model, so the next model is the current one plus that mean.
FedProx differs only on the node (a proximal term in local training), so it shares this code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from shared.federation.codec import apply_update, decode_statistics_sum
from shared.federation.settings import RunSettings
from shared.insights.basket_stats import TREND_WEEKS, week_window
from shared.insights.market import MarketStatistics, publish
from shared.taxonomy import load_taxonomy

TRAIN_STAGE = "train"
STATISTICS_STAGE = "statistics"


@dataclass
class RoundRecord:
    """What happened in one attempt at one round, for the run report and the coordinator."""

    round: int
    attempt: int
    stage: str = TRAIN_STAGE
    queried: int = 0
    accepted: list[str] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # aggregated | failed | skipped
    participants: int = 0
    failures: int = 0
    loss: float | None = None
    wape: float | None = None
    # Holdout WAPE per retailer-size third (by holdout examples), so a model card shows whether
    # small shops are served worse; None where fewer than 2 shops fall in the group.
    wape_by_size: dict[str, float | None] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)


class GatedFedAvg(FedAvg):
    """FedAvg whose fit and evaluate go only to the nodes that accepted this round."""

    def __init__(self, settings: RunSettings, campaign: str, initial: list[np.ndarray]) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=settings.min_participants,
            min_evaluate_clients=1,
            min_available_clients=settings.min_participants,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        self.settings = settings
        self.campaign = campaign
        self.allowed: set[int] = set()
        self.current: list[np.ndarray] = [a.copy() for a in initial]
        self.last_aggregated_round = -1  # rounds count from 0 (statistics) and 1 (training)
        self.stage = TRAIN_STAGE
        self.market: MarketStatistics | None = None
        self.wape_by_size: dict[str, float | None] = {}
        # Every node counts the same weeks, fixed before any data is seen (a window that ended
        # at each shop's own last sale would move with one basket: not differentially private).
        self.trend_end = settings.trend_end or (date.today() - timedelta(days=1)).isoformat()

    def round_config(self, server_round: int) -> dict[str, Scalar]:
        config: dict[str, Scalar] = dict(self.settings.to_run_config())
        config["campaign"] = self.campaign
        config["server-round"] = server_round
        config["stage"] = self.stage
        config["trend-end"] = self.trend_end
        return config

    def allowed_clients(self, client_manager: ClientManager) -> list[ClientProxy]:
        everyone = client_manager.all()
        return [everyone[str(nid)] for nid in sorted(self.allowed) if str(nid) in everyone]

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if self.stage == STATISTICS_STAGE:  # nodes send counts; the model is not needed
            parameters = ndarrays_to_parameters([])
        ins = FitIns(parameters, self.round_config(server_round))
        return [(client, ins) for client in self.allowed_clients(client_manager)]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        config = self.round_config(server_round)
        if self.market is not None:  # published statistics ride along to every node
            config["market-statistics"] = self.market.to_json()
        ins = EvaluateIns(parameters, config)
        return [(client, ins) for client in self.allowed_clients(client_manager)]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        if self.stage == STATISTICS_STAGE:
            return self._aggregate_statistics(server_round, results, failures)
        mean_delta = parameters_to_ndarrays(results[0][1].parameters)  # SecAgg+'s weighted mean
        self.current = apply_update(self.current, mean_delta)
        self.last_aggregated_round = server_round
        metrics: dict[str, Scalar] = {"participants": len(results), "failures": len(failures)}
        return ndarrays_to_parameters(self.current), metrics

    def _aggregate_statistics(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Sum of the nodes' noised counts (SecAgg+ gives the equal-weight mean), then the
        k >= 5 publication rule. The model is left as it is."""
        mean = parameters_to_ndarrays(results[0][1].parameters)
        total = decode_statistics_sum(mean, len(results))
        self.market = publish(
            total,
            len(results),
            load_taxonomy().codes,
            week_window(date.fromisoformat(self.trend_end), TREND_WEEKS),
            campaign=self.campaign,
        )
        self.last_aggregated_round = server_round
        return None, {"participants": len(results), "failures": len(failures)}

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        examples = sum(res.num_examples for _, res in results)
        loss = sum(res.loss * res.num_examples for _, res in results) / max(examples, 1)
        wape = sum(float(res.metrics.get("wape", 0.0)) * res.num_examples for _, res in results)
        self.wape_by_size = wape_by_size_group([res for _, res in results])
        return float(loss), {"wape": wape / max(examples, 1), "nodes": len(results)}


SIZE_GROUPS = ("small", "medium", "large")


def wape_by_size_group(results: list[EvaluateRes]) -> dict[str, float | None]:
    """Example-weighted WAPE of the smallest, middle and largest third of the evaluating shops
    (by holdout size); a group of fewer than two shops is not reported."""
    ordered = sorted(results, key=lambda res: res.num_examples)
    n = len(ordered)
    bounds = [0, n // 3, n - n // 3, n]
    out: dict[str, float | None] = {}
    for group, start, end in zip(SIZE_GROUPS, bounds[:-1], bounds[1:], strict=True):
        members = ordered[start:end]
        weight = sum(res.num_examples for res in members)
        if len(members) < 2 or weight == 0:
            out[group] = None
            continue
        total = sum(float(res.metrics.get("wape", 0.0)) * res.num_examples for res in members)
        out[group] = total / weight
    return out
