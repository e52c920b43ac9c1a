"""What the Training page shows and does, in plain Python (the page only draws it).

Why the node runs as a detached ``retail-node join`` child process and not as a
``NodeService`` inside the app: a shop owner closes the window at night, and the node must go
on answering the coordinator's rounds until the owner presses Leave (``retail-node join`` is
exactly ``NodeService.start`` supervised until SIGTERM). A child process also keeps the
app's own process light: the runtime service imports torch, Flower and pandas, and its
supervisor threads would compete with the event loop; here the GUI process imports none of
them. Leaving is ``retail-node leave`` (``NodeService.leave``: it stops a node whichever
process started it, also one started from a terminal), and the figures only the ledger knows
(ε spent, consent, prepared data) come from ``retail-node status --json`` (``NodeService.status``)
run as a child. All three children are polled without waiting, so nothing here blocks.

Between those rare status reads, :meth:`TrainingViewModel.poll` is cheap: it reads only the
bytes appended to the node's event stream since the last poll (the runtime's public contract,
``shared.node_runtime.events``) and the supervisor's small ``run/node.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from PySide6.QtCore import QCoreApplication

from desktop_client.enroll_cli import PASSPHRASE_ENV
from shared.enrollment import load_enrollment
from shared.node_runtime.events import Event, EventKind, read_events
from shared.node_runtime.launch import node_cli_command
from shared.node_runtime.supervisor import CONNECTION_EVENT, read_state
from shared.secret_store import KeyStore

JOIN_LOG = "desktop-join.log"  # the detached join's own output, read when it fails to start
LOG_SIZE = 200
# ``retail-node`` of this install: ``python -P -m desktop_client.node_cli``, or the frozen app
# re-executing itself with ``--node-cli`` (see ``shared.node_runtime.launch``).
NODE_COMMAND: tuple[str, ...] = tuple(node_cli_command([]))
STATUS_MAX_AGE = 30.0  # seconds a status read stays fresh when the page is shown again

# Page keys a guidance message can point at (the shell's page keys).
CONNECT_PAGE, DATA_PAGE, PRIVACY_PAGE = "connect", "data", "privacy"


def _tr(text: str) -> str:
    return QCoreApplication.translate("Training", text)


@dataclass(frozen=True)
class LossPoint:
    """The global model's loss on this shop's held-out rows after one round."""

    run_id: int
    round: int
    loss: float


@dataclass(frozen=True)
class Decline:
    """A round this node did not take part in, and why (``cause``: consent, budget, other)."""

    at: datetime
    run_id: int | None
    round: int | None
    reason: str
    cause: str


@dataclass(frozen=True)
class LogEntry:
    """One readable line of the log; ``level`` is info, warning or error."""

    at: datetime
    text: str
    level: str = "info"


@dataclass(frozen=True)
class TrainingSnapshot:
    """Everything the page draws, as plain values."""

    enrolled: bool
    prepared: bool | None  # None until the first status read has answered
    running: bool
    started_here: bool
    connection_state: str  # not running, starting, connected, unreachable, restarting, stopped
    connection: str  # the same, in words
    current_run: int | None
    current_round: int | None
    epsilon_spent: float | None
    epsilon_cap: float | None
    losses: tuple[LossPoint, ...]
    declines: tuple[Decline, ...]
    log: tuple[LogEntry, ...]
    log_total: int  # entries ever logged: the page appends only the new ones
    busy: str  # "", "joining" or "leaving"
    notice: str  # the outcome of the owner's last Join/Leave when it needs saying
    guidance: str  # what to do before joining; "" when nothing is missing
    guidance_page: str  # the page that helps (CONNECT_PAGE, DATA_PAGE, PRIVACY_PAGE) or ""

    @property
    def can_join(self) -> bool:
        return self.enrolled and self.prepared is not False and not self.running and not self.busy

    @property
    def can_leave(self) -> bool:
        return self.running and not self.busy


def decline_cause(reason: str) -> str:
    """Sort the node's own decline reason (see ``shared.federation.node``) for the owner."""
    text = reason.lower()
    if "consent" in text:
        return "consent"
    if text.startswith("budget") or "budget" in text or "ε" in text:
        return "budget"
    return "other"


