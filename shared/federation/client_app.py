"""The ClientApp a retailer node runs: Flower's SecAgg+ mod around the node runtime.

Settings arrive inside each message (validated, never trusted) and the node's data directory
comes from the SuperNode's node config (``data-path``) or, in the simulation engine, from the
list of node directories the simulation prepared (``partition-id`` indexes it).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from flwr.client import Client, ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import Context

from shared import __version__
from shared.federation.node import NodeRuntime, RefusedRound
from shared.federation.settings import RunSettings, SettingsError
from shared.federation.strategy import STATISTICS_STAGE

SIMULATION_NODES_ENV = "RETAIL_SIMULATION_NODES"
_RUNTIMES: dict[Path, NodeRuntime] = {}
_RUNTIMES_LOCK = threading.Lock()


def node_dir_for(context: Context) -> Path:
    config = context.node_config
    if "data-path" in config:
        return Path(str(config["data-path"]))
    listing = os.environ.get(SIMULATION_NODES_ENV)
    if listing is not None and "partition-id" in config:
        return Path(json.loads(listing)[int(config["partition-id"])])
    raise SettingsError("this SuperNode has no data-path in its node config")


def runtime_for(node_dir: Path) -> NodeRuntime:
    """Loaded once per process: data preparation and model state survive between messages.

    Thread-safe: the long-lived runner warms it up on a thread while its first task may arrive.
    """
    with _RUNTIMES_LOCK:
        if node_dir not in _RUNTIMES:
            _RUNTIMES[node_dir] = NodeRuntime(node_dir)
        return _RUNTIMES[node_dir]


class RetailerClient(NumPyClient):
    def __init__(self, node_dir: Path) -> None:
        self.node_dir = node_dir

    @property
    def runtime(self) -> NodeRuntime:
        return runtime_for(self.node_dir)

    def get_properties(self, config: dict[str, Any]) -> dict[str, Any]:
        """The participation query: join or decline, with the reason, before SecAgg+ starts."""
        try:
            settings = RunSettings.from_run_config(config)
        except SettingsError as exc:
            return {"accept": False, "reason": f"refused run settings: {exc}"}
        if settings.app_version.split(".")[:2] != __version__.split(".")[:2]:
            return {
                "accept": False,
                "reason": f"app version {settings.app_version} is not this node's {__version__}",
            }
        campaign = str(config["campaign"]) if "campaign" in config else None
        if config.get("stage") == STATISTICS_STAGE:
            return self.runtime.statistics_participation(settings, campaign).to_properties()
        server_round = int(config["server-round"]) if "server-round" in config else None
        return self.runtime.participation(settings, campaign, server_round).to_properties()

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        settings = RunSettings.from_run_config(config)
        if config.get("stage") == STATISTICS_STAGE:
            released = self.runtime.release_statistics(settings, str(config["campaign"]))
            return released.arrays, released.weight, dict(released.metrics)
        released = self.runtime.train(
            settings, str(config["campaign"]), int(config["server-round"]), parameters
        )
        return released.arrays, released.weight, dict(released.metrics)

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        if "market-statistics" in config:
            self.runtime.receive_market(str(config["market-statistics"]))
        loss, examples, metrics = self.runtime.evaluate(parameters)
        return loss, examples, dict(metrics)


def client_fn(context: Context) -> Client:
    return RetailerClient(node_dir_for(context)).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])

__all__ = ["RefusedRound", "RetailerClient", "app", "client_fn"]
