"""The demo federation's life, step by step, on real processes on loopback.

Each step is what a person would do, done by the same commands: ``retail-coordinator init`` and
``serve``; an admin's enrollment token per retailer; ``retail-node enroll`` and ``retail-node
join`` per retailer (the node runtime: a supervised SuperNode with TLS and its enrolled key,
and the app's own trusted runner); a campaign started over the admin API; then ``retail-node
insights refresh`` and ``retail-node report`` on every node, started by each node's runner
after the last round. Children are started with this
interpreter (``python -m ...``), so the demo works without an activated virtualenv.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from coordinator.admin_client import AdminClient, AdminClientError, Endpoints
from coordinator.demo.children import COORDINATOR, Child, ChildProcesses, end_leftovers
from coordinator.demo.summary import DemoSummary, NodeOutcome, summarise
from shared.node_runtime.insight_refresh import REPORT_FILE

MARKER = ".retail-demo"
DEMO_TASKS = ("demand_pricing", "forecasting", "bundles")
START_TIMEOUT = 90.0
CONNECT_TIMEOUT = 120.0
ROUND_TIMEOUT = 240.0  # one round of 5 shops, statistics included, on a loaded 2-core machine
STEP_TIMEOUT = 300.0
STRAGGLER_GRACE = 90.0  # after the last node's refresh, how long to wait for the others

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo could not go on; the message says what failed and where its logs are."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    retailers: int = 5
    rounds: int = 3
    epsilon: float = 3.0
    seed: int = 7
    scale: float = 0.5  # synthetic history size: enough for insights, quick to train
    tasks: tuple[str, ...] = DEMO_TASKS
    parallel: int = 2  # concurrent enrollments (2 cores)

    def validate(self) -> None:
        if self.retailers < 5:
            raise DemoError("--retailers must be at least 5: secure aggregation needs 5 shops")
        if self.rounds < 1:
            raise DemoError("--rounds must be at least 1")
        if self.epsilon <= 0:
            raise DemoError("--epsilon must be positive")


@dataclass
class DemoNode:
    name: str
    directory: Path
    export: Path
    join: Child | None = None
    enrollment: dict[str, Any] = field(default_factory=dict)


def shared_machine_env(retailers: int) -> dict[str, str]:
    """Torch/OpenMP threads per process when every shop runs on this one machine.

    Why: each node process would start one compute thread per core; five nodes on two cores
    then spin against each other. Measured here, five concurrent insight refreshes took 61.7 s
    with the default and 36.7 s with one thread each. A value the user set is kept.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, retailers)))}


