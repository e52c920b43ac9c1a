"""``retail-coordinator``: the coordinator's daemon and admin CLI.

Set-up and daemon: ``init`` creates a data directory (config, CA and server certificate,
database, the admin credential), ``serve`` runs the daemon (SuperLink + HTTP API) over it,
``credential issue`` makes another admin or viewer credential with local access to the data
directory. Admin commands talk to the running daemon over its API with the stored admin
credential: ``token create``, ``retailers list``, ``campaign start|list``, ``status``,
``audit verify``. Offline tools: ``taxonomy`` (the category taxonomy retailers map onto) and
``simulate`` (a what-if federated campaign over a folder of retailer files).

Every command takes ``--json``. Exit codes: 0 done; 1 refused or not possible now (the message
says what to do: the daemon is not running, the API refused, the audit chain is broken, the
data directory is already initialised, the study could not run on this data); 2 bad usage,
unreadable input or an unexpected failure (one line, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coordinator.admin_client import (
    AdminClient,
    AdminClientError,
    AdminCredential,
    Endpoints,
    parse_duration,
    process_alive,
)
from coordinator.config import DATABASE_URL_ENV
from shared import __version__
from shared.taxonomy import load_taxonomy


def cmd_taxonomy(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy()
    if args.output:
        Path(args.output).write_text(json.dumps(taxonomy.to_json(), indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(taxonomy.to_json(), indent=2))
        return 0
    print(f"Category taxonomy {taxonomy.version} ({len(taxonomy.categories)} categories):")
    for category in taxonomy.categories:
        print(f"  {category.code:<14} {category.name}")
    return 0


SIMULATION_QUERY_TIMEOUT = 300.0


def cmd_simulate(args: argparse.Namespace) -> int:
    from shared.federation.settings import RunSettings, SettingsError
    from shared.federation.study import StudyError, run_study
    from shared.ingest import MappingFileError, load_mapping

    try:
        mapping = load_mapping(Path(args.mapping)) if args.mapping else None
        settings = RunSettings(
            rounds=args.rounds,
            epsilon_per_round=args.epsilon / args.rounds,
            strategy=args.strategy,
            proximal_mu=args.proximal_mu if args.strategy == "fedprox" else 0.0,
            local_epochs=args.local_epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            statistics_epsilon=args.statistics_epsilon,
            # The simulation's first message starts every node's actor (a process importing
            # torch): on a busy 2-core machine that took longer than the 60 s default.
            query_timeout=SIMULATION_QUERY_TIMEOUT,
        )
    except (MappingFileError, SettingsError) as exc:
        return _fail(str(exc), args.json)
    if not args.verbose:  # library chatter (torch, ray) is for developers, not operators
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
    if not args.json:
        print(
            f"Simulating {settings.rounds} rounds over {args.partitions} "
            f"(training ε {args.epsilon:g}, basket statistics ε {args.statistics_epsilon:g}, "
            f"δ {settings.delta:g}, {settings.strategy})..."
        )
    try:
        report = run_study(
            Path(args.partitions),
            settings,
            mapping=mapping,
            work_dir=Path(args.workdir) if args.workdir else None,
            verbose=args.verbose,
            insights=args.insights,
        )
    except StudyError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    data = report.to_json()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"Done in {report.wall_seconds:.0f} s.")
    for r in report.rounds:
        what = "statistics" if r["stage"] == "statistics" else f"round {r['round']}"
        print(
            f"  {what} (attempt {r['attempt']}): {r['status']}, "
            f"{r['participants']} participants, holdout WAPE {r['wape'] or float('nan'):.3f}"
        )
    print("  retailer         ε spent  WAPE local-only  federated  centralised")
    for r in report.retailers:
        print(
            f"  {r['retailer']:<16} {r['epsilon_spent']:7.2f}  {r['wape_local_only']:15.3f}"
            f"  {r['wape_federated']:9.3f}  {r['wape_centralised']:11.3f}"
        )
    for r in report.retailers:
        if "report" in r:
            print(f"  {r['retailer']}: {r['collaboration']}.")
            print(f"    insights report: {r['report']}")
    for skipped in report.skipped:
        print(f"  skipped {skipped['file']}: {skipped['reason']}")
    return 0


EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
TASK_ALIASES = {"demand": "demand_pricing", "pricing": "demand_pricing"}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _refuse(message: str, as_json: bool) -> int:
    """A refusal the operator can act on: exit 1 with the message."""
    if as_json:
        _print_json({"ok": False, "error": message})
    else:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_REFUSED


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).expanduser().absolute()


def _redacted(url: str) -> str:
    """A database URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without its user part
        return url.split("@")[-1]


