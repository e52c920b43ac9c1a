"""The trusted ClientApp runner: in process against fakes (a failing task, a lost claim, an
untrusted FAB), then against real processes: a SuperLink with TLS and node authentication,
five SuperNodes in ``--isolation process`` with the SuperExec secret, one runner each.

A tampered campaign app (its ClientApp copies the node's rows out) is refused by every runner
and never runs; the trusted app then completes a SecAgg+ round on the five nodes and every
ledger shows the charge. The federation is started once for both (about 15 s).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.common.constant import ErrorCode, MessageTypeLegacy, SubStatus
from flwr.supercore.fab import Fab
from flwr.supercore.run import Run

from coordinator.config import DATABASE_URL_ENV, CoordinatorConfig, free_port
from coordinator.flower_app import APP_DIR
from coordinator.flower_control import FlowerControl, build_fab
from coordinator.pki import generate_node_keypair, write_pki
from coordinator.superlink import SuperLinkSupervisor
from shared.federation.node import CANONICAL_FILE, prepare_node
from shared.ingest import ImportOptions, import_file
from shared.node_runtime.events import EventKind, read_events
from shared.node_runtime.flower_runner import (
    TaskHeartbeat,
    TrustedClientAppRunner,
    installed_campaign_app,
)
from shared.node_runtime.launch import node_process_command
from shared.node_runtime.trust import AllowList, release_from_fab
from shared.privacy import PrivacyLedger
from shared.schema import Task
from shared.synthetic import generate_demo

NODES = 5
RUNNER_MODULE = "shared.node_runtime.flower_runner"

# -- in process: the runner's task handling against a fake SuperNode -----------------------


@pytest.fixture(scope="module")
def trusted_fab() -> Fab:
    return build_fab(APP_DIR)


def _run_for(fab: Fab, run_id: int = 7) -> Run:
    run = Run.create_empty(run_id)
    run.fab_hash = fab.hash_str
    run.fab_id = "retail-intelligence/retail-campaign"
    run.fab_version = "0.1.0"
    return run


def _query(run_id: int, node_dir: Path) -> tuple[Message, Context]:
    content = RecordDict({"getpropertiesins.config": ConfigRecord({"server-round": 1})})
    metadata = Metadata(
        run_id=run_id,
        message_id="",
        src_node_id=1,
        dst_node_id=11,
        reply_to_message_id="",
        group_id="query-1",
        created_at=time.time(),
        ttl=3600.0,
        message_type=MessageTypeLegacy.GET_PROPERTIES,
    )
    message = Message(content, metadata=metadata)  # as a SuperNode's runtime API hands it over
    message.metadata.__dict__["_message_id"] = message.object_id
    context = Context(run_id, 11, {"data-path": str(node_dir)}, RecordDict(), {})
    return message, context


@dataclass
class FakeTask:
    """One claimed task as the runtime API would hand it over, recording what comes back."""

    message: Message
    context: Context
    run: Run
    fab: Fab
    lost: threading.Event = field(default_factory=threading.Event)
    replies: list[Message] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False

    def pull(self) -> tuple[Message, Context, Run, Fab]:
        return self.message, self.context, self.run, self.fab

    def push_reply(self, reply: Message, context: Context) -> None:
        self.replies.append(reply)

    def finish(self, context: Context | None, sub_status: str, details: str) -> None:
        self.finished.append((sub_status, details))

    def close(self) -> None:
        self.closed = True


class FakeApp:
    """Stands in for the installed ClientApp: fails on demand, else answers the query."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = False

    def __call__(self, message: Message, context: Context) -> Message:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise KeyError("product 4711 at /home/shop/rows.parquet")  # must not leave the node
        from flwr.common import Code, GetPropertiesRes, Status
        from flwr.compat.common.recorddict_compat import getpropertiesres_to_recorddict

        res = GetPropertiesRes(Status(Code.OK, ""), {"accept": False, "reason": "no consent"})
        return Message(getpropertiesres_to_recorddict(res), reply_to=message)


def _runner(tmp_path: Path, allow: AllowList, app: FakeApp) -> TrustedClientAppRunner:
    node_dir = tmp_path / "node"
    node_dir.mkdir(exist_ok=True)
    return TrustedClientAppRunner(
        f"127.0.0.1:{free_port()}",
        node_dir,
        allow,
        app=app,  # type: ignore[arg-type]  # a stand-in with ClientApp's call signature
    )


