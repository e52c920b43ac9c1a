"""Starts and supervises one node's Flower processes: ``flower-supernode`` and the trusted runner.

Why a supervisor: the SuperNode (``--isolation process``) only queues the coordinator's tasks
on its local runtime API; the runner (:mod:`shared.node_runtime.flower_runner`) claims and
serves them. Both must live together, share a fresh SuperExec secret (so no other local
process can claim tasks) and come back when either dies, and the owner must be told in words
when the coordinator cannot be reached.

What it does:

- starts both through :mod:`shared.node_runtime.launch` (the SuperNode with a short idle pull,
  and the same commands from a frozen app);
- picks a free loopback port for the runtime API and writes a 32-byte secret (0600) to
  ``NODE_DIR/run/superexec.secret``; both processes get it;
- starts both in their own sessions, their output appended to ``NODE_DIR/run/*.log``;
- follows the SuperNode's log: ``SuperNode ID: N`` means connected, Flower's ``Connection
  attempt failed, retrying in X seconds`` means the coordinator is unreachable (Flower keeps
  retrying by itself), ``Connection successful after`` means it is back. Each change of state
  writes one ``connection`` event to the node's event stream;
- when either process dies, ends the other and restarts both after an exponential backoff
  (reset after a minute of healthy running); exit 305 (Flower: authentication or TLS failed,
  also seen when the coordinator is down at the TLS step) is reported as "coordinator
  unreachable, retrying in N s";
- keeps ``NODE_DIR/run/node.json`` (pids with their kernel start times, port, state) so that
  ``status`` and ``leave`` work from another process and never signal a recycled pid;
- ``stop()`` SIGTERMs the runner (it finishes between tasks), then the SuperNode, SIGKILLs
  what is left after a grace period, and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.node_runtime.events import EventKind, EventLog
from shared.node_runtime.launch import (
    DEFAULT_PULL_INTERVAL,
    FROZEN_FLAG,
    LAUNCH_MODULE,
    RUNNER_MODULE,
    node_process_command,
)

log = logging.getLogger(__name__)

RUN_DIR = "run"
STATE_FILE = "node.json"
SECRET_FILE = "superexec.secret"  # noqa: S105  # a file name, not a secret
SUPERNODE_LOG = "supernode.log"
RUNNER_LOG = "runner.log"
FLWR_HOME_DIR = "flwr-home"
CONNECTION_EVENT = "connection"  # data: state (connected, unreachable, stopped), node_id

EXIT_AUTH_OR_TLS = 305  # Flower 1.42: SuperNode could not authenticate or verify TLS
HEALTHY_RESET_SECONDS = 60.0
# A SuperNode that keeps "retrying" this long is restarted: after the coordinator restarts,
# Flower 1.42's SuperNode retries a reply for the stopped run forever (the SuperLink answers
# "Run is finished"), which its log reports as a failed connection; a fresh one rejoins.
STUCK_RETRY_SECONDS = 45.0

_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RETRYING = re.compile(r"Connection attempt failed, retrying in ([0-9.]+) seconds")
_RECOVERED = re.compile(r"Connection successful after")
_FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")  # Flower's own code; the process exits with 1


class SupervisorError(RuntimeError):
    """The node's processes cannot be started (already running, missing files)."""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


@dataclass
class ProcessRecord:
    """A pid plus its start time: signalling it is safe only while both still match."""

    pid: int
    started: int | None

    def alive(self) -> bool:
        """Still the same process and not a zombie (an exited child nobody reaped yet)."""
        return (
            self.started is not None
            and process_start_time(self.pid) == self.started
            and not _is_zombie(self.pid)
        )

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        return cls(pid, process_start_time(pid))