def _issue_credential(
    data_dir: Path, role: str, name: str, *, actor: str, revoke_same_name: bool = False
) -> tuple[Any, Any]:
    """Issue a credential straight in the database (local set-up access, no daemon needed);
    returns (config, IssuedToken)."""
    from coordinator.auth import Role
    from coordinator.config import load
    from coordinator.runtime import Coordinator

    config = load(data_dir)
    coord = Coordinator.open(config)
    try:
        if revoke_same_name:  # the credential file is replaced: its old tokens must stop
            for old in coord.credentials.list():
                if old.role == Role(role) and old.name == name:
                    coord.credentials.revoke(old.id, actor=actor)
        return config, coord.credentials.issue(Role(role), name=name, actor=actor)
    finally:
        coord.close()


def _credential_json(issued: Any) -> dict[str, str]:
    return {
        "access_token": issued.access_token,
        "refresh_token": issued.refresh_token,
        "access_expires_at": issued.access_expires_at.isoformat(),
        "refresh_expires_at": issued.refresh_expires_at.isoformat(),
    }


def cmd_init(args: argparse.Namespace) -> int:
    from coordinator.config import CONFIG_FILE, CoordinatorConfig, save
    from coordinator.pki import fingerprint, write_pki

    data_dir = _data_dir(args)
    if (data_dir / CONFIG_FILE).exists() and not args.force:
        return _refuse(
            f"{data_dir} already holds a coordinator ({CONFIG_FILE} exists). Initialising it "
            "again makes a new CA, and every enrolled node (which pinned the old one) would "
            "have to enroll again: pass --force if that is what you want",
            args.json,
        )
    running = Endpoints.read(data_dir)
    if running is not None and process_alive(running.pid):
        return _refuse(
            f"a coordinator daemon (pid {running.pid}) is serving {data_dir}; stop it first",
            args.json,
        )
    env_url = os.environ.get(DATABASE_URL_ENV, "").strip()
    config = CoordinatorConfig(
        data_dir=data_dir, database_url=env_url, database_url_from_env=bool(env_url)
    )
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)  # it holds the CA key and credentials
    try:
        write_pki(config.pki_dir, force=args.force)
    except FileExistsError as exc:
        return _refuse(f"{exc}; pass --force to replace it", args.json)
    save(config)
    _, issued = _issue_credential(
        data_dir,
        "admin",
        "admin",
        actor="retail-coordinator init",
        revoke_same_name=args.force,
    )
    stored = AdminCredential.from_api(_credential_json(issued)).write(data_dir)
    ca_fingerprint = fingerprint(config.ca_cert.read_bytes())
    if args.json:
        _print_json(
            {
                "ok": True,
                "data_dir": str(data_dir),
                "config": str(config.config_file),
                "database_url": _redacted(config.database_url),
                "ca_certificate": str(config.ca_cert),
                "ca_fingerprint": ca_fingerprint,
                "admin_credential": {**_credential_json(issued), "file": str(stored)},
            }
        )
        return EXIT_OK
    print(f"Initialised the coordinator in {data_dir}")
    print(f"  config:         {config.config_file}")
    print(f"  database:       {_redacted(config.database_url)}")
    print(f"  CA certificate: {config.ca_cert}")
    print(f"CA fingerprint (SHA-256), for retailers to confirm at enrollment:\n  {ca_fingerprint}")
    print("Admin credential (shown once; the admin commands use the stored copy):")
    access_until = f"{issued.access_expires_at:%Y-%m-%d %H:%M} UTC"
    refresh_until = f"{issued.refresh_expires_at:%Y-%m-%d %H:%M} UTC"
    print(f"  access token:  {issued.access_token}  (expires {access_until})")
    print(f"  refresh token: {issued.refresh_token}  (expires {refresh_until})")
    print(f"  stored in {stored} (readable only by you)")
    print(f"Start the daemon: retail-coordinator serve --data-dir {data_dir}")
    return EXIT_OK