def test_a_failing_task_gets_an_error_reply_and_the_runner_goes_on(
    tmp_path: Path, trusted_fab: Fab
) -> None:
    app = FakeApp()
    runner = _runner(tmp_path, AllowList((release_from_fab(trusted_fab.content),)), app)
    node_dir = runner.node_dir

    app.fail_next = True
    failing = FakeTask(*_query(7, node_dir), _run_for(trusted_fab), trusted_fab)
    result = runner.handle(failing)
    assert result.outcome == "failed"
    (reply,) = failing.replies
    assert reply.has_error() and reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert reply.error.reason == "ClientApp raised KeyError"  # no path, no product id
    assert failing.finished[0][0] == SubStatus.FAILED and failing.closed

    ok = FakeTask(*_query(7, node_dir), _run_for(trusted_fab), trusted_fab)
    assert runner.handle(ok).outcome == "completed"
    assert ok.replies[0].has_content() and ok.finished == [(SubStatus.COMPLETED, "")]
    kinds = [e.kind for e in read_events(node_dir).events]
    assert kinds == ["round_started", "error", "round_started", "declined"]
    error = read_events(node_dir).events[1]
    assert "4711" in error.message and error.data["error"] == "KeyError"  # kept locally
    assert read_events(node_dir).events[3].message == "no consent"


def test_an_untrusted_fab_is_refused_once_per_run_and_the_app_never_called(
    tmp_path: Path, trusted_fab: Fab
) -> None:
    app = FakeApp()
    runner = _runner(tmp_path, AllowList(), app)  # trusts nothing
    for _ in range(2):
        task = FakeTask(*_query(9, runner.node_dir), _run_for(trusted_fab, 9), trusted_fab)
        assert runner.handle(task).outcome == "refused"
        (reply,) = task.replies
        assert reply.error.code == ErrorCode.INVALID_FAB
        assert reply.error.reason.startswith("untrusted app: ")
        assert task.finished[0][0] == SubStatus.FAILED
    assert app.calls == 0
    (refusal,) = read_events(runner.node_dir).events
    assert refusal.kind == EventKind.RUN_REFUSED and refusal.run_id == 9
    assert "not a release this node trusts" in refusal.message
    assert refusal.data["fab_hash"] == trusted_fab.hash_str


def test_a_rejected_heartbeat_marks_the_task_lost_without_signalling(tmp_path: Path) -> None:
    signals: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: signals.append(signum))
    answers = iter([True, False])
    beat = TaskHeartbeat(lambda: next(answers), interval=0.01)
    try:
        beat.start()
        assert beat.lost.wait(5)
        beat.stop()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signals == []


def test_a_lost_claim_pushes_nothing(tmp_path: Path, trusted_fab: Fab) -> None:
    app = FakeApp()
    runner = _runner(tmp_path, AllowList((release_from_fab(trusted_fab.content),)), app)
    task = FakeTask(*_query(7, runner.node_dir), _run_for(trusted_fab), trusted_fab)
    task.lost.set()
    runner.handle(task)
    assert task.replies == [] and task.finished == [] and task.closed


def test_the_runner_only_talks_to_loopback(tmp_path: Path) -> None:
    from shared.node_runtime.flower_runner import RunnerConfigError

    with pytest.raises(RunnerConfigError, match="loopback"):
        TrustedClientAppRunner("192.0.2.1:9094", tmp_path, AllowList(), app=FakeApp())  # type: ignore[arg-type]


def test_one_runner_per_node_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.node_runtime.flower_runner import NodeLock, main, runner_pid

    assert runner_pid(tmp_path) is None
    first = NodeLock(tmp_path)
    first.acquire()
    try:
        assert runner_pid(tmp_path) == os.getpid()
        args = ["--runtime-address", f"127.0.0.1:{free_port()}", "--node-dir", str(tmp_path)]
        assert main(args) == 3
        assert f"another runner (pid {os.getpid()}) already serves" in capsys.readouterr().err
    finally:
        first.release()
    assert runner_pid(tmp_path) is None


def test_the_installed_campaign_app_is_what_the_coordinator_submits(trusted_fab: Fab) -> None:
    """The runner's own release equals coordinator.flower_control.build_fab's FAB."""
    from shared.node_runtime.flower_runner import build_release

    app_dir = installed_campaign_app()
    assert app_dir is not None and app_dir.resolve() == APP_DIR.resolve()
    release = build_release(app_dir)
    assert release.fab_sha256 == trusted_fab.hash_str
    assert release.content_sha256 == release_from_fab(trusted_fab.content).content_sha256


# -- real processes --------------------------------------------------------------------------

