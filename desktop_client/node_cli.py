"""``retail-node``: the headless retailer CLI. Scripts rely on its commands, flags and exit codes.

Exit codes: 0 success (warnings allowed), 1 the data is invalid, 2 the file is unreadable or the
command was used wrongly. ``--json`` prints machine-readable output; human output is a summary,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from desktop_client.enroll_cli import register as register_enroll_command
from desktop_client.insights_cli import register as register_insight_commands
from desktop_client.join_cli import register as register_join_commands
from desktop_client.node_home import NodeHome
from desktop_client.report_text import describe_report
from shared.ingest import (
    ColumnMapping,
    DateOrder,
    ImportOptions,
    MappingFileError,
    import_file,
    load_mapping,
    suggest_mapping,
    write_canonical,
)
from shared.ingest.readers import UnreadableSource, read_table
from shared.schema import Task, ValidationSettings

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        _print_json({"ok": False, "error": message})
    else:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_generate_demo(args: argparse.Namespace) -> int:
    from shared.synthetic import generate_demo

    if args.retailers < 1:
        return _fail("--retailers must be at least 1", args.json)
    manifest = generate_demo(Path(args.out_dir), retailers=args.retailers, seed=args.seed)
    if args.json:
        _print_json(
            {
                "out_dir": str(manifest.out_dir),
                "seed": manifest.seed,
                "ground_truth": str(manifest.ground_truth_path),
                "retailers": [
                    {
                        "retailer_id": r.retailer_id,
                        "dialect": r.dialect,
                        "path": str(r.path),
                        "rows": r.rows,
                        "products": r.products,
                        "baskets": r.baskets,
                    }
                    for r in manifest.retailers
                ],
            }
        )
        return EXIT_OK
    print(f"Generated {len(manifest.retailers)} retailers in {args.out_dir}:")
    for retailer in manifest.retailers:
        print(
            f"  {retailer.retailer_id}: {retailer.path} ({retailer.dialect}, "
            f"{retailer.rows:,} rows, {retailer.products} products)"
        )
    print(f"Planted parameters: {Path(args.out_dir) / 'ground_truth.json'}")
    return EXIT_OK


def cmd_map(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        raw = read_table(path, encoding=args.encoding, delimiter=args.delimiter, sheet=args.sheet)
    except UnreadableSource as exc:
        return _fail(str(exc), args.json)
    suggestion = suggest_mapping(raw.table)
    if args.save:
        home = NodeHome.locate(args.data_dir)
        saved = home.mappings.save(raw.headers, suggestion.to_mapping())
    if args.json:
        data = {"file": str(path), "headers": raw.headers, **suggestion.to_json()}
        if args.save:
            data["saved_to"] = str(saved)
        _print_json(data)
        return EXIT_OK
    print(f"Suggested mapping for {path}:")
    for column in suggestion.columns:
        print(
            f"  {column.field:<17} <- {column.source!r:<24} "
            f"confidence {column.confidence:.2f} (from {column.reason})"
        )
    if suggestion.missing_fields:
        print("  not found: " + ", ".join(suggestion.missing_fields))
    if suggestion.unmapped_sources:
        print("  unused columns: " + ", ".join(suggestion.unmapped_sources))
    if args.save:
        print(f"Saved for the next import of this layout: {saved}")
    return EXIT_OK


def _tasks(text: str | None) -> frozenset[Task] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    aliases = {"demand": Task.DEMAND_PRICING, "pricing": Task.DEMAND_PRICING}
    try:
        return frozenset(aliases.get(n) or Task(n) for n in names)
    except ValueError as exc:
        valid = ", ".join(t.value for t in Task)
        raise argparse.ArgumentTypeError(f"unknown task in {text!r}; use {valid}") from exc


def cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file)
    home = NodeHome.locate(args.data_dir)
    mapping: ColumnMapping | None = None
    if args.mapping:
        try:
            mapping = load_mapping(Path(args.mapping))
        except MappingFileError as exc:
            return _fail(str(exc), args.json)
    try:
        tasks = _tasks(args.tasks)
    except argparse.ArgumentTypeError as exc:
        return _fail(str(exc), args.json)
    settings = ValidationSettings() if tasks is None else ValidationSettings(tasks=tasks)
    options = ImportOptions(
        encoding=args.encoding,
        delimiter=args.delimiter,
        sheet=args.sheet,
        date_order=DateOrder(args.date_order) if args.date_order else None,
        settings=settings,
        strict_tasks=tasks is not None,
        customer_key=home.customer_key(),
    )
    store = None if args.auto_map else home.mappings
    result = import_file(path, mapping, options, store=store)
    report = result.report
    extra: dict[str, Any] = {}
    if report.valid and result.frame is not None:
        if args.output:
            extra["canonical"] = str(write_canonical(result.frame, Path(args.output)))
        if args.save_mapping and result.mapping is not None:
            extra["mapping_saved_to"] = str(home.mappings.save(result.headers, result.mapping))
    if args.json:
        data = report.to_json()
        data["mapping_file"] = result.mapping.to_json() if result.mapping else None
        data.update(extra)
        _print_json(data)
    else:
        print(describe_report(report))
        for key, value in extra.items():
            print(f"{key.replace('_', ' ')}: {value}")
    if not report.readable:
        return EXIT_USAGE
    return EXIT_OK if report.valid else EXIT_INVALID


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-node",
        description="Retail Intelligence Platform: the retailer's node (headless).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate-demo", help="write synthetic retailers' sales exports")
    gen.add_argument("out_dir")
    gen.add_argument("--retailers", type=int, default=5)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(handler=cmd_generate_demo)

    def source_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("file", help="sales export: CSV/TSV, .xlsx or .parquet")
        p.add_argument("--encoding", help="override the detected text encoding")
        p.add_argument("--delimiter", help="override the detected column separator")
        p.add_argument("--sheet", help="Excel sheet to read (default: first non-empty)")
        p.add_argument("--data-dir", type=Path, help="this node's data directory")
        p.add_argument("--json", action="store_true", help="print JSON")

    mapper = sub.add_parser("map", help="suggest which column holds which field")
    source_options(mapper)
    mapper.add_argument("--save", action="store_true", help="save it for this export layout")
    mapper.set_defaults(handler=cmd_map)

    val = sub.add_parser("validate", help="check a sales export and report every problem")
    source_options(val)
    how = val.add_mutually_exclusive_group()
    how.add_argument("--mapping", help="mapping file (JSON) to use")
    how.add_argument("--auto-map", action="store_true", help="ignore saved mappings; suggest one")
    val.add_argument("--tasks", help="only these tasks: demand_pricing,forecasting,bundles")
    val.add_argument("--date-order", choices=[o.value for o in DateOrder])
    val.add_argument("--save-mapping", action="store_true", help="remember the mapping if valid")
    val.add_argument("--output", help="write the canonical frame (Parquet) here if valid")
    val.set_defaults(handler=cmd_validate)

    register_insight_commands(sub)  # insights {kind,refresh}, report
    register_enroll_command(sub)  # enroll URL --token TOKEN
    register_join_commands(sub)  # join, leave, status
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("shared").setLevel(logging.CRITICAL)  # failures are in the report
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a reader that left shows up here, not as a traceback at exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `retail-node insights forecast | head`: the reader left
        with contextlib.suppress(OSError, ValueError):  # stdout may have no file descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", args.json)
    except Exception as exc:  # a bug must reach the user as one line, not a traceback
        logging.getLogger(__name__).debug("retail-node failed", exc_info=True)
        return _fail(
            f"unexpected problem ({type(exc).__name__}: {exc}); please report it", args.json
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