@dataclass
class RuntimeState:
    """What ``run/node.json`` holds; another process reads it for ``status`` and ``leave``."""

    owner: ProcessRecord
    superlink: str
    state: str = "starting"  # starting, connected, unreachable, restarting, stopped
    message: str = ""
    node_id: int | None = None
    runtime_port: int | None = None
    supernode: ProcessRecord | None = None
    runner: ProcessRecord | None = None
    restarts: int = 0
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuntimeState:
        def record(value: Any) -> ProcessRecord | None:
            if not isinstance(value, dict):
                return None
            return ProcessRecord(int(value["pid"]), value.get("started"))

        owner = record(data.get("owner"))
        if owner is None:
            raise ValueError("no owner")
        node_id = data.get("node_id")
        port = data.get("runtime_port")
        return cls(
            owner=owner,
            superlink=str(data.get("superlink", "")),
            state=str(data.get("state", "")),
            message=str(data.get("message", "")),
            node_id=None if node_id is None else int(node_id),
            runtime_port=None if port is None else int(port),
            supernode=record(data.get("supernode")),
            runner=record(data.get("runner")),
            restarts=int(data.get("restarts", 0)),
            updated_at=str(data.get("updated_at", "")),
        )


def state_path(node_dir: Path) -> Path:
    return Path(node_dir) / RUN_DIR / STATE_FILE


