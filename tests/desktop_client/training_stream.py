"""Writes a node's event stream and run state the way the node runtime writes them.

The stream (``shared.node_runtime.events``) and ``run/node.json`` are the runtime's public
contract with the desktop app, so tests write them with the runtime's own writers and the same
kinds and fields ``flower_runner`` and the supervisor use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.node_runtime.events import EventKind, EventLog
from shared.node_runtime.supervisor import (
    CONNECTION_EVENT,
    ProcessRecord,
    RuntimeState,
    state_path,
)


def write_round(
    log: EventLog,
    run_id: int,
    server_round: int,
    *,
    loss: float,
    spent: float,
    cap: float = 10.0,
    increase: float = 0.5,
) -> None:
    """One round this node took part in, as the runner records it."""
    common = {"run_id": run_id, "server_round": server_round}
    log.append(
        EventKind.ROUND_STARTED, **common, message="participation query (train)", stage="train"
    )
    log.append(
        EventKind.JOINED, **common, message="joins", stage="train", epsilon_after=spent,
        epsilon_cap=cap,
    )  # fmt: skip
    log.append(
        EventKind.TRAINED,
        **common,
        message="update released through SecAgg+ (train)",
        stage="train",
        seconds=2.5,
    )
    log.append(
        EventKind.EPSILON_CHARGED,
        **common,
        message=f"ε {spent - increase:.3f} → {spent:.3f} of {cap:.2f}",
        epsilon=increase,
        spent=spent,
        cap=cap,
    )
    log.append(
        EventKind.MODEL_RECEIVED,
        **common,
        message="global model received and evaluated on local holdout",
        loss=loss,
        examples=120,
    )


def write_decline(log: EventLog, run_id: int, server_round: int, reason: str) -> None:
    common = {"run_id": run_id, "server_round": server_round}
    log.append(
        EventKind.ROUND_STARTED, **common, message="participation query (train)", stage="train"
    )
    log.append(EventKind.DECLINED, **common, message=reason, stage="train")


def write_connection(log: EventLog, state: str, message: str, node_id: int | None = 7) -> None:
    log.append(CONNECTION_EVENT, message=message, state=state, node_id=node_id)


def write_running_state(node_dir: Path, state: str = "connected", message: str = "") -> None:
    """``run/node.json`` naming this (alive) test process as the node's owner."""
    record = RuntimeState(
        owner=ProcessRecord.of(os.getpid()),
        superlink="127.0.0.1:9092",
        state=state,
        message=message,
        node_id=7,
    )
    path = state_path(node_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json()), "utf-8")
