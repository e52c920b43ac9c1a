"""One federated campaign: per round a participation query, then SecAgg+ among those who joined.

A refusal inside SecAgg+ would halt the round for everyone, so declines (no consent, no budget,
wrong app version) happen first, in a plain query. SecAgg+ then runs only if at least
``min_participants`` accepted, with a reconstruction threshold that survives 30% dropping out.
A round SecAgg+ could not finish is retried with a fresh query (lost nodes do not answer it);
nodes re-send the update they already released for that round, so nobody is charged twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import flwr.compat.common.recorddict_compat as compat
from flwr.common import (
    Code,
    ConfigRecord,
    GetPropertiesIns,
    Message,
    MessageType,
    ndarrays_to_parameters,
)
from flwr.common.constant import MessageTypeLegacy
from flwr.server import Grid, LegacyContext
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

from shared.federation.codec import SECAGG_CLIPPING_RANGE
from shared.federation.node import STATISTICS_ROUND
from shared.federation.prompt_grid import PromptGrid
from shared.federation.settings import RunSettings
from shared.federation.strategy import STATISTICS_STAGE, TRAIN_STAGE, GatedFedAvg, RoundRecord

log = logging.getLogger(__name__)


class PrivateRoundsWorkflow:
    def __init__(
        self,
        settings: RunSettings,
        on_record: Callable[[RoundRecord], None] | None = None,
        over_budget: Callable[[float], set[int]] | None = None,
    ) -> None:
        """``over_budget(epsilon)`` names the nodes the coordinator's ledger mirror says cannot
        afford ``epsilon`` more; they are not asked (their own ledgers would decline anyway)."""
        self.settings = settings
        self.records: list[RoundRecord] = []
        self.on_record = on_record
        self.over_budget = over_budget

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        strategy = cast(GatedFedAvg, context.strategy)
        grid = grid if isinstance(grid, PromptGrid) else PromptGrid(grid)  # no 3 s reply waits
        thread, stop, registered = start_update_client_manager_thread(grid, context.client_manager)
        registered.wait()
        try:
            self._set_parameters(context, strategy)
            config = ConfigRecord()
            context.state.config_records[MAIN_CONFIGS_RECORD] = config
            if self.settings.statistics_epsilon > 0:
                self._statistics_round(grid, context, strategy, config)
            for server_round in range(1, self.settings.rounds + 1):
                config[Key.CURRENT_ROUND] = server_round
                record = self._fit_round(grid, context, strategy, server_round)
                if record.status == "aggregated":
                    self._set_parameters(context, strategy)
                    self._evaluate(grid, context, strategy, server_round, record)
                record.seconds = time.monotonic() - record.started
                self._publish(record)
        finally:
            stop.set()
            thread.join()

    # -- stages ----------------------------------------------------------------------------

    def _statistics_round(
        self, grid: Grid, context: LegacyContext, strategy: GatedFedAvg, config: ConfigRecord
    ) -> None:
        """Basket statistics summed through SecAgg+ before training; published with each
        evaluation so every node gets the market's associations and trends."""
        strategy.stage = STATISTICS_STAGE
        try:
            config[Key.CURRENT_ROUND] = STATISTICS_ROUND
            record = self._fit_round(grid, context, strategy, STATISTICS_ROUND)
            record.seconds = time.monotonic() - record.started
            self._publish(record)
        finally:
            strategy.stage = TRAIN_STAGE
            self._set_parameters(context, strategy)

    def _fit_round(
        self, grid: Grid, context: LegacyContext, strategy: GatedFedAvg, server_round: int
    ) -> RoundRecord:
        for attempt in range(1, self.settings.max_retries + 2):
            record = RoundRecord(round=server_round, attempt=attempt, stage=strategy.stage)
            self._query(grid, strategy, server_round, record)
            if len(record.accepted) < self.settings.min_participants:
                record.status = "skipped"
                log.warning(
                    "round %s: only %s of %s nodes joined (%s needed); no update this round",
                    server_round,
                    len(record.accepted),
                    record.queried,
                    self.settings.min_participants,
                )
                return record
            # Size SecAgg+ by the nodes it will actually sample (all accepted and registered).
            participants = len(strategy.allowed_clients(context.client_manager))
            if participants < self.settings.min_participants:
                record.status = "skipped"
                return record
            SecAggPlusWorkflow(
                num_shares=self.settings.secagg_shares(participants),
                reconstruction_threshold=self.settings.reconstruction_threshold(participants),
                max_weight=float(self.settings.max_weight),
                clipping_range=SECAGG_CLIPPING_RANGE,
                timeout=self.settings.secagg_timeout,
            )(grid, context)
            if strategy.last_aggregated_round == server_round:
                record.status = "aggregated"
                record.participants = participants
                return record
            record.status = "failed"
            record.seconds = time.monotonic() - record.started
            log.warning("round %s attempt %s: SecAgg+ did not finish", server_round, attempt)
            self._publish(record)
        return record

    def _query(
        self, grid: Grid, strategy: GatedFedAvg, server_round: int, record: RoundRecord
    ) -> None:
        node_ids = list(grid.get_node_ids())
        if self.over_budget is not None:
            cost = (
                self.settings.statistics_epsilon
                if strategy.stage == STATISTICS_STAGE
                else self.settings.epsilon_per_round
            )
            try:
                skipped = self.over_budget(cost) & set(node_ids)
            except Exception:  # the mirror is advisory: nodes' own ledgers still decide
                log.exception("the ledger mirror could not be read; asking every node")
                skipped = set()
            for node_id in sorted(skipped):
                record.declined[str(node_id)] = "over budget (coordinator's ledger mirror)"
            node_ids = [n for n in node_ids if n not in skipped]
        record.queried = len(node_ids)
        content = compat.getpropertiesins_to_recorddict(
            GetPropertiesIns(strategy.round_config(server_round))
        )
        messages = [
            Message(
                content=content,
                dst_node_id=node_id,
                message_type=MessageTypeLegacy.GET_PROPERTIES,
                group_id=f"query-{server_round}",
            )
            for node_id in node_ids
        ]
        accepted: set[int] = set()
        for reply in grid.send_and_receive(messages, timeout=self.settings.query_timeout):
            node = str(reply.metadata.src_node_id)
            if not reply.has_content():
                record.declined[node] = f"error: {reply.error.reason if reply.error else '?'}"
                continue
            result = compat.recorddict_to_getpropertiesres(reply.content)
            answer = result.properties
            if result.status.code == Code.OK and bool(answer.get("accept")):
                accepted.add(reply.metadata.src_node_id)
                record.accepted.append(node)
            else:
                record.declined[node] = str(answer.get("reason", result.status.message))
        for node_id in node_ids:
            if node_id not in accepted and str(node_id) not in record.declined:
                record.declined[str(node_id)] = "no answer"
        strategy.allowed = accepted

    def _evaluate(
        self,
        grid: Grid,
        context: LegacyContext,
        strategy: GatedFedAvg,
        server_round: int,
        record: RoundRecord,
    ) -> None:
        parameters = ndarrays_to_parameters(strategy.current)
        instructions = strategy.configure_evaluate(server_round, parameters, context.client_manager)
        messages = [
            Message(
                content=compat.evaluateins_to_recorddict(ins, True),
                dst_node_id=proxy.node_id,
                message_type=MessageType.EVALUATE,
                group_id=f"evaluate-{server_round}",
            )
            for proxy, ins in instructions
        ]
        proxies = {proxy.node_id: proxy for proxy, _ in instructions}
        results = []
        for reply in grid.send_and_receive(messages, timeout=self.settings.secagg_timeout):
            if reply.has_content():
                res = compat.recorddict_to_evaluateres(reply.content)
                if res.status.code == Code.OK:
                    results.append((proxies[reply.metadata.src_node_id], res))
        loss, metrics = strategy.aggregate_evaluate(server_round, results, [])
        if loss is not None:
            context.history.add_loss_distributed(server_round=server_round, loss=loss)
            context.history.add_metrics_distributed(server_round=server_round, metrics=metrics)
            record.loss = loss
            record.wape = float(metrics["wape"])
            record.wape_by_size = dict(strategy.wape_by_size)

    # -- bookkeeping -----------------------------------------------------------------------

    def _set_parameters(self, context: LegacyContext, strategy: GatedFedAvg) -> None:
        context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(strategy.current), keep_input=True
        )

    def _publish(self, record: RoundRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)
