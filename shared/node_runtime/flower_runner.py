"""The node's long-lived, trusted ClientApp runner for a SuperNode started with ``--isolation
process``: the node runs only the ClientApp installed with this package, never code from a FAB.

Why: in Flower's deployment engine a SuperNode by default hands each message to
``flower-superexec``, which starts ``flwr-clientapp``, which unpacks the run's FAB and imports
the ClientApp named in it, i.e. code chosen by whoever submitted the run, next to the
retailer's rows. With ``--isolation process`` the SuperNode starts no SuperExec; it only queues
tasks on its local runtime API. This runner claims them instead and, per task:

1. pulls the message, context, run and FAB (Flower's own pull helper);
2. decides with :mod:`shared.node_runtime.trust` (FAB bytes against the run's hash, then the
   allow-list of trusted releases, then app id/version/ClientApp in the FAB's pyproject). An
   untrusted run gets an error reply ("untrusted app: ...") and a ``run_refused`` event; nothing
   from its FAB is unpacked, imported or executed;
3. for a trusted run calls ``shared.federation.client_app.app`` (imported once, at start, from
   the installed package, with its ``secaggplus_mod``) and pushes the reply and the context.

A task that raises gets an error reply naming only the exception type (details stay in the
local event stream) and the runner goes on with the next task. One task at a time.

It sends its own task heartbeats: Flower's ``HeartbeatSender`` SIGINTs its process when the
SuperNode rejects a heartbeat and Flower's HTTP retry helper does the same on a 401, which
would kill a long-lived runner; here a rejected heartbeat only marks the task as lost.

``AcquireTask`` is signed with the SuperExec shared secret when one is given
(``flower-supernode --superexec-auth-secret-file F`` and ``--superexec-auth-secret-file F``
here, both reading the same raw bytes; experimental in Flower 1.42): without it any local
process could claim the node's tasks. In 1.42 the secret protects only ``AcquireTask``; every
later call is authorised by the random task token the claim returned. The runtime API is plain
HTTP, so this runner only talks to a loopback address.

This is the one module that touches Flower internals (flwr pinned to 1.42.0; a test runs it
against real SuperLink and SuperNode processes). It depends on:

- ``flwr.supercore.runtime.RuntimeHttpClient`` (runtime API client) and
  ``flwr.proto.runtime_pb2`` (``AcquireTaskRequest``, ``SendTaskHeartbeatRequest``);
- ``flwr.supercore.interceptors`` (``RuntimeTokenHttpInterceptor``,
  ``RuntimeVersionHttpInterceptor``, ``SuperExecAuthHttpInterceptor``);
- ``flwr.supercore.retry`` (``RetryInvoker``, ``exponential``);
- ``flwr.supercore.constant.TaskType``; ``flwr.common.constant`` (``ErrorCode``,
  ``SubStatus``, ``MessageTypeLegacy``);
- ``flwr.supernode.runtime.run_clientapp`` (``pull_task_input``, ``push_message``,
  ``push_task_output``): what ``flwr-clientapp`` itself uses, minus installing and importing
  the FAB;
- ``flwr.compat.common.recorddict_compat`` and
  ``flwr.common.secure_aggregation.secaggplus_constants`` (to read the participation
  query/answer and the SecAgg+ stage for the event stream);
- ``flwr.cli.build.build_fab_from_disk`` (the installed campaign app's FAB, built exactly as
  ``coordinator.flower_control.build_fab`` builds the FAB the coordinator submits).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx
from flwr.app import Context, Error, Message, MessageType
from flwr.cli.build import build_fab_from_disk
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode, MessageTypeLegacy, SubStatus
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.proto.runtime_pb2 import AcquireTaskRequest, SendTaskHeartbeatRequest
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.protobuf.client import ProtobufClientInterceptor
from flwr.supercore.retry import RetryInvoker, exponential
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.version import package_version
from flwr.supernode.runtime.run_clientapp import (
    pull_task_input,
    push_message,
    push_task_output,
)

from shared.federation.object_pulls import quicken_object_pulls
from shared.node_runtime.events import EventKind, EventLog
from shared.node_runtime.insight_refresh import InsightRefresher
from shared.node_runtime.launch import NODE_OBJECT_PULLS
from shared.node_runtime.ledger_report import LedgerReporter, SpendReport
from shared.node_runtime.trust import (
    PINNED,
    AllowList,
    RunClaim,
    TrustDecision,
    TrustedRelease,
    release_from_fab,
)

log = logging.getLogger(__name__)

FLWR_VERSION = "1.42.0"  # the Flower this module was written and tested against
CAMPAIGN_APP_PACKAGE = "coordinator"  # the campaign app ships as coordinator/flower_app
CAMPAIGN_APP_SUBDIR = "flower_app"
ACQUIRE_TASK_METHOD = "/flwr.proto.Runtime/AcquireTask"
COMPONENT_NAME = "flwr-clientapp"  # how the runner introduces itself to the runtime API

DEFAULT_POLL_INTERVAL = 0.5  # seconds between AcquireTask calls when idle
HEARTBEAT_INTERVAL = 15.0  # a claim expires 60 s after the last heartbeat (Flower 1.42)
HEARTBEAT_RETRY = 2.0
TASK_CALL_MAX_SECONDS = 30.0  # retries of one runtime call before the task is given up
MAX_BACKOFF = 10.0
REPLY_REASON_CHARS = 300
LOCK_FILE = "runner.lock"

EXIT_OK = 0
EXIT_CONFIG = 3  # no trusted release, bad node dir, secret rejected, non-loopback address


class RunnerConfigError(RuntimeError):
    """The runner cannot serve: the message says what to fix."""


class NodeLock:
    """One runner per node directory: an exclusive advisory lock on ``runner.lock``, which
    holds the runner's pid while it lives (POSIX ``flock``; released when the process dies)."""

    def __init__(self, node_dir: Path) -> None:
        self.path = Path(node_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - the node runtime is POSIX-only for now
            return
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunnerConfigError(
                f"another runner (pid {holder}) already serves {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def runner_pid(node_dir: Path) -> int | None:
    """The pid of the runner serving ``node_dir``, or None if none holds its lock."""
    if sys.platform == "win32":  # pragma: no cover
        return None
    import fcntl

    path = Path(node_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    else:
        return None  # nobody holds it: a runner that stopped or died
    finally:
        os.close(fd)


# -- the trusted app and the allow-list ------------------------------------------------------


def load_trusted_app() -> ClientApp:
    """The ClientApp installed with this package, imported once; never one from a FAB."""
    import shared
    from shared.federation import client_app as module

    package_dir = Path(shared.__file__).resolve().parent
    module_file = Path(str(module.__file__)).resolve()
    if package_dir not in module_file.parents:
        raise RunnerConfigError(
            f"{module.__name__} was imported from {module_file}, not {package_dir}"
        )
    return module.app


def installed_campaign_app() -> Path | None:
    """``coordinator/flower_app`` of this installation, found without importing it."""
    spec = importlib.util.find_spec(CAMPAIGN_APP_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        app_dir = Path(location) / CAMPAIGN_APP_SUBDIR
        if (app_dir / "pyproject.toml").is_file():
            return app_dir
    return None


def build_release(app_dir: Path, note: str = "") -> TrustedRelease:
    """The allow-list entry of an app directory, its FAB built as the coordinator builds it."""
    return release_from_fab(build_fab_from_disk(Path(app_dir)), note=note or str(app_dir))


def default_allow_list(extra: Path | None = None) -> AllowList:
    """The installed campaign app's release, the pinned ones and those in ``extra``."""
    allowed = PINNED
    app_dir = installed_campaign_app()
    if app_dir is not None:
        try:
            allowed = allowed + AllowList((build_release(app_dir, "installed campaign app"),))
        except (OSError, ValueError) as exc:
            raise RunnerConfigError(f"cannot build the installed campaign app: {exc}") from None
    if extra is not None:
        try:
            allowed = allowed + AllowList.load(extra)
        except (OSError, ValueError) as exc:
            raise RunnerConfigError(f"cannot read the allow-list {extra}: {exc}") from None
    if not allowed.releases:
        raise RunnerConfigError(
            "no trusted app release: the campaign app is not installed and no allow-list given"
        )
    return allowed


# -- talking to the SuperNode ----------------------------------------------------------------


def _check_loopback(address: str) -> None:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        raise RunnerConfigError(f"runtime address {address!r} is not HOST:PORT")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RunnerConfigError(
            f"runtime address {address!r} is not on this machine: the runtime API is plain "
            "HTTP and carries task tokens, so the runner only connects to a loopback address"
        )


def _give_up(exc: Exception) -> bool:
    """Retry transport errors and 502/503/504; anything else (401, 403, 4xx) is final."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code not in (502, 503, 504)
    return False


def _retry_invoker(max_time: float) -> RetryInvoker:
    """Bounded retries that never signal the process (Flower's own SIGINTs it on a 401)."""
    return RetryInvoker(
        wait_gen_factory=lambda: exponential(base_delay=0.2, max_delay=5),
        recoverable_exceptions=(httpx.TransportError, httpx.HTTPStatusError),
        max_tries=None,
        max_time=max_time,
        should_giveup=_give_up,
    )


def _client(
    address: str,
    interceptors: Sequence[ProtobufClientInterceptor],
    *,
    timeout: float = 30.0,
    retry: RetryInvoker | None = None,
) -> RuntimeHttpClient:
    return RuntimeHttpClient(
        f"http://{address}", interceptors=interceptors, timeout=timeout, retry_invoker=retry
    )


class TaskHeartbeat:
    """Keeps one claimed task alive; a rejected heartbeat sets ``lost`` and stops, no signal."""

    def __init__(
        self,
        send: Callable[[], bool],
        interval: float = HEARTBEAT_INTERVAL,
        retry_after: float = HEARTBEAT_RETRY,
    ) -> None:
        self._send = send
        self.interval = interval
        self.retry_after = retry_after
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                accepted = self._send()
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code in (502, 503, 504):
                    wait = self.retry_after
                    continue
                log.warning("task heartbeat refused (HTTP %s)", exc.response.status_code)
                accepted = False
            except httpx.HTTPError as exc:
                log.warning("task heartbeat not delivered (%s): retrying", exc)
                wait = self.retry_after
                continue
            if not accepted:
                log.warning("the SuperNode no longer holds this task's claim")
                self.lost.set()
                return
            wait = self.interval


class TaskIO(Protocol):
    """One claimed task's conversation with the SuperNode (Flower's runtime API in production)."""

    lost: threading.Event

    def pull(self) -> tuple[Message, Context, Run, Fab]: ...

    def push_reply(self, reply: Message, context: Context) -> None: ...

    def finish(self, context: Context | None, sub_status: str, details: str) -> None: ...

    def close(self) -> None: ...


class FlowerTaskIO:
    """A claimed task over the runtime API: token-authorised calls plus our own heartbeat."""

    def __init__(self, address: str, token: str) -> None:
        interceptors: list[ProtobufClientInterceptor] = [
            RuntimeVersionHttpInterceptor(component_name=COMPONENT_NAME),
            RuntimeTokenHttpInterceptor(token),
        ]
        self._client = _client(address, interceptors, retry=_retry_invoker(TASK_CALL_MAX_SECONDS))
        self._beat_client = _client(address, interceptors, timeout=5.0)
        self._heartbeat = TaskHeartbeat(self._beat)
        self.lost = self._heartbeat.lost
        self._heartbeat.start()

    def _beat(self) -> bool:
        return bool(self._beat_client.SendTaskHeartbeat(SendTaskHeartbeatRequest()).success)

    def pull(self) -> tuple[Message, Context, Run, Fab]:
        return pull_task_input(self._client)

    def push_reply(self, reply: Message, context: Context) -> None:
        push_message(self._client, reply, context)

    def finish(self, context: Context | None, sub_status: str, details: str) -> None:
        push_task_output(self._client, context, sub_status, details)

    def close(self) -> None:
        self._heartbeat.stop()
        self._client.close()
        self._beat_client.close()


# -- the runner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """How one task ended: "completed", "refused", "failed" or "unreadable"."""

    outcome: str
    run_id: int | None = None
    detail: str = ""


@dataclass
class _Observation:
    """What the runner saw of one message, for the event stream."""

    run_id: int
    kind: str
    server_round: int | None
    stage: str = "train"
    secagg_stage: str = ""
    spent_before: float | None = None
    campaign_id: int | None = None  # the coordinator's campaign (run config), for its mirror
    final_round: int | None = None  # the run's last round: its model triggers new insights
    started: float = field(default_factory=time.monotonic)


def _round_from_group(group_id: str) -> int | None:
    tail = group_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _split(started: float, marks: dict[str, float]) -> str:
    """``pull 0.05, trust 0.01, app 3.20, reply 0.04``: each step's share of a task's time."""
    parts, last = [], started
    for step, at in marks.items():
        parts.append(f"{step} {at - last:.2f}")
        last = at
    return ", ".join(parts)


def _short_reason(exc: BaseException) -> str:
    """What leaves the node about a failure: the exception type, or a node's own refusal."""
    from shared.federation.node import RefusedRound

    if isinstance(exc, RefusedRound):
        return f"refused: {exc}"[:REPLY_REASON_CHARS]
    return f"ClientApp raised {type(exc).__name__}"


class TrustedClientAppRunner:
    """Claims the SuperNode's ClientApp tasks and serves trusted runs with the installed app."""

    def __init__(
        self,
        runtime_address: str,
        node_dir: Path,
        allow_list: AllowList,
        *,
        superexec_secret: bytes | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        app: ClientApp | None = None,
        events: EventLog | None = None,
    ) -> None:
        _check_loopback(runtime_address)
        self.runtime_address = runtime_address
        self.node_dir = Path(node_dir).resolve()
        if not self.node_dir.is_dir():
            raise RunnerConfigError(f"node directory {self.node_dir} does not exist")
        self.allow_list = allow_list
        self.poll_interval = poll_interval
        self.app = app if app is not None else load_trusted_app()
        self.events = events or EventLog(self.node_dir)
        self.ledger_reporter = LedgerReporter(self.node_dir)
        self.insight_refresher = InsightRefresher(self.node_dir)
        self.tasks = 0
        self._refused_runs: set[int] = set()
        interceptors: list[ProtobufClientInterceptor] = [
            RuntimeVersionHttpInterceptor(component_name=COMPONENT_NAME)
        ]
        if superexec_secret:
            interceptors.append(
                SuperExecAuthHttpInterceptor(
                    master_secret=superexec_secret, protected_methods={ACQUIRE_TASK_METHOD}
                )
            )
        self._acquire_client = _client(runtime_address, interceptors, timeout=10.0)

    # -- loop ------------------------------------------------------------------------------

    def serve(self, stop: threading.Event, max_tasks: int | None = None) -> None:
        """Claim and handle tasks until ``stop`` is set (or ``max_tasks`` were handled)."""
        self._event(
            EventKind.RUNNER_STARTED,
            message="serving trusted runs only",
            pid=os.getpid(),
            flwr=package_version,
            releases=", ".join(f"{r.app_id} {r.version}" for r in self.allow_list.releases),
        )
        failures = 0
        try:
            while not stop.is_set() and (max_tasks is None or self.tasks < max_tasks):
                try:
                    token = self.acquire()
                except httpx.HTTPError as exc:
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    if status == httpx.codes.UNAUTHORIZED:
                        raise RunnerConfigError(
                            "the SuperNode rejected this runner's claim: start both with the "
                            "same --superexec-auth-secret-file"
                        ) from None
                    if failures == 0:
                        log.warning("SuperNode runtime API at %s: %s", self.runtime_address, exc)
                    failures += 1
                    stop.wait(min(self.poll_interval * 2**failures, MAX_BACKOFF))
                    continue
                if failures:
                    log.info("SuperNode runtime API reachable again")
                    failures = 0
                if token is None:
                    stop.wait(self.poll_interval)
                    continue
                self.handle(self.open_task(token))
        finally:
            self._event(
                EventKind.RUNNER_STOPPED,
                message="runner stopped",
                pid=os.getpid(),
                tasks=self.tasks,
            )
            self._acquire_client.close()
            self.ledger_reporter.close()
            self.insight_refresher.close()

    def acquire(self) -> str | None:
        """Claim the oldest pending ClientApp task; its token, or None when there is none."""
        response = self._acquire_client.AcquireTask(
            AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        )
        if response.HasField("task") and response.token:
            return str(response.token)
        return None

    def open_task(self, token: str) -> TaskIO:
        return FlowerTaskIO(self.runtime_address, token)

    # -- one task --------------------------------------------------------------------------

    def handle(self, task: TaskIO) -> TaskResult:
        """Pull, decide, run or refuse, reply; never raises (a failure is an error reply)."""
        self.tasks += 1
        message: Message | None = None
        context: Context | None = None
        reply: Message | None = None
        sub_status, details = SubStatus.FAILED, "task failed"
        result = TaskResult("failed")
        started = time.monotonic()
        marks: dict[str, float] = {}  # where a slow task spent its time, for the log
        try:
            try:
                message, context, run, fab = task.pull()
                marks["pull"] = time.monotonic()
            except Exception as exc:
                log.exception("could not read a claimed task")
                self._event(
                    EventKind.ERROR,
                    message=f"could not read a task from the SuperNode: {exc}",
                    step="pull",
                    error=type(exc).__name__,
                )
                return TaskResult("unreadable", detail=str(exc))
            try:
                decision = self.allow_list.decide(
                    fab.content, RunClaim(run.fab_hash, run.fab_id, run.fab_version)
                )
            except Exception as exc:  # a fault in checking refuses; it never serves
                log.exception("could not check the FAB of run %s", run.run_id)
                decision = TrustDecision(False, f"the FAB could not be checked ({exc!r})")
            marks["trust"] = time.monotonic()
            if not decision.trusted:
                self._refused(run, decision.reason, decision.facts)
                details = f"untrusted app: {decision.reason}"
                reply = Message(Error(code=ErrorCode.INVALID_FAB, reason=details), reply_to=message)
                result = TaskResult("refused", run.run_id, decision.reason)
                return result
            reply, result = self._execute(message, context, run)
            marks["app"] = time.monotonic()
            if result.outcome == "completed":
                sub_status, details = SubStatus.COMPLETED, ""
            else:
                details = result.detail
            return result
        finally:
            self._finish(task, message, context, reply, sub_status, details)
            marks["reply"] = time.monotonic()
            log.info(
                "task %s: run %s %s %s: %s in %.2f s (%s)",
                self.tasks,
                message.metadata.run_id if message else "?",
                message.metadata.message_type if message else "?",
                message.metadata.group_id if message else "",
                sub_status if reply is None or not reply.has_error() else details[:80],
                time.monotonic() - started,
                _split(started, marks),
            )

    def _execute(self, message: Message, context: Context, run: Run) -> tuple[Message, TaskResult]:
        seen = self._observe(message)
        campaign = context.run_config.get("campaign-id")
        seen.campaign_id = campaign if isinstance(campaign, int) else None
        rounds = context.run_config.get("rounds")
        seen.final_round = rounds if isinstance(rounds, int) else None
        try:
            self._check_node_dir(context)
            reply = self.app(message=message, context=context)
        except Exception as exc:
            log.exception("the ClientApp failed on a %s message", seen.kind)
            self._event(
                EventKind.ERROR,
                run_id=run.run_id,
                server_round=seen.server_round,
                message=f"{type(exc).__name__}: {exc}",
                step=seen.secagg_stage or seen.kind,
                error=type(exc).__name__,
            )
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            reason = _short_reason(exc)
            return Message(Error(code=code, reason=reason), reply_to=message), TaskResult(
                "failed", run.run_id, reason
            )
        try:
            self._record(seen, reply)
        except Exception:  # the event stream must never fail a round already computed
            log.exception("could not record the events of a %s message", seen.kind)
        return reply, TaskResult("completed", run.run_id)

    def _finish(
        self,
        task: TaskIO,
        message: Message | None,
        context: Context | None,
        reply: Message | None,
        sub_status: str,
        details: str,
    ) -> None:
        try:
            if task.lost.is_set():
                log.warning("task claim lost while it ran: its reply is dropped")
            elif reply is not None and context is not None and message is not None:
                try:
                    task.push_reply(reply, context)
                except Exception as exc:
                    log.exception("could not push the reply")
                    self._event(
                        EventKind.ERROR,
                        run_id=message.metadata.run_id,
                        message=f"could not send the reply to the SuperNode: {exc}",
                        step="push",
                        error=type(exc).__name__,
                    )
                    sub_status, details = SubStatus.FAILED, "reply not delivered"
            if not task.lost.is_set():
                task.finish(context, sub_status, details)
        except Exception:
            log.exception("could not finish the task")
        finally:
            task.close()

    # -- trust and observation -------------------------------------------------------------

    def _event(self, kind: EventKind, **fields: Any) -> None:
        """Append to the event stream; a full disk must not stop the node from answering."""
        try:
            self.events.append(kind, **fields)
        except OSError:
            log.exception("could not append a %s event to %s", kind, self.events.path)

    def _refused(self, run: Run, reason: str, facts: object) -> None:
        log.warning("refused run %s: %s", run.run_id, reason)
        if run.run_id in self._refused_runs:
            return  # one event per run, however many messages it sends
        self._refused_runs.add(run.run_id)
        content = getattr(facts, "content_sha256", "")
        self._event(
            EventKind.RUN_REFUSED,
            run_id=run.run_id,
            message=reason,
            fab_hash=run.fab_hash,
            app_id=run.fab_id,
            version=run.fab_version,
            content_sha256=content,
        )

    def _check_node_dir(self, context: Context) -> None:
        """The ClientApp reads ``data-path``; it must be the directory this runner reports on."""
        configured = context.node_config.get("data-path")
        if configured is None:
            context.node_config["data-path"] = str(self.node_dir)
            return
        if Path(str(configured)).resolve() != self.node_dir:
            raise RunnerConfigError(
                f"the SuperNode's data-path {configured} is not this runner's node dir "
                f"{self.node_dir}"
            )

    def _observe(self, message: Message) -> _Observation:
        meta = message.metadata
        seen = _Observation(meta.run_id, meta.message_type, _round_from_group(meta.group_id))
        try:
            if meta.message_type == MessageTypeLegacy.GET_PROPERTIES:
                config = compat.recorddict_to_getpropertiesins(message.content).config
                seen.stage = str(config.get("stage", "train"))
                if isinstance(config.get("server-round"), int):
                    seen.server_round = int(config["server-round"])
                self._event(
                    EventKind.ROUND_STARTED,
                    run_id=seen.run_id,
                    server_round=seen.server_round,
                    message=f"participation query ({seen.stage})",
                    stage=seen.stage,
                )
            elif meta.message_type == MessageType.TRAIN:
                configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
                seen.secagg_stage = str(configs.get("stage", "")) if configs else ""
                fit_config = message.content.config_records.get("fitins.config")
                if fit_config is not None:
                    seen.stage = str(fit_config.get("stage", "train"))
                if seen.secagg_stage == Stage.COLLECT_MASKED_VECTORS:
                    spent = self._read_ledger()
                    seen.spent_before = spent[0] if spent else None
        except Exception:  # observation is best effort; the ClientApp validates the message
            log.exception("could not read a %s message for the event stream", meta.message_type)
        return seen

    def _record(self, seen: _Observation, reply: Message) -> None:
        common = {"run_id": seen.run_id, "server_round": seen.server_round}
        if not reply.has_content():
            return
        if seen.kind == MessageTypeLegacy.GET_PROPERTIES:
            answer = compat.recorddict_to_getpropertiesres(reply.content).properties
            if bool(answer.get("accept")):
                self._event(
                    EventKind.JOINED,
                    **common,
                    message=str(answer.get("reason", "joins")),
                    stage=seen.stage,
                    epsilon_after=answer.get("epsilon_after"),
                    epsilon_cap=answer.get("epsilon_cap"),
                )
            else:
                self._event(
                    EventKind.DECLINED,
                    **common,
                    message=str(answer.get("reason", "declined")),
                    stage=seen.stage,
                )
        elif seen.kind == MessageType.TRAIN and seen.secagg_stage == Stage.COLLECT_MASKED_VECTORS:
            seconds = round(time.monotonic() - seen.started, 3)
            self._event(
                EventKind.TRAINED,
                **common,
                message=f"update released through SecAgg+ ({seen.stage})",
                stage=seen.stage,
                seconds=seconds,
            )
            after = self._read_ledger()
            if after is not None and seen.spent_before is not None:
                spent, cap = after
                if spent > seen.spent_before + 1e-12:
                    self._event(
                        EventKind.EPSILON_CHARGED,
                        **common,
                        message=f"ε {seen.spent_before:.3f} → {spent:.3f} of {cap:.2f}",
                        epsilon=spent - seen.spent_before,
                        spent=spent,
                        cap=cap,
                    )
                    if seen.campaign_id is not None and seen.server_round is not None:
                        self.ledger_reporter.submit(
                            SpendReport(seen.campaign_id, seen.server_round, spent, cap)
                        )
        elif seen.kind == MessageType.EVALUATE:
            result = compat.recorddict_to_evaluateres(reply.content)
            self._event(
                EventKind.MODEL_RECEIVED,
                **common,
                message="global model received and evaluated on local holdout",
                loss=float(result.loss),
                examples=int(result.num_examples),
            )
            if seen.server_round is not None and seen.server_round == seen.final_round:
                self.insight_refresher.submit(seen.run_id, seen.server_round)

    def _read_ledger(self) -> tuple[float, float] | None:
        """(spent, cap) from the node's ledger, the authority; None if it has none."""
        from shared.privacy import LEDGER_FILENAME, PrivacyLedger

        if not (self.node_dir / LEDGER_FILENAME).is_file():
            return None
        with PrivacyLedger.in_data_dir(self.node_dir) as ledger:
            status = ledger.status()
        return status.spent_epsilon, status.total_epsilon


# -- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.node_runtime.flower_runner",
        description="Serve a SuperNode's ClientApp tasks with the installed, trusted ClientApp "
        "(flower-supernode --isolation process). Exit codes: 0 stopped, 2 usage, "
        f"{EXIT_CONFIG} configuration (message on stderr).",
    )
    parser.add_argument("--runtime-address", help="the SuperNode's runtime API, 127.0.0.1:PORT")
    parser.add_argument("--node-dir", type=Path, help="the node directory (its data-path)")
    parser.add_argument(
        "--superexec-auth-secret-file",
        type=Path,
        help="the file given to flower-supernode --superexec-auth-secret-file (raw bytes)",
    )
    parser.add_argument(
        "--allow-list", type=Path, help="JSON file of further trusted releases (see trust.py)"
    )
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    parser.add_argument(
        "--print-release",
        nargs="?",
        const="",
        metavar="APP_DIR",
        help="print the allow-list entry of APP_DIR (default: the installed campaign app), exit",
    )
    return parser


def _print_release(app_dir: str) -> int:
    directory = Path(app_dir) if app_dir else installed_campaign_app()
    if directory is None:
        print("the campaign app is not installed: give APP_DIR", file=sys.stderr)
        return EXIT_CONFIG
    release = build_release(
        directory.resolve(), note=f"{directory.name} built with flwr {FLWR_VERSION}"
    )
    print(AllowList((release,)).dumps())
    return EXIT_OK


def _install_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish the task in hand, then stop. Second: stop now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        log.info("signal %s: stopping after the current task", signum)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def warm_up(node_dir: Path) -> threading.Thread:
    """Load torch, Opacus and the node's prepared data on a thread while the runner waits.

    Why: the first task of a campaign otherwise pays for it (about 7 s alone, over 20 s with
    five nodes on two cores) while every other node waits for the slowest. A failure here is
    only logged: the first task loads again and reports the problem as usual.
    """

    def load() -> None:
        from shared.federation.client_app import runtime_for

        started = time.monotonic()
        try:
            import opacus.optimizers  # noqa: F401  # DP-SGD, imported by the first training

            runtime_for(node_dir)
        except Exception as exc:  # e.g. no prepared data yet: the task will say so
            log.info("warm-up skipped: %s", exc)
            return
        log.info("warmed up in %.1f s (model, data and DP-SGD loaded)", time.monotonic() - started)

    thread = threading.Thread(target=load, name="warm-up", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per runtime call otherwise
    if args.print_release is not None:
        return _print_release(args.print_release)
    if not args.runtime_address or args.node_dir is None:
        _parser().error("--runtime-address and --node-dir are required")
    if package_version != FLWR_VERSION:
        log.warning(
            "flwr %s installed; this runner was tested with %s", package_version, FLWR_VERSION
        )
    lock = NodeLock(args.node_dir)
    try:
        lock.acquire()
        secret = None
        if args.superexec_auth_secret_file is not None:
            secret = args.superexec_auth_secret_file.read_bytes()
            if not secret:
                raise RunnerConfigError(f"{args.superexec_auth_secret_file} is empty")
        allow_list = default_allow_list(args.allow_list)
        runner = TrustedClientAppRunner(
            args.runtime_address,
            args.node_dir,
            allow_list,
            superexec_secret=secret,
            poll_interval=args.poll_interval,
        )
        for release in allow_list.releases:
            log.info(
                "trusting %s %s (content %s, fab %s)",
                release.app_id,
                release.version,
                release.content_sha256[:12],
                release.fab_sha256[:12],
            )
        stop = threading.Event()
        _install_signals(stop)
        quicken_object_pulls(NODE_OBJECT_PULLS)  # Flower waits 1-2-4 s for late content
        warm_up(args.node_dir)
        runner.serve(stop)
    except (RunnerConfigError, OSError) as exc:
        print(f"flower_runner: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        lock.release()
    return EXIT_OK


__all__ = [
    "FLWR_VERSION",
    "FlowerTaskIO",
    "NodeLock",
    "RunnerConfigError",
    "TaskHeartbeat",
    "TaskIO",
    "TaskResult",
    "TrustedClientAppRunner",
    "build_release",
    "default_allow_list",
    "installed_campaign_app",
    "load_trusted_app",
    "main",
    "runner_pid",
    "warm_up",
]

if __name__ == "__main__":
    sys.exit(main())
