"""Run the real ServerApp and ClientApp in Flower's Simulation Engine over prepared node dirs.

Each virtual SuperNode is one retailer (its ``partition-id`` picks its directory), with its own
ledger, so what a simulation charges and declines is what a deployment would.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from flwr.clientapp import ClientApp

from shared.federation.settings import RunSettings
from shared.federation.strategy import RoundRecord

log = logging.getLogger(__name__)


def run_federation(
    node_dirs: Sequence[Path],
    settings: RunSettings,
    *,
    cpus_per_client: float = 1.0,
    client_app: ClientApp | None = None,
    verbose: bool = False,
) -> tuple[list[RoundRecord], list[np.ndarray]]:
    """Run a whole campaign; returns the per-round records and the final global arrays.

    ``client_app`` replaces the node's app (tests wrap it with mods that inject failures).
    Flower's and ray's own progress logs are shown only when ``verbose``.
    """
    from flwr.simulation import run_simulation

    from shared.federation.client_app import SIMULATION_NODES_ENV
    from shared.federation.client_app import app as node_app
    from shared.federation.server_app import make_server_app

    records: list[RoundRecord] = []
    final: list[list[np.ndarray]] = []
    server_app = make_server_app(settings, on_record=records.append, on_finish=final.append)
    flower_log = logging.getLogger("flwr")
    flower_level = flower_log.level
    if not verbose:
        flower_log.setLevel(logging.ERROR)
    previous = os.environ.get(SIMULATION_NODES_ENV)
    os.environ[SIMULATION_NODES_ENV] = json.dumps([str(p.resolve()) for p in node_dirs])
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray starts its workers at nice 15; beside other busy processes (a second test worker,
    # a shop's own software) the nodes then got almost no CPU and missed every deadline.
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app or node_app,
            num_supernodes=len(node_dirs),
            backend_config={
                "client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0},
                "init_args": {"include_dashboard": False, "log_to_driver": verbose},
            },
        )
    finally:
        flower_log.setLevel(flower_level)
        if previous is None:
            os.environ.pop(SIMULATION_NODES_ENV, None)
        else:
            os.environ[SIMULATION_NODES_ENV] = previous
    if not final:
        raise RuntimeError("the simulated campaign ended without a final model")
    return records, final[0]
