"""The node runtime service: one plain-Python API for ``retail-node`` and the desktop app.

Why: joining the federation takes an enrollment (``shared.enrollment``), the node's data
(``shared.federation.node.prepare_node``), two supervised Flower processes
(:mod:`shared.node_runtime.supervisor`) and, for the owner, one place that says what the node
is doing (the event stream, the privacy ledger, the last global model). Both front ends use
this class so they show the same facts. No Qt here; the desktop app polls :meth:`status`.

``status()`` works from any process: what the running node does is read from
``NODE_DIR/run/node.json`` (pids are checked against their kernel start times) and the event
stream; the figures from the ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shared.enrollment import NodeEnrollment, load_enrollment
from shared.federation.node import CANONICAL_FILE, NODE_FILE, prepare_node
from shared.node_runtime.events import Event, EventKind, last_events
from shared.node_runtime.supervisor import (
    CONNECTION_EVENT,
    NodeSupervisor,
    RuntimeState,
    SupervisorError,
    is_our_runner,
    is_our_supernode,
    read_state,
    terminate,
)
from shared.privacy.ledger import LEDGER_FILENAME, PrivacyLedger
from shared.schema import Task
from shared.secret_store import SecretStoreError, discard_materialized_key, materialize_node_key

ENROLL_FIRST = "this node is not enrolled: enroll first with `retail-node enroll URL --token T`"
NO_DATA = (
    "this node has no prepared sales data: run `retail-node join --data FILE` "
    "(optionally with --consent demand_pricing,bundles) to import and prepare it"
)
GLOBAL_MODEL = Path("model") / "global.npz"
STATUS_EVENTS = 20


class NodeNotReady(Exception):
    """The node cannot join yet; the message says what the owner must do."""


@dataclass(frozen=True)
class NodeStatus:
    """Everything the owner wants to know about the node, as plain values."""

    node_dir: Path
    enrolled: bool
    coordinator: dict[str, Any] | None  # api_url, superlink_address, ca_fingerprint, retailer
    prepared: bool
    name: str | None
    running: bool
    connection: str  # not running, starting, connected, unreachable, restarting, stopped
    connection_message: str
    node_id: int | None
    pids: dict[str, int]
    runtime_port: int | None
    current_run: int | None
    current_round: int | None
    last_events: tuple[Event, ...]
    refused_runs: tuple[dict[str, Any], ...]
    ledger: dict[str, float] | None  # spent, remaining, cap, delta
    consent: dict[str, bool] = field(default_factory=dict)
    model_version: str | None = None

    @property
    def connected(self) -> bool:
        return self.running and self.connection == "connected"

    def to_json(self) -> dict[str, Any]:
        return {
            "node_dir": str(self.node_dir),
            "enrolled": self.enrolled,
            "coordinator": self.coordinator,
            "prepared": self.prepared,
            "name": self.name,
            "running": self.running,
            "connection": self.connection,
            "connection_message": self.connection_message,
            "node_id": self.node_id,
            "pids": self.pids,
            "runtime_port": self.runtime_port,
            "current_run": self.current_run,
            "current_round": self.current_round,
            "last_events": [json.loads(e.to_json()) for e in self.last_events],
            "refused_runs": list(self.refused_runs),
            "ledger": self.ledger,
            "consent": self.consent,
            "model_version": self.model_version,
        }


class NodeService:
    """Prepare, start, stop and describe one node directory."""

    def __init__(self, node_dir: Path, *, backoff_max: float = 30.0) -> None:
        self.node_dir = Path(node_dir).expanduser().absolute()
        self.backoff_max = backoff_max
        self._supervisor: NodeSupervisor | None = None

    # -- preparing ------------------------------------------------------------------------

    @property
    def enrollment(self) -> NodeEnrollment | None:
        return load_enrollment(self.node_dir)

    @property
    def prepared(self) -> bool:
        return (self.node_dir / CANONICAL_FILE).is_file() and (self.node_dir / NODE_FILE).is_file()

    def prepare(
        self,
        frame: pd.DataFrame | None = None,
        name: str | None = None,
        consent: Iterable[Task] = (),
    ) -> Path:
        """Lay out the node's data from a canonical frame, or check the existing layout
        (``frame=None``). Consent is granted in the ledger only for the tasks given."""
        if frame is None:
            if not self.prepared:
                raise NodeNotReady(NO_DATA)
            return self.node_dir
        label = name or self._default_name()
        return prepare_node(self.node_dir, frame, label, tuple(consent))

    def _default_name(self) -> str:
        enrollment = self.enrollment
        return enrollment.retailer_name if enrollment is not None else self.node_dir.name

    def check_ready(self) -> NodeEnrollment:
        """The enrollment to join with; NodeNotReady says what is missing."""
        enrollment = self.enrollment
        if enrollment is None:
            raise NodeNotReady(ENROLL_FIRST)
        if not enrollment.superlink_address:
            raise NodeNotReady(
                "the enrollment names no federation address (superlink_address): "
                "ask the coordinator's admin, then enroll again with --force"
            )
        if not self.prepared:
            raise NodeNotReady(NO_DATA)
        return enrollment

    # -- running --------------------------------------------------------------------------

    def start(self, passphrase: str | None = None) -> None:
        """Start the SuperNode and the trusted runner under supervision; returns at once.
        ``passphrase`` opens a key kept encrypted (``shared.secret_store``); the key is put
        where the SuperNode can load it only while the node runs."""
        enrollment = self.check_ready()
        try:
            key_path = materialize_node_key(self.node_dir, enrollment.key_location, passphrase)
        except SecretStoreError as exc:
            raise NodeNotReady(exc.reason) from exc
        supervisor = NodeSupervisor(
            self.node_dir,
            superlink=str(enrollment.superlink_address),  # checked by check_ready
            ca_path=enrollment.ca_path,
            key_path=key_path,
            backoff_max=self.backoff_max,
        )
        try:
            supervisor.start()
        except SupervisorError as exc:
            if not _run_by_another_process(self.node_dir):  # that one still needs the key
                discard_materialized_key(self.node_dir)
            raise NodeNotReady(str(exc)) from exc
        self._supervisor = supervisor

    def stop(self) -> None:
        """Stop what this object started (the runner, then the SuperNode)."""
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
            discard_materialized_key(self.node_dir)

    def leave(self, timeout: float = 30.0) -> str:
        """Stop a node started by another process (``retail-node join``); says what it did.

        The owning process gets SIGTERM and stops its children itself; children whose owner
        is gone are ended directly, after checking they serve this node directory."""
        state = read_state(self.node_dir)
        if state is None or not _anything_alive(state, self.node_dir):
            return f"no node is running in {self.node_dir}"
        if state.owner.alive():
            terminate(state.owner.pid, timeout, group=False)
            deadline = time.monotonic() + timeout
            while state.owner.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        for record, ours in ((state.runner, is_our_runner), (state.supernode, is_our_supernode)):
            if record is not None and ours(record, self.node_dir):
                terminate(record.pid, 10.0)
        if _anything_alive(state, self.node_dir):
            return f"the node in {self.node_dir} did not stop; see {self.node_dir / 'run'}"
        discard_materialized_key(self.node_dir)  # its owner normally did; a killed one did not
        return f"stopped the node in {self.node_dir}"

    # -- status ---------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        enrollment = self.enrollment
        state = read_state(self.node_dir)
        running = state is not None and state.state != "stopped" and state.owner.alive()
        events = last_events(self.node_dir, 500)
        run_id, server_round = _current_run(events)
        return NodeStatus(
            node_dir=self.node_dir,
            enrolled=enrollment is not None,
            coordinator=_coordinator(enrollment),
            prepared=self.prepared,
            name=self._name(),
            running=running,
            connection=(state.state if running and state is not None else "not running"),
            connection_message=(state.message if running and state is not None else ""),
            node_id=state.node_id if running and state is not None else None,
            pids=_pids(state) if running and state is not None else {},
            runtime_port=state.runtime_port if running and state is not None else None,
            current_run=run_id,
            current_round=server_round,
            last_events=events[-STATUS_EVENTS:],
            refused_runs=tuple(
                {"run_id": e.run_id, "reason": e.message, "at": e.at.isoformat(), **e.data}
                for e in events
                if e.kind == EventKind.RUN_REFUSED
            ),
            ledger=self._ledger(),
            consent=self._consent(),
            model_version=self._model_version(),
        )

    def _name(self) -> str | None:
        try:
            return str(json.loads((self.node_dir / NODE_FILE).read_text("utf-8"))["name"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ledger(self) -> dict[str, float] | None:
        if not (self.node_dir / LEDGER_FILENAME).exists():
            return None
        with PrivacyLedger.in_data_dir(self.node_dir) as ledger:
            budget = ledger.status()
        return {
            "spent": budget.spent_epsilon,
            "remaining": budget.remaining_epsilon,
            "cap": budget.total_epsilon,
            "delta": budget.delta,
        }

    def _consent(self) -> dict[str, bool]:
        if not (self.node_dir / LEDGER_FILENAME).exists():
            return {task.value: False for task in Task}
        with PrivacyLedger.in_data_dir(self.node_dir) as ledger:
            granted = ledger.consents()
        return {task.value: bool(granted.get(task, False)) for task in Task}

    def _model_version(self) -> str | None:
        path = self.node_dir / GLOBAL_MODEL
        if not path.exists():
            return None
        import numpy as np

        from shared.insights.context import model_version_of

        with contextlib.suppress(OSError, ValueError), np.load(path) as stored:
            return model_version_of([stored[key] for key in stored.files])
        return None


def _coordinator(enrollment: NodeEnrollment | None) -> dict[str, Any] | None:
    if enrollment is None:
        return None
    return {
        "api_url": enrollment.api_url,
        "superlink_address": enrollment.superlink_address,
        "ca_fingerprint": enrollment.ca_fingerprint,
        "retailer_id": enrollment.retailer_id,
        "retailer_name": enrollment.retailer_name,
    }


def _pids(state: RuntimeState) -> dict[str, int]:
    pids = {"owner": state.owner.pid}
    if state.supernode is not None:
        pids["supernode"] = state.supernode.pid
    if state.runner is not None:
        pids["runner"] = state.runner.pid
    return pids


def _run_by_another_process(node_dir: Path) -> bool:
    state = read_state(node_dir)
    return (
        state is not None
        and state.state != "stopped"
        and state.owner.pid != os.getpid()
        and state.owner.alive()
    )


def _anything_alive(state: RuntimeState, node_dir: Path) -> bool:
    if state.state != "stopped" and state.owner.alive():
        return True
    return (state.runner is not None and is_our_runner(state.runner, node_dir)) or (
        state.supernode is not None and is_our_supernode(state.supernode, node_dir)
    )


def _current_run(events: tuple[Event, ...]) -> tuple[int | None, int | None]:
    """The newest run the runner worked on and its round (connection events carry none)."""
    for event in reversed(events):
        if event.kind != CONNECTION_EVENT and event.run_id is not None:
            return event.run_id, event.round
    return None, None
