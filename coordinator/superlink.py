"""The coordinator's Flower SuperLink, run as a supervised child process.

``flower-superlink`` (Flower 1.42) serves the Fleet, Control and ServerApp APIs and ``/health``
on one HTTPS port. It starts a ``flower-superexec`` child in a session of its own, which starts
one ``flwr-serverapp`` per run in that session. Both children watch their parent's pid and
exit (SIGINT to themselves) some seconds after it is gone, but a ServerApp in the middle of a
round can outlive a killed SuperLink by many seconds, so the supervisor tracks the whole family
(descendants, their sessions and the ``--parent-pid`` chain Flower passes on) and ends every
member itself: no orphans after stop() or after a crash.

The SuperLink keeps its state (registered node keys, runs) in an SQLite file in the data dir,
so a restart keeps every enrolled node; a run in progress when it dies is lost and must be
resubmitted.

The family's pids are kept in ``DATA_DIR/run/superlink.pids`` while it runs. When the daemon
itself is SIGKILLed nothing stops the SuperLink (its own session; it does not watch its
parent), so ``start()`` first ends whatever that file names that is still a Flower process of
this data directory (its command line names this coordinator's CA file), with the processes
those started since the file was written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from coordinator.config import DATABASE_URL_ENV, CoordinatorConfig, free_port

logger = logging.getLogger(__name__)

SUPERLINK_EXECUTABLE = "flower-superlink"
INITIAL_BACKOFF = 1.0  # seconds before the first restart, doubled after each quick failure
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0  # a SuperLink that ran this long resets the backoff when it dies
_TICK = 0.5  # how often the supervision thread looks at its child
_REFRESH_TICKS = 4  # and every this many ticks at the sessions of its children
_FLOWER_MARKERS = ("flower-", "flwr-")  # console scripts of the SuperLink's process family
PIDS_FILE = Path("run") / "superlink.pids"  # under the data dir: the family, for a restart


@dataclass(frozen=True)
class _Proc:
    pid: int
    ppid: int
    sid: int
    state: str


def _read_proc(pid: int) -> _Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
    rest = raw[raw.rfind(")") + 2 :].split()
    return _Proc(pid=pid, ppid=int(rest[1]), sid=int(rest[3]), state=rest[0])


def _process_table() -> dict[int, _Proc]:
    table: dict[int, _Proc] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (proc := _read_proc(int(entry.name))) is not None:
            table[proc.pid] = proc
    return table


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_flower(args: list[str]) -> bool:
    """A Flower console script (``python .../bin/flwr-serverapp ...`` or the script itself)."""
    return any(Path(part).name.startswith(_FLOWER_MARKERS) for part in args[:2])


def _alive(pid: int) -> bool:
    proc = _read_proc(pid)
    return proc is not None and proc.state not in ("Z", "X")


def _descendants(root: int, table: Mapping[int, _Proc]) -> set[int]:
    members = {root} if root in table else set()
    frontier = set(members)
    while frontier:
        frontier = {p.pid for p in table.values() if p.ppid in frontier} - members
        members |= frontier
    return members


def _family(roots: Iterable[int], sessions: Iterable[int]) -> set[int]:
    """Live processes descending from ``roots`` by parent pid, plus Flower processes in
    ``sessions`` or naming a member in Flower's ``--parent-pid`` argument (found again after
    a crash re-parented them). Flower-only for the last two: a session id outlives its
    leader and a pid could in theory be reused."""
    table = {pid: p for pid, p in _process_table().items() if p.state not in ("Z", "X")}
    own_session = os.getsid(0)
    roots = set(roots)
    sessions = set(sessions)
    members: set[int] = set()
    for root in roots:
        members |= _descendants(root, table)
    args: dict[int, list[str]] = {}
    changed = True
    while changed:
        changed = False
        for proc in table.values():
            if proc.pid in members or proc.sid == own_session:
                continue
            related = proc.ppid in members
            if not related:
                cmd = args.setdefault(proc.pid, _cmdline(proc.pid))
                if not _is_flower(cmd):
                    continue
                related = proc.sid in sessions or proc.sid in members
                if not related and "--parent-pid" in cmd[:-1]:
                    parent = cmd[cmd.index("--parent-pid") + 1]
                    related = parent.isdigit() and int(parent) in members | roots
            if related:
                members.add(proc.pid)
                changed = True
    return members


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        if pid in (os.getpid(), os.getppid()):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    remaining = {pid for pid in pids if _alive(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = {pid for pid in remaining if _alive(pid)}
    return remaining


def _read_pids(path: Path) -> set[int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(pid) for pid in data.get("pids", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def _write_pids(path: Path, pids: Iterable[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pids": sorted(pids)}) + "\n", encoding="utf-8")
    tmp.replace(path)


def find_executable(name: str) -> Path:
    """The console script installed beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH")
    return Path(found).absolute()