def _where(event: Event) -> str:
    if event.run_id is None:
        return ""
    if event.round:
        return _tr("Campaign {run}, round {round}: ").format(run=event.run_id, round=event.round)
    return _tr("Campaign {run}: ").format(run=event.run_id)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def describe_event(event: Event) -> LogEntry | None:
    """A sentence a shop owner understands, or None for kinds this app does not know."""
    where = _where(event)
    data = event.data
    kind = event.kind
    if kind == CONNECTION_EVENT:
        state = str(data.get("state", ""))
        level = "warning" if state == "unreachable" else "info"
        message = event.message or state
        return LogEntry(event.at, message[:1].upper() + message[1:] + ".", level)
    if kind == EventKind.RUNNER_STARTED:
        return LogEntry(event.at, _tr("The node is ready to answer the coordinator's rounds."))
    if kind == EventKind.RUNNER_STOPPED:
        return LogEntry(event.at, _tr("The node stopped answering rounds."))
    if kind == EventKind.RUN_REFUSED:
        text = _tr("refused to run this campaign's code ({reason}).").format(reason=event.message)
        return LogEntry(event.at, where + text, "warning")
    if kind == EventKind.ROUND_STARTED:
        return LogEntry(event.at, where + _tr("the coordinator asks whether you take part."))
    if kind == EventKind.JOINED:
        after, cap = _number(data.get("epsilon_after")), _number(data.get("epsilon_cap"))
        if after is not None and cap is not None:
            text = _tr("you take part; your privacy budget will be at ε {after} of {cap}.")
            text = text.format(after=f"{after:.2f}", cap=f"{cap:.2f}")
        else:
            text = _tr("you take part.")
        return LogEntry(event.at, where + text)
    if kind == EventKind.DECLINED:
        text = _tr("you do not take part: {reason}.").format(reason=event.message)
        return LogEntry(event.at, where + text, "warning")
    if kind == EventKind.TRAINED:
        seconds = _number(data.get("seconds"))
        if seconds is not None:
            text = _tr("your update was trained in {seconds} s and sent, masked, to the group.")
            text = text.format(seconds=f"{seconds:.1f}")
        else:
            text = _tr("your update was trained and sent, masked, to the group.")
        return LogEntry(event.at, where + text)
    if kind == EventKind.EPSILON_CHARGED:
        spent, cap = _number(data.get("spent")), _number(data.get("cap"))
        if spent is None or cap is None:
            return LogEntry(event.at, where + _tr("privacy budget charged."))
        text = _tr("privacy budget charged; spent ε {spent} of {cap}.")
        return LogEntry(event.at, where + text.format(spent=f"{spent:.3f}", cap=f"{cap:.2f}"))
    if kind == EventKind.MODEL_RECEIVED:
        loss = _number(data.get("loss"))
        if loss is None:
            return LogEntry(event.at, where + _tr("new shared model received."))
        text = _tr("new shared model received; its loss on your held-out sales is {loss}.")
        return LogEntry(event.at, where + text.format(loss=f"{loss:.4f}"))
    if kind == EventKind.ERROR:
        text = _tr("something went wrong: {message}").format(message=event.message)
        return LogEntry(event.at, where + text, "error")
    return None


@dataclass
class EventFollower:
    """Folds the event stream into the page's figures, reading only new bytes each time."""

    node_dir: Path
    log_size: int = LOG_SIZE
    offset: int = 0
    losses: dict[tuple[int, int], float] = field(default_factory=dict)
    declines: list[Decline] = field(default_factory=list)
    log: deque[LogEntry] = field(default_factory=deque)
    current_run: int | None = None
    current_round: int | None = None
    epsilon_spent: float | None = None
    epsilon_cap: float | None = None
    logged: int = 0  # log entries ever made (the log keeps the newest log_size of them)

    def __post_init__(self) -> None:
        self.log = deque(self.log, maxlen=self.log_size)

    def read(self) -> tuple[Event, ...]:
        """Fold the events appended since the last read; returns them."""
        batch = read_events(self.node_dir, self.offset)
        self.offset = batch.next_offset
        for event in batch.events:
            self._fold(event)
        return batch.events

    def _fold(self, event: Event) -> None:
        entry = describe_event(event)
        if entry is not None:
            self.log.append(entry)
            self.logged += 1
        if event.kind != CONNECTION_EVENT and event.run_id is not None:
            self.current_run, self.current_round = event.run_id, event.round
        data = event.data
        if event.kind == EventKind.DECLINED:
            reason = event.message or _tr("no reason given")
            cause = decline_cause(reason)
            self.declines.append(Decline(event.at, event.run_id, event.round, reason, cause))
        elif event.kind == EventKind.EPSILON_CHARGED:
            self._budget(data.get("spent"), data.get("cap"))
        elif event.kind == EventKind.MODEL_RECEIVED:
            loss = _number(data.get("loss"))
            if loss is not None and event.run_id is not None and event.round is not None:
                self.losses[(event.run_id, event.round)] = loss

    def _budget(self, spent: object, cap: object) -> None:
        spent_value, cap_value = _number(spent), _number(cap)
        if spent_value is not None and cap_value is not None:
            self.epsilon_spent, self.epsilon_cap = spent_value, cap_value

    def loss_points(self) -> tuple[LossPoint, ...]:
        return tuple(LossPoint(run, rnd, loss) for (run, rnd), loss in sorted(self.losses.items()))