EVIL_CLIENTAPP = '''"""A hostile ClientApp inside a FAB: it copies the retailer's rows out."""
import shutil
from pathlib import Path

from flwr.client import ClientApp, NumPyClient

LEAK_DIR = Path({leak_dir!r})
(LEAK_DIR / "imported").write_text("code from the FAB was imported")


class Thief(NumPyClient):
    def get_properties(self, config):
        return {{"accept": False, "reason": "already copied your rows"}}


def client_fn(context):
    rows = Path(str(context.node_config["data-path"])) / {canonical!r}
    shutil.copy(rows, LEAK_DIR / f"stolen-{{context.node_id}}.parquet")
    return Thief().to_client()


app = ClientApp(client_fn=client_fn)
'''


def _tampered_app(root: Path, leak_dir: Path) -> Path:
    """The campaign app with its ClientApp pointed at a module inside the FAB."""
    app_dir = root / "retail-campaign"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = app_dir / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    assert 'clientapp = "shared.federation.client_app:app"' in text
    pyproject.write_text(
        text.replace(
            'clientapp = "shared.federation.client_app:app"', 'clientapp = "evil_clientapp:app"'
        ),
        "utf-8",
    )
    (app_dir / "evil_clientapp.py").write_text(
        EVIL_CLIENTAPP.format(leak_dir=str(leak_dir), canonical=CANONICAL_FILE), "utf-8"
    )
    return app_dir


def _wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    env["FLWR_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[str]:
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                names.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return names


@dataclass
class Node:
    name: str
    directory: Path
    key: Path
    public_line: str
    secret: Path
    runtime_port: int
    node_id: int = 0
    supernode: subprocess.Popen[bytes] | None = None
    runner: subprocess.Popen[bytes] | None = None

    @property
    def runtime_address(self) -> str:
        return f"127.0.0.1:{self.runtime_port}"

    def events(self) -> list[str]:
        return [f"{e.kind}:{e.run_id}:{e.message}" for e in read_events(self.directory).events]


@dataclass
class Federation:
    supervisor: SuperLinkSupervisor
    control: FlowerControl
    nodes: list[Node]
    root: Path
    timings: dict[str, float] = field(default_factory=dict)

    def logs(self) -> str:
        parts = [self.supervisor.log_path.read_text(errors="replace")[-6000:]]
        for node in self.nodes:
            for log in sorted((node.directory.parent / "logs").glob(f"{node.name}-*.log")):
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _start_supernode(fed_address: str, ca: Path, node: Node, logs: Path) -> None:
    command = node_process_command(
        "supernode",
        [
            "--superlink",
            fed_address,
            "--root-certificates",
            str(ca),
            "--auth-supernode-private-key",
            str(node.key),
            "--node-config",
            f'data-path="{node.directory}"',
            "--isolation",
            "process",
            "--host",
            "127.0.0.1",
            "--port",
            str(node.runtime_port),
            "--superexec-auth-secret-file",
            str(node.secret),
        ],
    )
    with (logs / f"{node.name}-supernode.log").open("ab") as out:
        node.supernode = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(node.directory.parent / f"{node.name}-flwr-home"),
            start_new_session=True,
        )


def _start_runner(node: Node, logs: Path) -> None:
    command = [
        sys.executable,
        "-P",  # the working directory is not on sys.path: only installed code is imported
        "-m",
        RUNNER_MODULE,
        "--runtime-address",
        node.runtime_address,
        "--node-dir",
        str(node.directory),
        "--superexec-auth-secret-file",
        str(node.secret),
        "--poll-interval",
        "0.3",
    ]
    with (logs / f"{node.name}-runner.log").open("ab") as out:
        node.runner = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(node.directory.parent / f"{node.name}-flwr-home"),
            cwd=node.directory.parent,
            start_new_session=True,
        )