CLI_CONNECTION = "coordinator"


def write_cli_config(flwr_home: Path, address: str, ca_cert: Path) -> Path:
    """``FLWR_HOME/config.toml`` naming this SuperLink ``coordinator`` (and the default), so an
    operator can use the stock CLI against it: ``FLWR_HOME=... flwr ls``, ``flwr log RUN``,
    ``flwr supernode list``. The daemon itself does not need it (see flower_control)."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(
        "# Written by the coordinator at every SuperLink start (its port may change).\n"
        f"[superlink]\ndefault = {json.dumps(CLI_CONNECTION)}\n\n"
        f"[superlink.{CLI_CONNECTION}]\n"
        f"address = {json.dumps(address)}\n"
        f"root-certificates = {json.dumps(str(ca_cert))}\n",
        encoding="utf-8",
    )
    return path


class SuperLinkSupervisor:
    """Starts ``flower-superlink`` with TLS, SuperNode authentication and persistent state,
    restarts it with exponential backoff when it dies, and stops its whole process family.

    ``env`` is added to the SuperLink's environment and so reaches the ServerApp processes it
    starts (``RETAIL_COORDINATOR_DATABASE_URL`` is set from the config unless ``env`` gives
    it). ``flwr_home`` is Flower's own state directory (FLWR_HOME), ``log_path`` receives the
    SuperLink's, SuperExec's and every ServerApp's output, appended across restarts.
    """

    def __init__(
        self,
        config: CoordinatorConfig,
        *,
        flwr_home: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        stop_grace: float = 10.0,
    ) -> None:
        self.config = config
        self.flwr_home = Path(flwr_home).absolute()
        self.log_path = Path(log_path).absolute()
        self.stop_grace = stop_grace
        self._extra_env = dict(env or {})
        self._port = config.superlink_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._sessions: set[int] = set()
        self._dead_roots: set[int] = set()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        self._ssl_context: ssl.SSLContext | None = None
        self.pids_path = self.config.data_dir / PIDS_FILE

    # -- public ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the SuperLink has not been started: no port chosen yet")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` for SuperNodes and the Control API (127.0.0.1:PORT by default)."""
        return f"{self.config.superlink_host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The current SuperLink process id (changes at every restart)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the SuperLink and its supervision thread; returns without waiting for it to
        answer (see wait_ready)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the SuperLink supervisor is already started")
            self._check_files()
            self.end_leftovers()
            if self._port == 0:
                self._port = free_port()
            write_cli_config(self.flwr_home, self.address, self.config.ca_cert)
            self._stopping.clear()
            self._spawn()
            self._thread = threading.Thread(
                target=self._supervise, name="superlink-supervisor", daemon=True
            )
            self._thread.start()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once ``/health`` answers 200 over TLS verified against the coordinator's CA."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self.healthy():
                return True
            time.sleep(0.2)
        return False

    def healthy(self) -> bool:
        """One HTTPS GET of ``/health`` (Flower 1.42 answers 200 with an empty body)."""
        if self._port == 0 or self.pid is None:
            return False
        try:
            response = httpx.get(
                f"https://{self.address}/health", verify=self._tls_context(), timeout=2.0
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        """SIGTERM the SuperLink's process group, SIGKILL whatever of its family is left after
        the grace period; nothing it started survives."""
        with self._lock:
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._lock:
            proc = self._proc
            roots = set(self._dead_roots)
            if proc is not None:
                roots.add(proc.pid)
                self._sessions.add(proc.pid)
            family = _family(roots, self._sessions)
            if proc is not None and proc.poll() is None:
                self._killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_grace)
                except subprocess.TimeoutExpired:
                    logger.warning(
                        "SuperLink ignored SIGTERM for %.0f s: killing it", self.stop_grace
                    )
            family |= _family(roots, self._sessions)
            self._terminate(family)
            if proc is not None and proc.poll() is None:
                self._killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self._proc = None
            self._dead_roots.clear()
            self._sessions.clear()
            self.pids_path.unlink(missing_ok=True)

    def end_leftovers(self) -> set[int]:
        """End the Flower processes a previous supervisor of this data dir recorded and did not
        stop (its daemon was SIGKILLed), with the processes they started; returns their pids.
        Only processes whose command line is a Flower console script naming this coordinator's
        CA file are signalled: a recorded pid may have been reused by anything else."""
        recorded = {pid for pid in _read_pids(self.pids_path) if self._ours(pid)}
        if not recorded:
            self.pids_path.unlink(missing_ok=True)
            return set()
        sessions = {proc.sid for pid in recorded if (proc := _read_proc(pid)) is not None}
        leftovers = {pid for pid in _family(recorded, sessions) if self._ours(pid)}
        logger.warning(
            "ending Flower processes left by a previous coordinator run: %s", sorted(leftovers)
        )
        self._terminate(leftovers)
        self.pids_path.unlink(missing_ok=True)
        return leftovers

    def _ours(self, pid: int) -> bool:
        args = _cmdline(pid)
        return _alive(pid) and _is_flower(args) and str(self.config.ca_cert) in args

    def family(self) -> set[int]:
        """Pids of the SuperLink and everything it started that is still alive (for tests
        and diagnostics)."""
        roots = set(self._dead_roots)
        if (pid := self.pid) is not None:
            roots.add(pid)
        return _family(roots, self._sessions)

    # -- internals ------------------------------------------------------------------------

    def _check_files(self) -> None:
        for path in (self.config.ca_cert, self.config.server_cert, self.config.server_key):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: create the coordinator's PKI first")

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=str(self.config.ca_cert))
        return self._ssl_context

    def command(self) -> list[str]:
        """The SuperLink command line (absolute paths: SuperExec gets the CA path as given
        and runs in the same working directory only by accident)."""
        cfg = self.config
        return [
            str(find_executable(SUPERLINK_EXECUTABLE)),
            "--host",
            cfg.superlink_host,
            "--port",
            str(self.port),
            "--ssl-ca-certfile",
            str(cfg.ca_cert),
            "--ssl-certfile",
            str(cfg.server_cert),
            "--ssl-keyfile",
            str(cfg.server_key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--database",
            str(cfg.superlink_database),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[DATABASE_URL_ENV] = self.config.database_url
        env.update(self._extra_env)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in (bin_dir, env.get("PATH", "")) if p)
        env["FLWR_HOME"] = str(self.flwr_home)
        env["FLWR_TELEMETRY_ENABLED"] = "0"
        env["FLWR_DISABLE_UPDATE_CHECK"] = "1"  # a coordinator does not phone home
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen
        return env

    def _spawn(self) -> None:
        command = self.command()
        for directory in (
            self.flwr_home,
            self.log_path.parent,
            self.config.superlink_database.parent,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"--- {stamp} supervisor: starting {' '.join(command)}\n".encode())
            log.flush()
            # Fixed argument list, absolute executable path, no shell: nothing user-typed is
            # interpreted. Its own session, so the SuperLink's group can be signalled whole.
            self._proc = subprocess.Popen(  # noqa: S603
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.config.data_dir,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        self._sessions.add(self._proc.pid)
        self._record_family()
        logger.info("SuperLink started on %s (pid %s)", self.address, self._proc.pid)

    def _supervise(self) -> None:
        backoff = INITIAL_BACKOFF
        ticks = 0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                ticks += 1
                if ticks % _REFRESH_TICKS == 1:
                    # Remember the sessions of the SuperLink's children while it is alive: a
                    # SuperExec is found again through them after a crash re-parents it.
                    self._remember_sessions(proc.pid)
                self._stopping.wait(_TICK)
                continue
            uptime = time.monotonic() - self._started_at
            logger.warning(
                "SuperLink (pid %s) exited with %s after %.0f s", proc.pid, proc.returncode, uptime
            )
            with self._lock:
                if self._stopping.is_set():
                    return
                self._dead_roots.add(proc.pid)
                self._terminate(_family(self._dead_roots, self._sessions))
            if uptime >= STABLE_SECONDS:
                backoff = INITIAL_BACKOFF
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    logger.error("SuperLink restart failed: %s", exc)
                    self._started_at = time.monotonic()  # a failed start is not a stable run
                    continue
                self._dead_roots.clear()
                self.restarts += 1

    def _remember_sessions(self, root: int) -> None:
        table = _process_table()
        self._sessions |= {table[pid].sid for pid in _descendants(root, table)}
        self._record_family()

    def _record_family(self) -> None:
        """Write the family's pids for a restarted daemon (see end_leftovers); best effort."""
        try:
            _write_pids(self.pids_path, self.family())
        except OSError as exc:
            logger.warning("cannot record the SuperLink's pids in %s: %s", self.pids_path, exc)

    @staticmethod
    def _killpg(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _terminate(self, pids: set[int]) -> None:
        """SIGTERM, then SIGKILL what is left after a short grace (children of a dead or
        stopping SuperLink have nothing left to finish)."""
        if not pids:
            return
        _signal_all(pids, signal.SIGTERM)
        left = _wait_gone(pids, min(self.stop_grace, 5.0))
        if left:
            logger.warning("killing SuperLink processes that ignored SIGTERM: %s", sorted(left))
            _signal_all(left, signal.SIGKILL)
            _wait_gone(left, 2.0)
