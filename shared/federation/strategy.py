"""The server strategy: FedAvg over node updates, sampling only nodes that agreed to join.

SecAgg+ hands ``aggregate_fit`` the example-weighted mean of the updates (never one node's);
the mean is a change to the global model, so the next model is the current one plus that mean.
FedProx differs only on the node (a proximal term in local training), so it shares this code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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

from shared.federation.codec import apply_update
from shared.federation.settings import RunSettings


@dataclass
class RoundRecord:
    """What happened in one attempt at one round, for the run report and the coordinator."""

    round: int
    attempt: int
    queried: int = 0
    accepted: list[str] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # aggregated | failed | skipped
    participants: int = 0
    failures: int = 0
    loss: float | None = None
    wape: float | None = None
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
        self.last_aggregated_round = 0

    def round_config(self, server_round: int) -> dict[str, Scalar]:
        config: dict[str, Scalar] = dict(self.settings.to_run_config())
        config["campaign"] = self.campaign
        config["server-round"] = server_round
        return config

    def allowed_clients(self, client_manager: ClientManager) -> list[ClientProxy]:
        everyone = client_manager.all()
        return [everyone[str(nid)] for nid in sorted(self.allowed) if str(nid) in everyone]

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        ins = FitIns(parameters, self.round_config(server_round))
        return [(client, ins) for client in self.allowed_clients(client_manager)]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        ins = EvaluateIns(parameters, self.round_config(server_round))
        return [(client, ins) for client in self.allowed_clients(client_manager)]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not results:
            return None, {}
        mean_delta = parameters_to_ndarrays(results[0][1].parameters)  # SecAgg+'s weighted mean
        self.current = apply_update(self.current, mean_delta)
        self.last_aggregated_round = server_round
        metrics: dict[str, Scalar] = {"participants": len(results), "failures": len(failures)}
        return ndarrays_to_parameters(self.current), metrics

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
        return float(loss), {"wape": wape / max(examples, 1), "nodes": len(results)}
