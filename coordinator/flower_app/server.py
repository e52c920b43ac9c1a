"""The campaign's ServerApp as the coordinator runs it: ``shared.federation.server_app`` plus a
progress sink that tells the coordinator's database what happened.

This module runs inside the ``flwr-serverapp`` process the SuperLink starts for each run, not in
the coordinator daemon, so the only thing it gets from the daemon is its environment: the
supervised SuperLink passes ``RETAIL_COORDINATOR_DATABASE_URL`` down to it.

The seam for the database is :func:`sink_from_env`: it returns a :class:`ProgressSink`, the
database sink of ``coordinator.progress`` when the daemon started the run (its data directory is
in the environment), else :class:`LoggingSink` (the run's log only).
Sink errors are logged and swallowed: bookkeeping must never abort a round that retailers have
already paid privacy budget for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from logging import ERROR, INFO
from typing import Protocol

import numpy as np
from flwr.common import Context, log
from flwr.server import Grid, ServerApp

from shared.federation.server_app import make_server_app
from shared.federation.strategy import RoundRecord

DATABASE_URL_ENV = "RETAIL_COORDINATOR_DATABASE_URL"  # same name as coordinator.config's
CAMPAIGN_ID_KEY = "campaign-id"


class ProgressSink(Protocol):
    """Where a run reports progress; ``campaign_id`` is the coordinator's campaign row id (the
    run config's ``campaign-id``), not Flower's run id."""

    def record_round(self, campaign_id: int, record: RoundRecord) -> None: ...

    def publish_model(self, campaign_id: int, arrays: list[np.ndarray]) -> None: ...

    def publish_market(self, campaign_id: int, market_json: str) -> None: ...


class LoggingSink:
    """The placeholder sink: progress goes to the ServerApp's log only."""

    def record_round(self, campaign_id: int, record: RoundRecord) -> None:
        log(
            INFO,
            "campaign %s round %s attempt %s (%s): %s, %s participants, %s declined, loss %s",
            campaign_id,
            record.round,
            record.attempt,
            record.stage,
            record.status,
            record.participants,
            len(record.declined),
            record.loss,
        )

    def publish_model(self, campaign_id: int, arrays: list[np.ndarray]) -> None:
        size = sum(int(a.size) for a in arrays)
        log(INFO, "campaign %s model: %s arrays, %s parameters", campaign_id, len(arrays), size)

    def publish_market(self, campaign_id: int, market_json: str) -> None:
        log(INFO, "campaign %s market statistics: %s bytes", campaign_id, len(market_json))


def sink_from_env(environ: Mapping[str, str] | None = None) -> ProgressSink:
    """The sink for this process. Replace the body's return value to plug in the database:
    e.g. ``if url: return DatabaseProgressSink(url)``, keeping LoggingSink when no URL is set
    (a run started outside the coordinator)."""
    from coordinator.progress import DATA_DIR_ENV, sink_for_environment

    env = os.environ if environ is None else environ
    sink = sink_for_environment(env)
    if sink is not None:
        return sink
    log(INFO, "%s not set: campaign progress is only logged", DATA_DIR_ENV)
    return LoggingSink()


def campaign_id_from(run_config: Mapping[str, object]) -> int:
    value = run_config.get(CAMPAIGN_ID_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{CAMPAIGN_ID_KEY} must be an integer, got {value!r}")
    return int(value)


def _guarded(what: str, call: Callable[[], None]) -> None:
    try:
        call()
    except Exception as exc:  # a sink failure must not abort the campaign (see module doc)
        log(ERROR, "progress sink failed to %s: %r", what, exc)


def make_campaign_app(sink_factory: Callable[[], ProgressSink] = sink_from_env) -> ServerApp:
    """A ServerApp that resolves the sink and the campaign id per run, then runs the shared
    campaign ServerApp with callbacks bound to them."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        campaign_id = campaign_id_from(context.run_config)
        sink = sink_factory()

        def on_record(record: RoundRecord) -> None:
            _guarded("record a round", lambda: sink.record_round(campaign_id, record))

        def on_finish(arrays: list[np.ndarray]) -> None:
            _guarded("publish the model", lambda: sink.publish_model(campaign_id, arrays))

        def on_market(market_json: str) -> None:
            _guarded(
                "publish market statistics", lambda: sink.publish_market(campaign_id, market_json)
            )

        over_budget = getattr(sink, "over_budget", None)  # only the database sink knows
        make_server_app(
            on_record=on_record, on_finish=on_finish, on_market=on_market, over_budget=over_budget
        )(grid, context)

    return app


app = make_campaign_app()