def _python(module: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def _run_json(argv: Sequence[str], what: str, timeout: float = STEP_TIMEOUT) -> Any:
    """Run one of our CLIs with ``--json``; its JSON answer, or a DemoError naming ``what``."""
    done = subprocess.run(  # noqa: S603  # this interpreter, our own modules
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    if done.returncode != 0 or data is None:
        detail = data.get("error") if isinstance(data, dict) else None
        raise DemoError(f"{what} failed: {detail or (done.stderr or done.stdout).strip()[-800:]}")
    return data


class DemoFederation:
    """Runs one demo in ``options.workdir``; :meth:`run` always stops every process it began."""

    def __init__(self, options: DemoOptions, progress: Progress) -> None:
        self.options = options
        self.workdir = options.workdir.expanduser().absolute()
        self.coordinator_dir = self.workdir / "coordinator"
        self.nodes_dir = self.workdir / "nodes"
        self.children = ChildProcesses(
            self.workdir / "logs", env=shared_machine_env(options.retailers)
        )
        self.nodes: list[DemoNode] = []
        self.timings: dict[str, float] = {}
        self._progress = progress
        self._begin = time.monotonic()
        self._serve: Child | None = None
        self.node_cli = _python("desktop_client.node_cli")  # ``retail-node`` of this install

    @property
    def round_timeout(self) -> float:
        """A round's work grows with the shops sharing this machine's cores."""
        return ROUND_TIMEOUT * max(1.0, self.options.retailers / 5)

    def say(self, message: str) -> None:
        self._progress(f"[{time.monotonic() - self._begin:5.0f} s] {message}")

    def _timed(self, name: str, since: float) -> None:
        self.timings[name] = round(time.monotonic() - since, 2)

    # -- the whole demo -----------------------------------------------------------------------

    def run(self) -> DemoSummary:
        self.options.validate()
        try:
            self._prepare_workdir()
            endpoints = self._start_coordinator()
            self._enroll_nodes(endpoints)
            self._join_nodes()
            campaign = self._run_campaign()
            self._compute_insights()
            return summarise(self, campaign, self._rounds(campaign["id"]), self._mirror())
        finally:
            self._stop_everything()

    # -- steps ----------------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        step = time.monotonic()
        if self.workdir.exists() and any(self.workdir.iterdir()):
            if not (self.workdir / MARKER).exists():
                raise DemoError(
                    f"{self.workdir} is not empty and was not made by the demo; "
                    "choose another --workdir"
                )
            end_leftovers(self.workdir)  # a demo killed hard earlier
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / MARKER).write_text("made by retail-coordinator demo\n", "utf-8")
        self.say(f"initialising a coordinator in {self.coordinator_dir}")
        _run_json(
            _python("coordinator.cli", "init", "--data-dir", self.coordinator_dir, "--json"),
            "retail-coordinator init",
        )
        self._fix_ports()
        from shared.synthetic import generate_demo

        self.say(f"generating {self.options.retailers} synthetic retailers")
        manifest = generate_demo(
            self.workdir / "exports",
            retailers=self.options.retailers,
            seed=self.options.seed,
            scale=self.options.scale,
        )
        for index, entry in enumerate(manifest.retailers):
            name = f"shop-{index + 1}"
            self.nodes.append(DemoNode(name, self.nodes_dir / name, Path(entry.path)))
        self._timed("prepare", step)

    def _fix_ports(self) -> None:
        """Free loopback ports chosen once and written to ``coordinator.toml``: a restarted
        coordinator keeps its SuperLink address, which every enrolled node has pinned."""
        from coordinator.config import free_port, load, save

        config = load(self.coordinator_dir)
        save(config.with_ports(api_port=free_port(), superlink_port=free_port()))

    def _start_coordinator(self) -> Endpoints:
        step = time.monotonic()
        self.say("starting the coordinator (API, SuperLink with TLS and node authentication)")
        self._serve = self.children.start(
            COORDINATOR, _python("coordinator.cli", "serve", "--data-dir", self.coordinator_dir)
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self._serve.alive():
                raise DemoError(f"the coordinator stopped:\n{self._serve.log_tail()}")
            endpoints = Endpoints.read(self.coordinator_dir)
            if endpoints is not None and endpoints.pid == self._serve.process.pid:
                try:
                    if httpx.get(f"{endpoints.api_url}/readyz", timeout=2).status_code == 200:
                        self._timed("coordinator_ready", step)
                        self.say(f"coordinator ready: API {endpoints.api_url}")
                        return endpoints
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise DemoError(f"the coordinator was not ready in {START_TIMEOUT:.0f} s")

    def _enroll_nodes(self, endpoints: Endpoints) -> None:
        step = time.monotonic()
        self.say(f"enrolling {len(self.nodes)} retailers (one-time tokens, fresh node keys)")
        with AdminClient(self.coordinator_dir) as admin:
            tokens = [admin.create_token(node.name, 3600)["token"] for node in self.nodes]

        def enroll(node: DemoNode, token: str) -> None:
            node.enrollment = _run_json(
                self.node_command(
                    "enroll", endpoints.api_url, "--token", token, "--data-dir", node.directory,
                    "--key-store", "file", "--json",
                ),
                f"enrolling {node.name}",
            )  # fmt: skip

        with ThreadPoolExecutor(self.options.parallel) as pool:
            list(pool.map(enroll, self.nodes, tokens))
        self._timed("enroll", step)

    def _join_nodes(self) -> None:
        step = time.monotonic()
        self.say("joining every node: import its sales export, start SuperNode + trusted runner")
        for node in self.nodes:
            self.join_node(node)
        from shared.node_runtime.service import NodeService

        deadline = time.monotonic() + CONNECT_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.join is not None and not node.join.alive():
                    raise DemoError(f"{node.name} stopped while joining:\n{node.join.log_tail()}")
            connected = sum(NodeService(n.directory).status().connected for n in self.nodes)
            if connected == len(self.nodes):
                self._timed("join", step)
                self.say(f"all {connected} nodes connected to the SuperLink")
                return
            time.sleep(0.5)
        raise DemoError(f"not every node connected within {CONNECT_TIMEOUT:.0f} s")

    def node_command(self, *args: str | Path) -> list[str]:
        """A ``retail-node`` command of this install."""
        return [*self.node_cli, *(str(a) for a in args)]

    def join_node(self, node: DemoNode, *, consent: Sequence[str] | None = None) -> Child:
        """``retail-node join`` for one node with its sales export, as a supervised child."""
        tasks = ",".join(self.options.tasks if consent is None else consent)
        node.join = self.children.start(
            f"{node.name}-join",
            self.node_command(
                "join", "--data-dir", node.directory, "--data", node.export, "--consent", tasks
            ),
        )
        return node.join

    def _run_campaign(self) -> dict[str, Any]:
        step = time.monotonic()
        opts = self.options
        with AdminClient(self.coordinator_dir) as admin:
            campaign = admin.start_campaign(opts.rounds, opts.epsilon, list(opts.tasks))
            self.say(
                f"campaign #{campaign['id']}: {opts.rounds} DP-SGD rounds with SecAgg+, "
                f"ε {opts.epsilon:g} per retailer (basket statistics first)"
            )
            seen: set[int] = set()
            last_change = time.monotonic()
            while True:
                current = admin.call("GET", f"/campaigns/{campaign['id']}")
                for row in admin.call("GET", f"/campaigns/{campaign['id']}/rounds"):
                    if row["seq"] not in seen:
                        seen.add(row["seq"])
                        last_change = time.monotonic()
                        self.say(_describe_round(row, opts.rounds))
                if current["status"] != "running":
                    break
                if time.monotonic() - last_change > self.round_timeout:
                    raise DemoError(f"no round finished in {self.round_timeout:.0f} s")
                if self._serve is not None and not self._serve.alive():
                    raise DemoError(f"the coordinator stopped:\n{self._serve.log_tail()}")
                time.sleep(1.0)
        self._timed("campaign", step)
        if current["status"] != "finished":
            raise DemoError(f"campaign #{current['id']} {current['status']}: {current['error']}")
        return dict(current)

    def _compute_insights(self) -> None:
        """Each node recomputes its insights by itself after the campaign's last round (its
        runner starts ``retail-node insights refresh`` and ``report``); wait for all of them.

        A node that missed the final model (its evaluate message was lost, which a SuperLink
        under load can do) never starts a refresh: once the others are done and nothing has
        changed for ``STRAGGLER_GRACE`` s, the demo runs the same two commands for it, from
        the last model it received, and says so."""
        from shared.node_runtime.events import EventKind, read_events

        step = time.monotonic()
        self.say("each node computes every insight (its own data, the new global model)")
        pending = {node.name: node for node in self.nodes}
        deadline = time.monotonic() + STEP_TIMEOUT
        last_change = time.monotonic()
        while pending and time.monotonic() < deadline:
            for name, node in list(pending.items()):
                for event in read_events(node.directory).events:
                    if event.kind == EventKind.INSIGHTS_REFRESHED:
                        self.say(f"{name}: insights stored, report written")
                        del pending[name]
                        last_change = time.monotonic()
                        break
                    if event.kind == EventKind.ERROR and event.data.get("step") == "insights":
                        raise DemoError(f"{name}: {event.message}")
            stalled = time.monotonic() - last_change > STRAGGLER_GRACE
            if pending and len(pending) < len(self.nodes) and stalled:
                break
            time.sleep(0.5)
        for name, node in pending.items():
            self.say(f"{name}: missed the final model; computing its insights from its last one")
            for args in (
                ("insights", "refresh", "--data-dir", node.directory),
                ("report", node.directory / REPORT_FILE, "--data-dir", node.directory),
            ):
                done = subprocess.run(  # noqa: S603  # this interpreter, our own modules
                    self.node_command(*args), capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    raise DemoError(f"{name}: {(done.stderr or done.stdout).strip()[-800:]}")
        self._timed("insights", step)

    def _rounds(self, campaign_id: int) -> list[dict[str, Any]]:
        with AdminClient(self.coordinator_dir) as admin:
            return list(admin.call("GET", f"/campaigns/{campaign_id}/rounds"))

    def _mirror(self) -> dict[str, float]:
        """The coordinator's ledger mirror: ε spent per retailer name, as the nodes reported."""
        with AdminClient(self.coordinator_dir) as admin:
            latest = admin.call("GET", "/ledger").get("latest", [])
            names = {r["id"]: r["name"] for r in admin.call("GET", "/retailers")}
        return {names[row["retailer_id"]]: float(row["epsilon_spent"]) for row in latest}

    def outcomes(self) -> list[NodeOutcome]:
        from shared.node_runtime.service import NodeService

        return [NodeOutcome.of(node.name, NodeService(node.directory)) for node in self.nodes]

    def _stop_everything(self) -> None:
        step = time.monotonic()
        self.say("stopping the nodes and the coordinator")
        with _signals_held():  # a second Ctrl-C must not cut the clean-up short
            self.children.stop_all()
            leftovers = end_leftovers(self.workdir)
        if leftovers:
            self.say(
                f"ended {len(leftovers)} leftover processes: "
                + ", ".join(f"{pid} ({command})" for pid, command in leftovers.items())
            )
        self._timed("stop", step)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM meanwhile (main thread only: signals cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _describe_round(row: dict[str, Any], rounds: int) -> str:
    stage = "basket statistics" if row["stage"] == "statistics" else f"round {row['round']}"
    if row["stage"] != "statistics":
        stage += f" of {rounds}"
    return f"{stage}: {row['status']}, {row['participants']} participants" + (
        f", {row['dropouts']} dropped out" if row["dropouts"] else ""
    )


def run_demo(options: DemoOptions, progress: Progress) -> DemoSummary:
    """Run the demo; raises :class:`DemoError` (every process already stopped) on failure."""
    try:
        return DemoFederation(options, progress).run()
    except AdminClientError as exc:
        raise DemoError(f"the coordinator refused: {exc}") from None