def cmd_credential_issue(args: argparse.Namespace) -> int:
    from coordinator.config import ConfigError

    data_dir = _data_dir(args)
    name = args.name or str(args.role)
    saved = args.role == "admin" and name == "admin"
    try:
        _, issued = _issue_credential(
            data_dir, args.role, name, actor="retail-coordinator credential", revoke_same_name=saved
        )
    except ConfigError as exc:
        return _refuse(str(exc), args.json)
    data = {"ok": True, "role": args.role, "name": name, **_credential_json(issued)}
    if saved:
        data["file"] = str(AdminCredential.from_api(data).write(data_dir))
    if args.json:
        _print_json(data)
        return EXIT_OK
    print(f"New {args.role} credential {name!r} (shown once):")
    print(f"  access token:  {issued.access_token}")
    print(f"  refresh token: {issued.refresh_token}")
    print(
        f"  access expires {issued.access_expires_at:%Y-%m-%d %H:%M} UTC; refresh with "
        "POST /api/v1/auth/refresh"
    )
    if saved:
        print(f"  stored in {data['file']}; earlier 'admin' credentials are revoked")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from coordinator.config import ConfigError, load
    from coordinator.logging_setup import setup_logging
    from coordinator.serve import Daemon, ServeError

    data_dir = _data_dir(args)
    try:
        config = load(data_dir)
    except ConfigError as exc:
        return _refuse(f"{exc} (`retail-coordinator init --data-dir {data_dir}`)", args.json)
    setup_logging(json_logs=args.log_json or config.log_json)

    def announce(api_url: str, superlink_address: str) -> None:
        if args.json:
            print(
                json.dumps(
                    {"api_url": api_url, "superlink_address": superlink_address, "pid": os.getpid()}
                ),
                flush=True,
            )
        else:
            print(f"API: {api_url}\nSuperLink: {superlink_address}", flush=True)

    try:
        return Daemon(data_dir, announce=announce).run()
    except (ServeError, ConfigError, FileNotFoundError) as exc:
        return _refuse(str(exc), args.json)


def cmd_demo(args: argparse.Namespace) -> int:
    from coordinator.demo import DemoError, DemoOptions, interrupt_on_signals, run_demo

    options = DemoOptions(
        workdir=args.workdir, retailers=args.retailers, rounds=args.rounds,
        epsilon=args.epsilon, seed=args.seed,
    )  # fmt: skip
    interrupt_on_signals()
    try:
        summary = run_demo(options, lambda line: print(line, file=sys.stderr, flush=True))
    except DemoError as exc:
        return _refuse(str(exc), args.json)
    except KeyboardInterrupt:
        print("interrupted: every process of the demo was stopped", file=sys.stderr)
        return 130
    if args.json:
        _print_json(summary.to_json())
    else:
        print("\n".join(summary.lines()))
    return EXIT_OK


# -- admin commands over the API --------------------------------------------------------------


def _admin(args: argparse.Namespace, action: Callable[[AdminClient], int]) -> int:
    """Run ``action`` with a client for the daemon of ``--data-dir``; a refusal is exit 1."""
    try:
        with AdminClient(_data_dir(args)) as client:
            return action(client)
    except AdminClientError as exc:
        return _refuse(str(exc), args.json)


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    """A listing whether the API sends a bare list or ``{key: [...]}``."""
    if isinstance(data, dict):
        data = data.get(key, data.get("items", []))
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        seconds = parse_duration(args.expires)
    except ValueError as exc:
        return _fail(str(exc), args.json)

    def action(client: AdminClient) -> int:
        data = client.create_token(args.retailer, seconds)
        if args.json:
            _print_json(data)
            return EXIT_OK
        print(
            f"Enrollment token for {data.get('retailer', args.retailer)} "
            f"(single use, expires {data.get('expires_at')}):"
        )
        print(f"  {data['token']}")
        print("Give it to the retailer out of band; on their machine:")
        print(f"  retail-node enroll {client.base_url} --token {data['token']}")
        return EXIT_OK

    return _admin(args, action)


def cmd_retailers_list(args: argparse.Namespace) -> int:
    def action(client: AdminClient) -> int:
        data = client.retailers()
        if args.json:
            _print_json(data)
            return EXIT_OK
        rows = _items(data, "retailers")
        if not rows:
            print("No retailers enrolled yet (create a token: retail-coordinator token create).")
            return EXIT_OK
        print(f"{'id':>4}  {'name':<28} {'status':<8} {'flower node':<22} enrolled")
        for r in rows:
            node = r.get("flower_node_id")
            print(
                f"{r.get('id', '?')!s:>4}  {r.get('name', '')!s:<28} "
                f"{r.get('status', '')!s:<8} {str(node) if node is not None else 'pending':<22} "
                f"{str(r.get('created_at', ''))[:19]}"
            )
        return EXIT_OK

    return _admin(args, action)