def connection_words(state: str) -> str:
    """The supervisor's connection state in the owner's words."""
    words = {
        "not running": _tr("Not taking part"),
        "starting": _tr("Starting…"),
        "connected": _tr("Connected to the coordinator"),
        "unreachable": _tr("Coordinator unreachable; retrying"),
        "restarting": _tr("Restarting after a problem"),
        "stopped": _tr("Stopped"),
    }
    return words.get(state, state)


@dataclass
class _Child:
    """A ``retail-node`` child whose output goes to a file, so nothing waits on a pipe."""

    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def finished(self) -> bool:
        return self.process.poll() is not None

    def text(self) -> str:
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")

    def close(self) -> None:
        self.output.close()


class TrainingViewModel:
    """Join, leave and follow one node directory; call :meth:`poll` about once a second."""

    def __init__(
        self,
        node_dir: Path,
        *,
        node_command: Sequence[str] = NODE_COMMAND,
        log_size: int = LOG_SIZE,
    ) -> None:
        self.node_dir = Path(node_dir).expanduser().absolute()
        self.node_command = tuple(node_command)
        self.events = EventFollower(self.node_dir, log_size=log_size)
        self._join: subprocess.Popen[bytes] | None = None
        self._leave: _Child | None = None
        self._status: _Child | None = None
        self._status_again = False
        self._status_at: float | None = None  # time.monotonic() of the last status read
        self._busy = ""
        self._notice = ""
        self._prepared: bool | None = None
        self._running = False
        self._owner_pid: int | None = None
        self._state = "not running"
        self._state_message = ""

    # -- reading ---------------------------------------------------------------------------

    def poll(self) -> bool:
        """Read what changed (new events, the node's state, finished children); cheap.

        Returns True when the page has something new to draw."""
        before = (self.events.offset, self._state, self._state_message, self._running, self._busy)
        new = self.events.read()
        if any(e.kind in (EventKind.EPSILON_CHARGED, EventKind.MODEL_RECEIVED) for e in new):
            self.request_status()
        self._read_state()
        changed = self._reap_children()
        now = (self.events.offset, self._state, self._state_message, self._running, self._busy)
        return changed or now != before

    def _read_state(self) -> None:
        state = read_state(self.node_dir)
        running = state is not None and state.state != "stopped" and state.owner.alive()
        self._running = running
        self._owner_pid = state.owner.pid if running and state is not None else None
        self._state = state.state if running and state is not None else "not running"
        self._state_message = state.message if running and state is not None else ""
        if running and self._busy == "joining":
            self._busy = ""

    def request_status(self) -> None:
        """Ask ``retail-node status --json`` for the ledger's figures (in a child, see above)."""
        if self._status is not None:
            self._status_again = True
            return
        self._status_at = time.monotonic()
        self._status = self._spawn(["status", "--json"])

    def refresh_status(self, max_age: float = STATUS_MAX_AGE) -> None:
        """Read the status again unless the last read started less than ``max_age`` s ago
        (each read is a child that loads the runtime: not for every page switch)."""
        if self._status_at is None or time.monotonic() - self._status_at >= max_age:
            self.request_status()

    def _reap_children(self) -> bool:
        changed = False
        if self._status is not None and self._status.finished():
            self._read_status(self._status)
            self._status.close()
            self._status = None
            changed = True
            if self._status_again:
                self._status_again = False
                self.request_status()
        if self._leave is not None and self._leave.finished():
            text = self._leave.text().strip()
            failed = self._leave.process.returncode != 0
            self._leave.close()
            self._leave = None
            self._busy = ""
            self._notice = text if failed else ""
            self._reap_join()
            self.request_status()
            changed = True
        if self._join is not None and self._reap_join():
            changed = True
        return changed

    def _reap_join(self) -> bool:
        """True when our detached join ended; a failed start leaves its reason in the notice."""
        if self._join is None or self._join.poll() is None:
            return False
        code = self._join.returncode
        self._join = None
        if self._busy == "joining":
            self._busy = ""
        if code != 0:
            self._notice = self._join_failure()
        return True

    def _join_failure(self) -> str:
        try:
            lines = (self.node_dir / JOIN_LOG).read_text("utf-8", "replace").splitlines()
        except OSError:
            lines = []
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        if errors:
            return _tr("Could not join: {reason}").format(reason=errors[-1])
        return _tr("Could not join; see {log}").format(log=self.node_dir / JOIN_LOG)

    def _read_status(self, child: _Child) -> None:
        try:
            data: Any = json.loads(child.text())
        except ValueError:
            return  # a status that could not be read keeps the figures we have
        if not isinstance(data, dict):
            return
        self._prepared = bool(data.get("prepared"))
        ledger = data.get("ledger")
        if isinstance(ledger, dict):
            spent, cap = _number(ledger.get("spent")), _number(ledger.get("cap"))
            if spent is not None and cap is not None:  # the ledger is the authority
                self.events.epsilon_spent, self.events.epsilon_cap = spent, cap

    # -- acting ----------------------------------------------------------------------------

    def needs_passphrase(self) -> bool:
        """The node's key is in a passphrase-protected file: Join must ask for it."""
        enrollment = load_enrollment(self.node_dir)
        return enrollment is not None and enrollment.key_store is KeyStore.ENCRYPTED

    def join(self, passphrase: str | None = None) -> None:
        """Start ``retail-node join`` detached (it outlives the window); returns at once.

        The passphrase of an encrypted key goes to the child in its environment
        (``RETAIL_NODE_PASSPHRASE``, readable only by this user), never on its command line."""
        if self._busy or self._running:
            return
        if load_enrollment(self.node_dir) is None:
            self._notice = _tr(
                "This computer is not connected to a coordinator yet. "
                "Enroll on the Connect page first."
            )
            return
        if self._prepared is False:
            self._notice = _tr("Import your sales data on the Data page first.")
            return
        if self.needs_passphrase() and not passphrase:
            self._notice = _tr("Type the passphrase that protects this node's key to join.")
            return
        self._notice = ""
        env = _child_env()
        if passphrase:
            env[PASSPHRASE_ENV] = passphrase
        self.node_dir.mkdir(parents=True, exist_ok=True)
        with (self.node_dir / JOIN_LOG).open("wb") as log:
            self._join = subprocess.Popen(  # noqa: S603 - our own CLI, argument list
                [*self.node_command, "join", "--data-dir", str(self.node_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: closing the app does not stop it
                env=env,
            )
        self._busy = "joining"

    def leave(self) -> None:
        """Stop the node (whoever started it) with ``retail-node leave``; returns at once."""
        if self._busy == "leaving" or self._leave is not None:
            return
        self._notice = ""
        self._busy = "leaving"
        self._leave = self._spawn(["leave"])

    def _spawn(self, args: list[str]) -> _Child:
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _Child.close
        process = subprocess.Popen(  # noqa: S603 - our own CLI, argument list
            [*self.node_command, *args, "--data-dir", str(self.node_dir)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if args[0] != "status" else subprocess.DEVNULL,
            env=_child_env(),
        )
        return _Child(process, output)

    def shutdown(self) -> None:
        """The page is going away: end the status read; a running node keeps running."""
        if self._status is not None:
            self._status.process.kill()
            self._status.process.wait()
            self._status.close()
            self._status = None

    # -- showing ---------------------------------------------------------------------------

    def snapshot(self) -> TrainingSnapshot:
        enrolled = load_enrollment(self.node_dir) is not None
        guidance, page = "", ""
        if not enrolled:
            guidance = _tr(
                "This computer is not connected to a coordinator yet. Open the Connect page and "
                "enroll with the address and token your coordinator gave you."
            )
            page = CONNECT_PAGE
        elif self._prepared is False:
            guidance = _tr(
                "There is no sales data to learn from yet. Open the Data page and import your "
                "sales export, then give consent on the Privacy page."
            )
            page = DATA_PAGE
        connection = connection_words(self._state)
        if self._running and self._state_message:
            connection = f"{connection} ({self._state_message})"
        return TrainingSnapshot(
            enrolled=enrolled,
            prepared=self._prepared,
            running=self._running,
            started_here=self._owner_pid is not None
            and self._join is not None
            and self._join.pid == self._owner_pid,
            connection_state=self._state,
            connection=connection,
            current_run=self.events.current_run,
            current_round=self.events.current_round,
            epsilon_spent=self.events.epsilon_spent,
            epsilon_cap=self.events.epsilon_cap,
            losses=self.events.loss_points(),
            declines=tuple(self.events.declines),
            log=tuple(self.events.log),
            log_total=self.events.logged,
            busy=self._busy,
            notice=self._notice,
            guidance=guidance,
            guidance_page=page,
        )


def _child_env() -> dict[str, str]:
    """The children print plain text in UTF-8 whatever the desktop's locale."""
    env = dict(os.environ)
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("RETAIL_DESKTOP_TIMING", None)
    env.pop(PASSPHRASE_ENV, None)  # given to the join child only, when the owner typed it
    return env


def node_summary(node_dir: Path) -> str:
    """One line for the window's status bar: enrolled with whom, and the connection; cheap."""
    enrollment = load_enrollment(node_dir)
    if enrollment is None:
        return _tr("Not enrolled: open the Connect page to join a coordinator")
    state = read_state(node_dir)
    running = state is not None and state.state != "stopped" and state.owner.alive()
    words = connection_words(state.state if running and state is not None else "not running")
    return _tr("Enrolled as {name} with {url} · {connection}").format(
        name=enrollment.retailer_name, url=enrollment.api_url, connection=words
    )
