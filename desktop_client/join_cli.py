"""``retail-node join``, ``leave`` and ``status``: take part in the federation from a terminal.

``join`` runs the node (the SuperNode and the trusted runner, see
``shared.node_runtime.service``) until Ctrl-C or SIGTERM, printing what the node does; ``leave``
stops it from another terminal; ``status`` says what it is doing and what it has spent.

Exit codes: 0 success (``leave`` with nothing running also, it says so), 1 the node cannot
join (not enrolled, no data, invalid data, already running; the reason is printed), 2 usage
errors.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from desktop_client.enroll_cli import PASSPHRASE_ENV, read_passphrase
from desktop_client.node_home import NodeHome
from shared.node_runtime.events import Event, read_events
from shared.node_runtime.service import ENROLL_FIRST, NodeNotReady, NodeService, NodeStatus
from shared.schema import Task
from shared.secret_store import KeyStore

EXIT_OK, EXIT_NOT_READY, EXIT_USAGE = 0, 1, 2
POLL_SECONDS = 0.5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``join``, ``leave`` and ``status`` to the ``retail-node`` sub-commands."""
    join = sub.add_parser(
        "join",
        help="take part in the coordinator's campaigns until stopped (Ctrl-C)",
        description=(
            "Start this node's SuperNode and trusted runner and keep them running; rounds are "
            "answered only for tasks you consented to."
        ),
    )
    join.add_argument("--data-dir", type=Path, help="this node's data directory")
    join.add_argument("--data", type=Path, help="import this sales export and prepare the node")
    join.add_argument("--name", help="the node's name (default: the enrolled retailer's)")
    join.add_argument(
        "--consent",
        default="",
        help="tasks to consent to when importing --data: demand_pricing,bundles (default none)",
    )
    join.set_defaults(handler=cmd_join)

    leave = sub.add_parser("leave", help="stop a running `retail-node join`")
    leave.add_argument("--data-dir", type=Path, help="this node's data directory")
    leave.set_defaults(handler=cmd_leave)

    status = sub.add_parser("status", help="what the node is doing and what it has spent")
    status.add_argument("--data-dir", type=Path, help="this node's data directory")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _consent(text: str) -> tuple[Task, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        return tuple(Task(n) for n in names)
    except ValueError as exc:
        valid = ", ".join(t.value for t in Task)
        raise ValueError(f"unknown task in --consent {text!r}; use {valid}") from exc


def _import(service: NodeService, home: NodeHome, args: argparse.Namespace) -> int | None:
    """Import ``--data`` and prepare the node; an exit code when that failed."""
    from desktop_client.report_text import describe_report
    from shared.ingest import ImportOptions, import_file

    try:
        consent = _consent(args.consent)
    except ValueError as exc:
        return _error(str(exc), EXIT_USAGE)
    result = import_file(
        args.data, options=ImportOptions(customer_key=home.customer_key()), store=home.mappings
    )
    if not result.report.valid or result.frame is None:
        print(describe_report(result.report), file=sys.stderr)
        return _error(f"{args.data} cannot be used; fix it and try again", EXIT_NOT_READY)
    service.prepare(result.frame, args.name, consent)
    given = ", ".join(t.value for t in consent) or "none (every round will be declined)"
    print(f"prepared {service.node_dir} from {args.data}; consent: {given}")
    return None


def _line(event: Event) -> str:
    where = ""
    if event.run_id is not None:
        where = f" run {event.run_id}" + (f" round {event.round}" if event.round else "")
    return f"{event.at:%H:%M:%S} {event.kind}{where}: {event.message}".rstrip(": ")


def cmd_join(args: argparse.Namespace) -> int:
    home = NodeHome.locate(args.data_dir)
    service = NodeService(home.root)
    enrollment = service.enrollment
    if enrollment is None:
        return _error(ENROLL_FIRST, EXIT_NOT_READY)
    passphrase = None
    if enrollment.key_store is KeyStore.ENCRYPTED:
        passphrase = read_passphrase("Passphrase of the node's key: ")
        if passphrase is None:
            return _error(
                f"the node's key is protected by a passphrase: set {PASSPHRASE_ENV} or run "
                "this on a terminal to be asked",
                EXIT_NOT_READY,
            )
    if args.data is not None:
        failed = _import(service, home, args)
        if failed is not None:
            return failed
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    offset = read_events(service.node_dir).next_offset  # only what happens from now on
    try:
        service.start(passphrase)
    except NodeNotReady as exc:
        signal.signal(signal.SIGTERM, previous)
        return _error(str(exc), EXIT_NOT_READY)
    print(f"joined from {service.node_dir}; Ctrl-C or `retail-node leave` stops", flush=True)
    try:
        while not stop.wait(POLL_SECONDS):
            batch = read_events(service.node_dir, offset)
            offset = batch.next_offset
            for event in batch.events:
                print(_line(event), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        signal.signal(signal.SIGTERM, previous)
    print("left the federation; the node is stopped", flush=True)
    return EXIT_OK


def cmd_leave(args: argparse.Namespace) -> int:
    service = NodeService(NodeHome.locate(args.data_dir).root)
    message = service.leave()
    print(message)
    return EXIT_NOT_READY if "did not stop" in message else EXIT_OK


def describe_status(status: NodeStatus) -> str:
    """Human-readable status, a few lines."""
    lines = [f"node directory: {status.node_dir}"]
    coordinator = status.coordinator
    if coordinator is None:
        lines.append("enrolled: no (enroll first with `retail-node enroll URL --token T`)")
    else:
        lines.append(
            f"coordinator: {coordinator['api_url']} (federation {coordinator['superlink_address']}"
            f", CA {coordinator['ca_fingerprint']})"
        )
    lines.append(f"data: {'prepared as ' + repr(status.name) if status.prepared else 'none'}")
    connection = status.connection
    if status.connection_message:
        connection += f" ({status.connection_message})"
    lines.append(f"connection: {connection}")
    if status.current_run is not None:
        lines.append(f"current run: {status.current_run}, round {status.current_round}")
    if status.ledger is not None:
        ledger = status.ledger
        lines.append(
            f"privacy budget: ε spent {ledger['spent']:.3f}, remaining {ledger['remaining']:.3f}"
            f" of {ledger['cap']:.3f}"
        )
    granted = [task for task, ok in status.consent.items() if ok]
    lines.append(f"consent: {', '.join(granted) or 'none'}")
    lines.append(f"global model: {status.model_version or 'none yet'}")
    for refused in status.refused_runs[-5:]:
        lines.append(f"refused run {refused['run_id']}: {refused['reason']}")
    if status.last_events:
        lines.append("last events:")
        lines.extend("  " + _line(event) for event in status.last_events[-10:])
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    status = NodeService(NodeHome.locate(args.data_dir).root).status()
    if args.json:
        data: dict[str, Any] = status.to_json()
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(describe_status(status))
    return EXIT_OK