def read_state(node_dir: Path) -> RuntimeState | None:
    """The recorded state, or None when there is none (never ran, or unreadable)."""
    try:
        return RuntimeState.from_json(json.loads(state_path(node_dir).read_text("utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(node_dir: Path, state: RuntimeState) -> None:
    state.updated_at = datetime.now(UTC).isoformat()
    path = state_path(node_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n", "utf-8")
    tmp.replace(path)


def is_our_supernode(record: ProcessRecord, node_dir: Path) -> bool:
    """A live ``flower-supernode`` serving exactly this node directory."""
    args = process_cmdline(record.pid)
    return record.alive() and _starts_supernode(args) and f'data-path="{Path(node_dir)}"' in args


def _starts_supernode(args: list[str]) -> bool:
    """Started by :func:`node_process_command` (module, frozen app) or as the Flower script."""
    head = args[:5]
    return any(Path(a).name == "flower-supernode" for a in head[:2]) or (
        "supernode" in head and (LAUNCH_MODULE in head or FROZEN_FLAG in head)
    )


def is_our_runner(record: ProcessRecord, node_dir: Path) -> bool:
    """A live trusted runner serving exactly this node directory."""
    args = process_cmdline(record.pid)
    return (
        record.alive()
        and (RUNNER_MODULE in args or (FROZEN_FLAG in args[:3] and "runner" in args[:3]))
        and "--node-dir" in args
        and args[args.index("--node-dir") + 1 :][:1] == [str(Path(node_dir))]
    )


def terminate(pid: int, grace: float, *, group: bool = True) -> None:
    """SIGTERM ``pid`` (its process group when it leads its own session, as our children do),
    SIGKILL after ``grace`` s."""
    send = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process_start_time(pid) is None or _is_zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] == "Z"


class NodeSupervisor:
    """Runs ``flower-supernode`` plus the runner for one node directory (see module doc)."""

    def __init__(
        self,
        node_dir: Path,
        *,
        superlink: str,
        ca_path: Path,
        key_path: Path,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stop_grace: float = 10.0,
        poll_interval: float = 0.3,
        pull_interval: float = DEFAULT_PULL_INTERVAL,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.node_dir = Path(node_dir).absolute()
        self.run_dir = self.node_dir / RUN_DIR
        self.superlink = superlink
        self.ca_path = Path(ca_path).absolute()
        self.key_path = Path(key_path).absolute()
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self.pull_interval = pull_interval  # the SuperNode's idle wait between pulls
        self._extra_env = dict(env or {})
        self.events = EventLog(self.node_dir)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._supernode: subprocess.Popen[bytes] | None = None
        self._runner: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._flower_exit: int | None = None  # "Exit Code: N" in this start's SuperNode log
        self._unreachable_since: float | None = None  # monotonic time the retries began
        self._started_at = 0.0
        self.state = RuntimeState(owner=ProcessRecord.of(os.getpid()), superlink=superlink)

    # -- public ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start both processes and the supervision thread; returns at once."""
        with self._lock:
            if self._thread is not None:
                raise SupervisorError("this supervisor is already running")
            previous = read_state(self.node_dir)
            if previous is not None and previous.state != "stopped" and previous.owner.alive():
                raise SupervisorError(
                    f"this node is already running (process {previous.owner.pid}); "
                    "stop it with `retail-node leave` first"
                )
            self._end_leftovers(previous)
            for path in (self.ca_path, self.key_path):
                if not path.is_file():
                    raise SupervisorError(f"missing {path}: enroll this node first")
            self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._stopping.clear()
            self._spawn()
            self._thread = threading.Thread(
                target=self._supervise, name="node-supervisor", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Runner first (it stops between tasks), then the SuperNode; nothing is left."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.stop_grace + 5)
        with self._lock:
            self._terminate_children()
            self._thread = None
            self._set("stopped", "stopped by the owner", event=True)

    def running(self) -> bool:
        return self._thread is not None and not self._stopping.is_set()

    # -- processes ------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, **self._extra_env}
        env["FLWR_HOME"] = str(self.run_dir / FLWR_HOME_DIR)
        env["FLWR_TELEMETRY_ENABLED"] = "0"
        env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        # The SuperNode starts Flower helpers by name: this venv's bin must come first.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _write_secret(self) -> Path:
        """A fresh 32-byte secret per start: only our runner can claim this node's tasks."""
        path = self.run_dir / SECRET_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        return path

    def supernode_command(self, port: int, secret: Path) -> list[str]:
        return node_process_command(
            "supernode",
            [
                "--pull-interval",
                str(self.pull_interval),
                "--superlink",
                self.superlink,
                "--root-certificates",
                str(self.ca_path),
                "--auth-supernode-private-key",
                str(self.key_path),
                "--node-config",
                f'data-path="{self.node_dir}"',
                "--isolation",
                "process",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--superexec-auth-secret-file",
                str(secret),
            ],
        )

    def runner_command(self, port: int, secret: Path) -> list[str]:
        return node_process_command(
            "runner",
            [
                "--runtime-address",
                f"127.0.0.1:{port}",
                "--node-dir",
                str(self.node_dir),
                "--superexec-auth-secret-file",
                str(secret),
            ],
        )

    def _spawn(self) -> None:
        port = _free_port()
        secret = self._write_secret()
        env = self._environment()
        supernode_log = self.run_dir / SUPERNODE_LOG
        self._log_offset = supernode_log.stat().st_size if supernode_log.exists() else 0
        self._flower_exit = None
        self._unreachable_since = None
        with supernode_log.open("ab") as out:
            self._supernode = subprocess.Popen(  # noqa: S603  # sys.executable, our own arguments
                self.supernode_command(port, secret),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.run_dir,
                start_new_session=True,
            )
        with (self.run_dir / RUNNER_LOG).open("ab") as out:
            self._runner = subprocess.Popen(  # noqa: S603  # sys.executable, our own module
                self.runner_command(port, secret),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.run_dir,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        self.state.runtime_port = port
        self.state.supernode = ProcessRecord.of(self._supernode.pid)
        self.state.runner = ProcessRecord.of(self._runner.pid)
        self.state.node_id = None
        self._set("starting", f"connecting to the coordinator at {self.superlink}")

    def _terminate_children(self) -> None:
        """Both at once: the runner stops between tasks, the SuperNode's own shutdown takes
        seconds (Flower closes its runtime API and leaves the SuperLink), so waiting for them
        one after the other only doubles the time ``leave`` takes."""
        live = [p for p in (self._runner, self._supernode) if p is not None and p.poll() is None]
        workers = [
            threading.Thread(target=terminate, args=(proc.pid, self.stop_grace), daemon=True)
            for proc in live
        ]
        for worker in workers:
            worker.start()
        for worker, proc in zip(workers, live, strict=True):
            worker.join()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_grace)
        self._runner = self._supernode = None
        self.state.supernode = self.state.runner = None
        self.state.runtime_port = None

    def _end_leftovers(self, previous: RuntimeState | None) -> None:
        """A SIGKILLed owner leaves its children running: end them if they are ours."""
        if previous is None:
            return
        if previous.runner is not None and is_our_runner(previous.runner, self.node_dir):
            terminate(previous.runner.pid, self.stop_grace)
        if previous.supernode is not None and is_our_supernode(previous.supernode, self.node_dir):
            terminate(previous.supernode.pid, self.stop_grace)

    # -- supervision ----------------------------------------------------------------------

    def _supervise(self) -> None:
        backoff = self.backoff_initial
        while not self._stopping.wait(self.poll_interval):
            with self._lock:
                if self._stopping.is_set():
                    return
                self._follow_log()
                died = self._dead() or self._stuck()
                if died is None:
                    if time.monotonic() - self._started_at > HEALTHY_RESET_SECONDS:
                        backoff = self.backoff_initial
                    continue
                self._follow_log()
                name, code = died
                if name == "SuperNode" and self._flower_exit is not None:
                    code = self._flower_exit  # e.g. 305: TLS or authentication failed
                self._terminate_children()
                self.state.restarts += 1
                if name == "SuperNode" and code == EXIT_AUTH_OR_TLS:
                    self._set(
                        "unreachable",
                        f"coordinator unreachable or it refused this node (TLS/authentication, "
                        f"exit {code}), retrying in {backoff:.0f} s",
                        event=True,
                    )
                else:
                    self.events.append(
                        EventKind.ERROR,
                        message=f"{name} exited with code {code}; restarting in {backoff:.0f} s",
                        step="supervisor",
                        error=f"exit {code}",
                    )
                    self._set("restarting", f"{name} exited ({code}), restarting")
            if self._stopping.wait(backoff):
                return
            backoff = min(self.backoff_max, backoff * 2)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except (OSError, SupervisorError) as exc:
                    self.events.append(
                        EventKind.ERROR, message=f"cannot restart: {exc}", step="supervisor"
                    )

    def _stuck(self) -> tuple[str, int] | None:
        """The SuperNode has reported failed connections for STUCK_RETRY_SECONDS."""
        since = self._unreachable_since
        if since is None or time.monotonic() - since < STUCK_RETRY_SECONDS:
            return None
        self.events.append(
            EventKind.ERROR,
            message=f"the SuperNode kept retrying for {STUCK_RETRY_SECONDS:.0f} s; restarting it",
            step="supervisor",
            error="stuck",
        )
        return "SuperNode", -2

    def _dead(self) -> tuple[str, int] | None:
        for name, proc in (("SuperNode", self._supernode), ("runner", self._runner)):
            if proc is None:
                return name, -1
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def _follow_log(self) -> None:
        """Turn the SuperNode's own log lines into connection states (one event a change)."""
        path = self.run_dir / SUPERNODE_LOG
        try:
            with path.open("rb") as handle:
                handle.seek(self._log_offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._log_offset += end + 1
        for line in chunk[: end + 1].decode("utf-8", "replace").splitlines():
            if match := _NODE_ID.search(line):
                self.state.node_id = int(match.group(1))
                self._set(
                    "connected",
                    f"connected to the coordinator at {self.superlink} "
                    f"(node id {self.state.node_id})",
                    event=True,
                )
            elif match := _RETRYING.search(line):
                wait = float(match.group(1))
                self._set(
                    "unreachable",
                    f"coordinator unreachable, retrying in {wait:.0f} s",
                    event=self.state.state != "unreachable",
                )
            elif _RECOVERED.search(line) and self.state.state == "unreachable":
                self._set("connected", "coordinator reachable again", event=True)
            elif match := _FLOWER_EXIT.search(line):
                self._flower_exit = int(match.group(1))

    def _set(self, state: str, message: str, *, event: bool = False) -> None:
        changed = state != self.state.state
        if changed:
            self._unreachable_since = time.monotonic() if state == "unreachable" else None
        self.state.state = state
        self.state.message = message
        if event and changed:
            kind = CONNECTION_EVENT
            self.events.append(kind, message=message, state=state, node_id=self.state.node_id)
        try:
            _write_state(self.node_dir, self.state)
        except OSError as exc:
            log.warning("cannot record the node's state: %s", exc)
