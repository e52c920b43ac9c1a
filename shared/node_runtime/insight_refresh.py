"""After a campaign's last round, the node recomputes its insights by itself.

Why: the owner (or the store manager reading offline) should find fresh pricing, forecasts and
bundles from the new federated model without running anything. The work runs in a child
process (``retail-node insights refresh`` then ``retail-node report``), so the long-lived
runner stays small and a failure there never takes the runner down; it is queued on one worker
thread, so at most one refresh runs per node, off the round's path, at a lower CPU priority
(a refresh starts as soon as this node has the final model, while other nodes may still be
finishing the round). The outcome is an event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from shared.node_runtime.events import EventKind, EventLog
from shared.node_runtime.launch import node_cli_command

log = logging.getLogger(__name__)

REPORT_FILE = "insights-report.html"
REFRESH_TIMEOUT = 1800.0
REFRESH_NICENESS = 10  # below the SuperNode and runner, whose replies others wait for


class InsightRefresher:
    """Queues insight refreshes for one node directory; each ends in one event."""

    def __init__(self, node_dir: Path, *, timeout: float = REFRESH_TIMEOUT) -> None:
        self.node_dir = Path(node_dir)
        self.timeout = timeout
        self.events = EventLog(self.node_dir)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="insight-refresh")
        self._current: subprocess.Popen[bytes] | None = None
        self._closing = threading.Event()

    def submit(self, run_id: int | None, model_round: int | None) -> Future[bool]:
        return self._pool.submit(self._refresh, run_id, model_round)

    def close(self) -> None:
        """Stop now: a refresh in progress is ended (the store keeps its last complete batch)."""
        self._closing.set()
        current = self._current
        if current is not None and current.poll() is None:
            current.terminate()
            try:
                current.wait(10)
            except subprocess.TimeoutExpired:
                current.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _refresh(self, run_id: int | None, model_round: int | None) -> bool:
        started = time.monotonic()
        log_path = self.node_dir / "run" / "insights.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        steps = (
            ["insights", "refresh", "--data-dir", str(self.node_dir)],
            ["report", str(self.node_dir / REPORT_FILE), "--data-dir", str(self.node_dir)],
        )
        for step in steps:
            if self._closing.is_set():
                return False
            code = self._run_step(step, log_path)
            if self._closing.is_set():
                return False
            if code != 0:
                self.events.append(
                    EventKind.ERROR,
                    run_id=run_id,
                    server_round=model_round,
                    message=f"insights could not be refreshed (see {log_path}); run "
                    "`retail-node insights refresh` to try again",
                    step="insights",
                    error=f"exit {code}",
                )
                return False
        self.events.append(
            EventKind.INSIGHTS_REFRESHED,
            run_id=run_id,
            server_round=model_round,
            message="insights recomputed with the new federated model; report written",
            seconds=round(time.monotonic() - started, 2),
            report=str(self.node_dir / REPORT_FILE),
        )
        return True

    def _run_step(self, step: list[str], log_path: Path) -> int:
        with log_path.open("ab") as out:
            try:
                child = subprocess.Popen(  # noqa: S603  # our own interpreter and module
                    node_cli_command(step),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                log.warning("insight refresh could not start: %s", exc)
                return -1
            self._current = child
            _lower_priority(child.pid)
            try:
                return child.wait(self.timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                log.warning("insight refresh took longer than %.0f s; stopped", self.timeout)
                return -1
            finally:
                self._current = None


def _lower_priority(pid: int) -> None:
    """Renice a child from the parent (no ``preexec_fn``: unsafe with the runner's threads)."""
    if hasattr(os, "setpriority"):  # POSIX; Windows keeps the normal priority
        with contextlib.suppress(OSError):  # the child may already have ended
            current = os.getpriority(os.PRIO_PROCESS, pid)
            os.setpriority(os.PRIO_PROCESS, pid, max(current, REFRESH_NICENESS))