def _campaign_tasks(text: str) -> list[str]:
    from shared.schema import Task

    valid = [task.value for task in Task]
    chosen: list[str] = []
    for raw in text.split(","):
        name = TASK_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in valid:
            raise ValueError(f"unknown task {raw.strip()!r}; use {', '.join(valid)} (or demand)")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"--tasks names no task; use {', '.join(valid)}")
    return chosen


def cmd_campaign_start(args: argparse.Namespace) -> int:
    try:
        tasks = _campaign_tasks(args.tasks)
    except ValueError as exc:
        return _fail(str(exc), args.json)
    if args.rounds < 1:
        return _fail("--rounds must be at least 1", args.json)
    if not args.epsilon > 0:
        return _fail(
            "--epsilon must be a positive number (per retailer, whole campaign)", args.json
        )

    def action(client: AdminClient) -> int:
        data = client.start_campaign(args.rounds, args.epsilon, tasks)
        if args.json:
            _print_json(data)
            return EXIT_OK
        print(
            f"Campaign #{data.get('id')} {data.get('status')}: {data.get('rounds')} rounds, "
            f"ε {data.get('epsilon')} per retailer, tasks {', '.join(data.get('tasks', []))}"
            f"; Flower run {data.get('flower_run_id')}"
        )
        return EXIT_OK

    return _admin(args, action)


def cmd_campaign_list(args: argparse.Namespace) -> int:
    def action(client: AdminClient) -> int:
        data = client.campaigns()
        if args.json:
            _print_json(data)
            return EXIT_OK
        rows = _items(data, "campaigns")
        if not rows:
            print("No campaigns yet (start one: retail-coordinator campaign start).")
            return EXIT_OK
        print(f"{'id':>4}  {'status':<10} {'rounds':>6} {'ε':>6}  {'tasks':<28} created")
        for c in rows:
            print(
                f"{c.get('id', '?')!s:>4}  {c.get('status', '')!s:<10} "
                f"{c.get('rounds', '')!s:>6} {c.get('epsilon', '')!s:>6}  "
                f"{','.join(c.get('tasks', [])):<28} {str(c.get('created_at', ''))[:19]}"
            )
            if c.get("error"):
                print(f"        {c['error']}")
        return EXIT_OK

    return _admin(args, action)


