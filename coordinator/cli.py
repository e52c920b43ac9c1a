"""``retail-coordinator``: the coordinator's daemon and admin CLI.

It publishes the category taxonomy retailers map onto and runs what-if simulations of a
federated campaign over a folder of retailer files; the daemon, enrollment and campaign
commands arrive with the coordinator issue. Exit codes: 0 done, 1 the study could not run on
this data, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

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
