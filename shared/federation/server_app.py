"""The ServerApp the coordinator submits: the gated SecAgg+ campaign over the demand model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.common import Context
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.client_manager import SimpleClientManager

from shared.federation.settings import RunSettings
from shared.federation.strategy import GatedFedAvg, RoundRecord
from shared.federation.workflow import PrivateRoundsWorkflow


def initial_parameters() -> list[np.ndarray]:
    """The untrained federated part of the demand model (product offsets are never federated)."""
    from shared.model import DemandModel

    return DemandModel((), node="coordinator").federated_parameters()


def make_server_app(
    settings: RunSettings | None = None,
    on_record: Callable[[RoundRecord], None] | None = None,
    on_finish: Callable[[list[np.ndarray]], None] | None = None,
    on_market: Callable[[str], None] | None = None,
    over_budget: Callable[[float], set[int]] | None = None,
) -> ServerApp:
    """A ServerApp; without ``settings`` they come from the run config (deployment).

    ``on_market`` receives the published market statistics (JSON) when the campaign had a
    statistics round that at least five nodes joined."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_settings = settings or RunSettings.from_run_config(context.run_config)
        strategy = GatedFedAvg(run_settings, str(context.run_id), initial_parameters())
        legacy = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=run_settings.rounds),
            strategy=strategy,
            client_manager=SimpleClientManager(),
        )
        PrivateRoundsWorkflow(run_settings, on_record, over_budget)(grid, legacy)
        if on_finish is not None:
            on_finish(strategy.current)
        if on_market is not None and strategy.market is not None:
            on_market(strategy.market.to_json())

    return app


app = make_server_app()