def cmd_status(args: argparse.Namespace) -> int:
    def action(client: AdminClient) -> int:
        data = client.status()
        if args.json:
            _print_json(data)
            return EXIT_OK
        print(f"Coordinator at {client.base_url} (version {data.get('version', '?')})")
        for key, value in data.items():
            if key == "version":
                continue
            if isinstance(value, dict):
                inner = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
                print(f"  {key.replace('_', ' ')}: {inner}")
            else:
                print(f"  {key.replace('_', ' ')}: {value}")
        return EXIT_OK

    return _admin(args, action)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    def action(client: AdminClient) -> int:
        data = client.audit_verify()
        ok = bool(data.get("ok"))
        if args.json:
            _print_json(data)
        elif ok:
            print(f"Audit log intact: {data.get('events')} events, hash chain verified.")
        else:
            print(
                f"AUDIT LOG BROKEN: {len(data.get('problems', []))} problem(s) in "
                f"{data.get('events')} events:",
                file=sys.stderr,
            )
            for problem in data.get("problems", []):
                print(f"  {problem}", file=sys.stderr)
        return EXIT_OK if ok else EXIT_REFUSED

    return _admin(args, action)


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-coordinator", description="Retail Intelligence Platform coordinator"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    tax = sub.add_parser("taxonomy", help="show or export the category taxonomy retailers use")
    tax.add_argument("--json", action="store_true")
    tax.add_argument("--output", help="also write it to this file")
    tax.set_defaults(handler=cmd_taxonomy)

    demo = sub.add_parser(
        "demo",
        help="the whole federation on real processes on this machine (the README's main command)",
        description=(
            "Initialise a coordinator, serve it on free loopback ports, enroll and join synthetic "
            "retailers as headless nodes, run one DP-SGD + SecAgg+ campaign over TLS, compute "
            "every node's insights and stop everything."
        ),
    )
    demo.add_argument("--retailers", type=int, default=5, help="synthetic retailers (at least 5)")
    demo.add_argument("--rounds", type=int, default=3, help="training rounds")
    demo.add_argument("--epsilon", type=float, default=3.0, help="ε per retailer for the campaign")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic retailers")
    demo.add_argument(
        "--workdir", type=Path, default=Path("demo-federation"), help="where everything is kept"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=cmd_demo)

    sim = sub.add_parser(
        "simulate", help="what-if: a federated campaign in the simulation engine over files"
    )
    sim.add_argument("--partitions", required=True, help="folder with one file per retailer")
    how = sim.add_mutually_exclusive_group()
    how.add_argument("--mapping", help="mapping file (JSON) for every partition")
    how.add_argument("--auto-map", action="store_true", help="suggest a mapping per file (default)")
    sim.add_argument("--rounds", type=int, default=5)
    sim.add_argument("--epsilon", type=float, default=3.0, help="ε for the whole run, per retailer")
    sim.add_argument(
        "--statistics-epsilon",
        type=float,
        default=1.0,
        help="ε of the basket statistics (bundles, trends) per retailer; 0 skips them",
    )
    sim.add_argument("--strategy", choices=["fedavg", "fedprox"], default="fedavg")
    sim.add_argument("--proximal-mu", type=float, default=0.1)
    sim.add_argument("--local-epochs", type=int, default=1)
    sim.add_argument("--batch-size", type=int, default=1024)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--workdir", help="keep the simulated nodes' files here")
    sim.add_argument(
        "--insights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each node computes its insights and an HTML report afterwards (default: on)",
    )
    sim.add_argument("--verbose", action="store_true", help="show Flower's and ray's own logs")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(handler=cmd_simulate)

    def leaf(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--data-dir", required=True, type=Path, help="the coordinator's data directory"
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        p = sub.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest=f"{name}_command", required=True)

    init = leaf(sub, "init", cmd_init, "create the data directory: config, CA, database, admin")
    init.add_argument(
        "--force", action="store_true", help="re-initialise (new CA: every node must re-enroll)"
    )
    serve = leaf(sub, "serve", cmd_serve, "run the daemon: SuperLink and HTTP API")
    serve.add_argument("--log-json", action="store_true", help="log one JSON object per line")

    issue = leaf(
        group("credential", "credentials made locally (needs access to the data directory)"),
        "issue",
        cmd_credential_issue,
        "issue an admin or viewer API credential (admin 'admin' replaces the stored one)",
    )
    issue.add_argument("--role", choices=["admin", "viewer"], default="admin")
    issue.add_argument("--name", help="who or what uses it (default: the role)")

    token = leaf(
        group("token", "enrollment tokens for retailers"),
        "create",
        cmd_token_create,
        "create a single-use enrollment token for one retailer",
    )
    token.add_argument("--retailer", required=True, help="the retailer's name")
    token.add_argument(
        "--expires", default="7d", help="lifetime: 45s, 30m, 12h, 7d (default 7d, at most 30d)"
    )

    leaf(group("retailers", "enrolled retailers"), "list", cmd_retailers_list, "list retailers")

    campaigns = group("campaign", "federated training campaigns")
    start = leaf(campaigns, "start", cmd_campaign_start, "start a campaign on the SuperLink")
    start.add_argument("--rounds", type=int, required=True, help="training rounds")
    start.add_argument(
        "--epsilon", type=float, required=True, help="ε per retailer for the whole campaign"
    )
    start.add_argument(
        "--tasks",
        default="demand_pricing",
        help="comma-separated: demand_pricing (alias demand), forecasting, bundles",
    )
    leaf(campaigns, "list", cmd_campaign_list, "list campaigns, newest first")

    leaf(sub, "status", cmd_status, "the daemon's status: SuperLink, retailers, campaigns")
    leaf(
        group("audit", "the hash-chained audit log"),
        "verify",
        cmd_audit_verify,
        "verify the audit log's hash chain (exit 1 when broken)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug must reach the operator as one line, not a traceback
        logging.getLogger(__name__).debug("retail-coordinator failed", exc_info=True)
        return _fail(
            f"unexpected problem ({type(exc).__name__}: {exc}); please report it",
            getattr(args, "json", False),
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
