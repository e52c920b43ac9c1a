"""``retail-coordinator serve``: the coordinator daemon in one process.

Start order, each step needing the one before: configuration (free ports where 0), the
supervised Flower SuperLink (TLS, SuperNode authentication) until its ``/health`` answers, the
Control API client and the services over the database, then recovery (campaigns whose run was
lost in a restart are failed cleanly; enrolled keys the SuperLink lacks are registered), a
maintenance thread, and finally the HTTP API (uvicorn, on a socket bound here so the port it
announces is the port it serves). Only when the API answers is ``run/endpoints.json`` written
and the addresses printed, so whoever waits for either can use the API at once.

SIGTERM or SIGINT stops it in reverse order: uvicorn finishes the requests in flight, the
maintenance thread stops, the SuperLink and everything it started are stopped, the endpoints
file is removed; exit code 0. A signal during start-up stops what was started so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from coordinator.admin_client import RUN_DIR, Endpoints
from coordinator.config import DATABASE_URL_ENV, CoordinatorConfig, free_port, load

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from coordinator.runtime import Coordinator
    from coordinator.superlink import SuperLinkSupervisor

log = logging.getLogger("coordinator.serve")

SUPERLINK_READY_TIMEOUT = 60.0
POLL_SECONDS = 2.0  # campaigns: map finished Flower runs to campaign outcomes
RECONCILE_SECONDS = 30.0  # registrations: admit enrolled keys the SuperLink does not know
RETENTION_SECONDS = 24 * 3600.0  # prune expired aggregates and old audit events
GRACEFUL_SHUTDOWN_SECONDS = 5
FLWR_HOME_DIR = "flwr-home"
LOG_DIR = "logs"
SUPERLINK_LOG = "superlink.log"
LOCK_FILE = "daemon.lock"
# coordinator.progress.DATA_DIR_ENV, spelled out here so that starting the SuperLink does not
# wait for that module's imports (pandas, the federation code); a test keeps the two equal.
DATA_DIR_ENV = "RETAIL_COORDINATOR_DATA_DIR"


class ServeError(Exception):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class Maintenance:
    """The daemon's periodic jobs on one thread; each job's failure is logged and retried at
    its next turn, never fatal (a database hiccup must not stop the API)."""

    jobs: list[tuple[str, float, Callable[[], object]]]
    stop: threading.Event = field(default_factory=threading.Event)
    tick: float = 0.5
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = {name: time.monotonic() + every for name, every, _ in self.jobs}
        while not self.stop.wait(self.tick):
            now = time.monotonic()
            for name, every, job in self.jobs:
                if now < due[name] or self.stop.is_set():
                    continue
                try:
                    job()
                except Exception:
                    log.exception("maintenance job %s failed; it runs again in %.0f s", name, every)
                due[name] = time.monotonic() + every

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def prune_retention(coord: Coordinator) -> None:
    """Delete expired published aggregates and audit events past their retention."""
    from coordinator.db.types import utc_now

    aggregates = coord.aggregates.prune()
    cutoff = utc_now() - timedelta(days=coord.config.audit_retention_days)
    events = coord.audit.prune(cutoff)
    if aggregates or events:
        log.info("retention: pruned %s aggregates and %s audit events", aggregates, events)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: the OS picks one), bound before uvicorn starts so the
    announced port is certainly ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio disables Nagle (TCP_NODELAY) only on sockets whose
    # proto says TCP, and with Nagle on, keep-alive answers wait ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(False)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} for the API: {exc.strerror or exc}"
        ) from None
    return sock


class Daemon:
    """One run of the coordinator daemon over ``data_dir``; ``run()`` returns the exit code.

    ``announce`` receives the API URL and SuperLink address once the API answers (the CLI
    prints them).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        announce: Callable[[str, str], None] | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self._announce = announce
        self._install_signals = install_signal_handlers
        self.stop_requested = threading.Event()
        self._serving = False
        self._server: uvicorn.Server | None = None
        self._supervisor: SuperLinkSupervisor | None = None
        self._coord: Coordinator | None = None
        self._maintenance: Maintenance | None = None
        self._endpoints_written = False
        self._lock_fd: int | None = None
        self.config: CoordinatorConfig | None = None

    # -- signals --------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Ask the daemon to stop (signal handler, or another thread)."""
        self.stop_requested.set()
        server = self._server
        if server is not None:
            server.should_exit = True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stop_requested.is_set():
            log.info("received %s: shutting down", signal.Signals(signum).name)
        self.request_stop()

    # -- the run --------------------------------------------------------------------------

    def run(self) -> int:
        if self._install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        try:
            sock = self._start()
            if sock is None:  # stopped during start-up
                return 0
            asyncio.run(self._serve(sock))
            return 0
        finally:
            self._shutdown()

    def _start(self) -> socket.socket | None:
        # Only the supervisor first: the SuperLink boots (seconds) while the heavy modules
        # below (Flower's CLI internals, SQLAlchemy, alembic, the API) are imported.
        from coordinator.superlink import SuperLinkSupervisor

        config = load(self.data_dir)
        self._refuse_second_daemon()
        sock = bind_socket(config.api_host, config.api_port)
        try:
            config = config.with_ports(
                api_port=sock.getsockname()[1],
                superlink_port=config.superlink_port or free_port(),
            )
            self.config = config
            supervisor = SuperLinkSupervisor(
                config,
                flwr_home=config.data_dir / FLWR_HOME_DIR,
                log_path=config.data_dir / LOG_DIR / SUPERLINK_LOG,
                env={DATA_DIR_ENV: str(config.data_dir), DATABASE_URL_ENV: config.database_url},
            )
            self._supervisor = supervisor
            supervisor.start()
            from coordinator.api import create_app
            from coordinator.api.ops import SUPERLINK_HEALTH_KEY
            from coordinator.campaign_runner import CampaignRunner
            from coordinator.enroll_flow import reconcile_registrations
            from coordinator.flower_control import FlowerControl
            from coordinator.runtime import Coordinator

            if not self.stop_requested.is_set():
                log.info("waiting for the SuperLink on %s", supervisor.address)
            if not self._wait_superlink(supervisor):
                if self.stop_requested.is_set():
                    sock.close()
                    return None
                raise ServeError(
                    f"the SuperLink did not become ready on {supervisor.address} within "
                    f"{SUPERLINK_READY_TIMEOUT:.0f} s; see {supervisor.log_path}"
                )
            control = FlowerControl(supervisor.address, config.ca_cert)
            coord = Coordinator.open(config, control=control, superlink_address=supervisor.address)
            # /readyz asks the supervisor (HTTPS /health) rather than the Control API.
            coord.extra[SUPERLINK_HEALTH_KEY] = supervisor.healthy
            self._coord = coord
            runner = CampaignRunner(coord)
            for campaign in runner.recover():
                log.warning("campaign %s was interrupted by a restart: failed", campaign.id)
            registered = reconcile_registrations(coord)
            if registered:
                log.info("registered %s enrolled node key(s) with the SuperLink", registered)
            self._maintenance = Maintenance(
                jobs=[
                    ("campaigns", POLL_SECONDS, runner.poll),
                    ("registrations", RECONCILE_SECONDS, lambda: reconcile_registrations(coord)),
                    ("retention", RETENTION_SECONDS, lambda: prune_retention(coord)),
                ]
            )
            try:
                prune_retention(coord)
            except Exception:
                log.exception("retention pruning at start-up failed; retried in a day")
            self._maintenance.start()
            self._build_server(create_app(coord, runner))
        except BaseException:
            sock.close()
            raise
        if self.stop_requested.is_set():
            sock.close()
            return None
        return sock

    def _wait_superlink(self, supervisor: SuperLinkSupervisor) -> bool:
        deadline = time.monotonic() + SUPERLINK_READY_TIMEOUT
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if supervisor.healthy():
                return True
            self.stop_requested.wait(0.2)
        return False

    def _build_server(self, app: FastAPI) -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,  # our handlers (coordinator.logging_setup), JSON if asked
                access_log=True,
                server_header=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                lifespan="on",
                # the sans-I/O websockets protocol: the legacy one is deprecated in websockets 14+
                ws="websockets-sansio",
            )
        )

    async def _serve(self, sock: socket.socket) -> None:
        server = self._server
        assert server is not None and self.config is not None  # noqa: S101 - set by _start
        task = asyncio.create_task(server.serve(sockets=[sock]))
        announced = False
        while not task.done():
            if self.stop_requested.is_set():
                server.should_exit = True
            if not announced and server.started:
                announced = True
                self._announce_ready(sock)
            await asyncio.wait({task}, timeout=0.05)
        sock.close()
        with contextlib.suppress(SystemExit):  # uvicorn exits 1 on a failed start: reported
            task.result()
        if not announced and not self.stop_requested.is_set():
            raise ServeError("the HTTP API did not start; see the log above")

    def _announce_ready(self, sock: socket.socket) -> None:
        assert self.config is not None and self._supervisor is not None  # noqa: S101
        host, port = sock.getsockname()[:2]
        host_text = f"[{host}]" if ":" in host else host
        api_url = f"http://{host_text}:{port}"
        endpoints = Endpoints(api_url, self._supervisor.address, os.getpid())
        endpoints.write(self.config.data_dir)
        self._endpoints_written = True
        log.info("API ready on %s, SuperLink on %s", api_url, self._supervisor.address)
        if self._announce is not None:
            self._announce(api_url, self._supervisor.address)

    def _refuse_second_daemon(self) -> None:
        """Hold ``run/daemon.lock`` for the process's lifetime (the kernel drops it when the
        process ends, however it ends): a second daemon on the same directory is refused even
        before the first one has written its endpoints."""
        existing = Endpoints.read(self.data_dir)
        lock_path = self.data_dir / RUN_DIR / LOCK_FILE
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            where = f" (pid {existing.pid}, {existing.api_url})" if existing else ""
            raise ServeError(
                f"another coordinator daemon{where} already serves {self.data_dir}; stop it first"
            ) from None
        self._lock_fd = fd
        if existing is None:
            return
        log.info("removing a stale endpoints file left by pid %s", existing.pid)
        Endpoints.path(self.data_dir).unlink(missing_ok=True)

    def _shutdown(self) -> None:
        """Stop whatever was started, newest first; safe to call after a partial start."""
        if self._maintenance is not None:
            self._maintenance.close()
            self._maintenance = None
        if self._supervisor is not None:
            log.info("stopping the SuperLink")
            self._supervisor.stop()
            self._supervisor = None
        if self._coord is not None:
            self._coord.close()
            self._coord = None
        if self._endpoints_written and self.config is not None:
            existing = Endpoints.read(self.config.data_dir)
            if existing is not None and existing.pid == os.getpid():
                Endpoints.path(self.config.data_dir).unlink(missing_ok=True)
            self._endpoints_written = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
        log.info("coordinator stopped")