def _stop_all(procs: list[subprocess.Popen[bytes] | None], sig: signal.Signals) -> None:
    """Signal every process group at once, then wait (SIGKILL after a grace period)."""
    alive = [p for p in procs if p is not None and p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + 5.0
    for proc in alive:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    config = CoordinatorConfig(data_dir=root / "coordinator", superlink_port=free_port())
    write_pki(config.pki_dir)
    supervisor = SuperLinkSupervisor(
        config,
        flwr_home=root / "flwr-home",
        log_path=config.data_dir / "logs" / "superlink.log",
        env={DATABASE_URL_ENV: "sqlite:////nonexistent/progress.sqlite"},
    )
    supervisor.start()
    nodes: list[Node] = []
    logs = root / "nodes" / "logs"
    logs.mkdir(parents=True)
    try:
        # Data while the SuperLink starts: five small synthetic shops, consent to train.
        manifest = generate_demo(root / "exports", retailers=NODES, seed=11, scale=0.3)
        for i, entry in enumerate(manifest.retailers):
            frame = import_file(entry.path, options=ImportOptions()).frame
            assert frame is not None
            directory = prepare_node(
                root / "nodes" / f"shop-{i}", frame, f"shop-{i}", (Task.DEMAND_PRICING,)
            )
            private_pem, public_line = generate_node_keypair()
            key = directory.parent / f"shop-{i}.key"
            key.write_bytes(private_pem)
            key.chmod(0o600)
            secret = directory.parent / f"shop-{i}.secret"
            secret.write_bytes(os.urandom(32))
            secret.chmod(0o600)
            nodes.append(Node(f"shop-{i}", directory, key, public_line, secret, free_port()))
        timings["node data"] = time.monotonic() - t0
        assert supervisor.wait_ready(30), supervisor.log_path.read_text()
        control = FlowerControl(supervisor.address, config.ca_cert)
        for node in nodes:
            node.node_id = control.register_node(node.public_line, node.name)
        for node in nodes:
            _start_supernode(supervisor.address, config.ca_cert, node, logs)
            _start_runner(node, logs)
        fed = Federation(supervisor, control, nodes, root, timings)
        online = _wait_for(
            lambda: sum(n.status == "online" for n in control.list_nodes()) == NODES, 60
        )
        assert online, fed.logs()
        timings["federation up"] = time.monotonic() - t0
        yield fed
        control.close()
    finally:
        rss: dict[str, float | None] = {}
        for node in nodes:
            if node.supernode is not None:
                rss[f"{node.name} supernode MB"] = _peak_rss_mb(node.supernode.pid)
            if node.runner is not None:
                rss[f"{node.name} runner MB"] = _peak_rss_mb(node.runner.pid)
        _stop_all([n.runner for n in nodes], signal.SIGTERM)  # runners stop between tasks
        _stop_all([n.supernode for n in nodes], signal.SIGKILL)
        supervisor.stop()
        shown = {k: round(v, 1) for k, v in {**timings}.items()}
        print("\nnode runtime timings (s):", shown, file=sys.stderr)
        print("peak RSS:", {k: v and round(v) for k, v in rss.items()}, file=sys.stderr)


@pytest.mark.slow
def test_without_the_secret_no_process_can_claim_a_nodes_tasks(federation: Federation) -> None:
    node = federation.nodes[0]
    assert node.supernode is not None
    assert not any("flower-superexec" in c for c in _children(node.supernode.pid))
    stranger = TrustedClientAppRunner(
        node.runtime_address,
        node.directory,
        AllowList(),
        app=FakeApp(),  # type: ignore[arg-type]
    )
    with pytest.raises(httpx.HTTPStatusError) as caught:
        stranger.acquire()
    assert caught.value.response.status_code == 401


@pytest.mark.slow
def test_a_tampered_app_is_refused_by_every_runner_and_never_runs(
    federation: Federation, tmp_path: Path
) -> None:
    leak_dir = tmp_path / "leaked"
    leak_dir.mkdir()
    app_dir = _tampered_app(tmp_path / "app", leak_dir)
    t0 = time.monotonic()
    run_id = federation.control.submit_run(
        app_dir,
        {"campaign-id": 66, "rounds": 1, "statistics-epsilon": 0.0, "query-timeout": 60.0},
    )

    def all_refused() -> bool:
        return all(
            any(e.kind == EventKind.RUN_REFUSED and e.run_id == run_id for e in
                read_events(n.directory).events)
            for n in federation.nodes
        )  # fmt: skip

    assert _wait_for(all_refused, 90), federation.logs()
    federation.timings["tampered: submit to all refused"] = time.monotonic() - t0
    assert _wait_for(lambda: federation.control.run_info(run_id).finished, 60), federation.logs()
    federation.timings["tampered: submit to run finished"] = time.monotonic() - t0

    assert sorted(leak_dir.iterdir()) == []  # neither imported nor run, on any node
    for node in federation.nodes:
        refusals = [
            e for e in read_events(node.directory).events if e.kind == EventKind.RUN_REFUSED
        ]
        assert [e.run_id for e in refusals] == [run_id]
        assert "not a release this node trusts" in refusals[0].message
        assert refusals[0].data["app_id"] == "retail-intelligence/retail-campaign"
        with PrivacyLedger.in_data_dir(node.directory) as ledger:
            assert ledger.status().spent_epsilon == 0.0
        assert node.runner is not None and node.runner.poll() is None
    logs, _ = federation.control.run_logs(run_id)
    assert "campaign 66 round 1 attempt 1 (train): skipped, 0 participants, 5 declined" in logs
