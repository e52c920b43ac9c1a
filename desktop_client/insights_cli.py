"""``retail-node insights`` and ``retail-node report``: read the node's insight store offline.

Store managers read insights with no network and no coordinator: every command here reads
only ``insights.sqlite`` in the node directory (``refresh`` recomputes it from the node's own
files). Same contract as the rest of ``retail-node``: exit 0 ok, 1 a problem the user can fix
(the message names the directory and what to run), 2 a usage error; ``--json`` output goes to
stdout only; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from desktop_client.node_home import NodeHome
from shared.insights.export import EXPORT_SUFFIXES, export_file
from shared.insights.html_report import write_report
from shared.insights.store import (
    INSIGHTS_FILENAME,
    KINDS,
    InsightStore,
    InsightStoreError,
    NoInsightsError,
    StoredBatch,
)

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
MAX_CELL = 40
MISSING = "-"
TITLES = {
    "pricing": "Price recommendations",
    "forecast": "Demand forecasts",
    "bundles": "Bundle suggestions",
    "trends": "Market trends",
    "value": "Value of collaboration",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``insights`` and ``report`` to the ``retail-node`` sub-commands."""
    insights = sub.add_parser(
        "insights",
        help="show this node's latest insights (offline), or refresh them",
        description="Show the newest stored insights of one kind, or recompute all of them.",
    )
    insights.add_argument("what", choices=[*KINDS, "refresh"], help="insight kind, or refresh")
    insights.add_argument("--data-dir", type=Path, help="this node's data directory")
    insights.add_argument("--json", action="store_true", help="print JSON")
    insights.add_argument(
        "--history", type=int, metavar="N", help="list the N newest computations instead"
    )
    insights.add_argument(
        "--export",
        type=Path,
        metavar="FILE",
        help="write the latest batch to FILE.csv or FILE.json (with --history: .json only)",
    )
    insights.set_defaults(handler=cmd_insights)

    report = sub.add_parser(
        "report",
        help="write every latest insight as one offline HTML file",
        description="Write a self-contained HTML report (no network needed to open it).",
    )
    report.add_argument("out", type=Path, help="the HTML file to write, e.g. insights.html")
    report.add_argument("--data-dir", type=Path, help="this node's data directory")
    report.add_argument("--title", help="heading of the report (default: the node's name)")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=cmd_report)


# -- commands ---------------------------------------------------------------------------------


def cmd_insights(args: argparse.Namespace) -> int:
    root = NodeHome.locate(args.data_dir).root
    if args.what == "refresh":
        if args.history is not None or args.export is not None:
            return _usage("insights refresh takes no --history or --export", args.json)
        return _refresh(root, args.json)
    if args.history is not None and args.history < 1:
        return _usage("--history must be at least 1", args.json)
    if args.export is not None:
        suffix = args.export.suffix.lower()
        if suffix not in EXPORT_SUFFIXES:
            return _usage(
                f"{args.export}: unknown export format; name the file .csv or .json", args.json
            )
        if args.history is not None and suffix != ".json":
            return _usage("a CSV file holds one batch; export --history to a .json file", args.json)
    try:
        with InsightStore.in_data_dir(root, create=False) as store:
            if args.history is not None:
                return _show_history(store, root, args)
            batch = store.latest(args.what)
    except NoInsightsError:
        return _problem(_nothing_yet(root), args.json)
    except InsightStoreError as exc:
        return _problem(str(exc), args.json)
    if batch is None:
        return _problem(_nothing_yet(root, args.what), args.json)
    if args.export is not None:
        written = export_file(batch, args.export)
        if args.json:
            _print_json({"exported": str(written), "batch": batch.summary()})
        else:
            print(f"Exported {args.what} batch #{batch.id} ({batch.row_count} rows) to {written}")
        return EXIT_OK
    if args.json:
        _print_json(batch.to_json())
    else:
        print(describe_batch(batch))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    root = NodeHome.locate(args.data_dir).root
    try:
        with InsightStore.in_data_dir(root, create=False) as store:
            if store.count() == 0:
                return _problem(_nothing_yet(root), args.json)
            sections = {kind: batch.id for kind, batch in store.latest_by_kind().items()}
            written = write_report(store, args.out, title=args.title)
    except NoInsightsError:
        return _problem(_nothing_yet(root), args.json)
    except InsightStoreError as exc:
        return _problem(str(exc), args.json)
    if args.json:
        _print_json(
            {"report": str(written), "sections": {kind: sections.get(kind) for kind in KINDS}}
        )
        return EXIT_OK
    shown = ", ".join(f"{kind} #{batch_id}" for kind, batch_id in sections.items())
    missing = [kind for kind in KINDS if kind not in sections]
    print(f"Wrote the insight report to {written} ({shown})")
    if missing:
        print(f"No insights yet for: {', '.join(missing)}")
    return EXIT_OK


def _refresh(root: Path, as_json: bool) -> int:
    """Recompute every insight from the node's own files; the engines load lazily because
    they need numpy, pandas and torch, which the read-only commands never do."""
    try:
        from shared.insights.engine import refresh_insights
    except ModuleNotFoundError as exc:
        if exc.name != "shared.insights.engine":
            raise
        return _problem("this installation has no insight engines; update retail-node", as_json)
    try:
        with warnings.catch_warnings():
            # torch's notes for developers (beta sparse tensors, ...) are not for shop staff.
            warnings.simplefilter("ignore", UserWarning)
            batches: list[StoredBatch] = refresh_insights(root)
    except InsightStoreError as exc:
        return _problem(str(exc), as_json)
    except ValueError as exc:
        # Already imported by whoever raised it, so this costs nothing on the way out.
        from shared.insights.context import InsightInputError

        if isinstance(exc, InsightInputError):
            return _problem(str(exc), as_json)
        raise
    if as_json:
        _print_json({"data_dir": str(root), "batches": [b.summary() for b in batches]})
        return EXIT_OK
    print(f"Refreshed the insights in {root}:")
    for batch in batches:
        print(
            f"  {batch.kind:<9} batch #{batch.id:<5} {batch.row_count:>6} rows"
            f"  model {batch.model_version}"
        )
    print("See them with `retail-node insights <kind>` or `retail-node report insights.html`.")
    return EXIT_OK


def _show_history(store: InsightStore, root: Path, args: argparse.Namespace) -> int:
    kind: str = args.what
    if args.export is not None:
        found = store.history(kind, args.history, with_rows=True)
        if not found:
            return _problem(_nothing_yet(root, kind), args.json)
        written = export_file(found, args.export)
        if args.json:
            _print_json({"exported": str(written), "batches": [b.summary() for b in found]})
        else:
            print(f"Exported {len(found)} {kind} batches to {written}")
        return EXIT_OK
    found = store.history(kind, args.history)
    if not found:
        return _problem(_nothing_yet(root, kind), args.json)
    if args.json:
        _print_json({"kind": kind, "data_dir": str(root), "history": [b.summary() for b in found]})
        return EXIT_OK
    print(f"{TITLES[kind]} in {root}, newest first:")
    headers = ["batch", "computed", "model", "data", "ε spent", "rows"]
    rows = [
        [
            f"#{b.id}",
            _when(b.created_at),
            b.model_version,
            b.data_fingerprint,
            f"{b.epsilon_spent:.2f}",
            str(b.row_count),
        ]
        for b in found
    ]
    print(format_table(headers, rows, numeric={4, 5}))
    return EXIT_OK


# -- text output ------------------------------------------------------------------------------


def describe_batch(batch: StoredBatch) -> str:
    """A batch as a heading with its provenance and a plain-text table."""
    heading = (
        f"{TITLES[batch.kind]} for {_clean(batch.node)}: batch #{batch.id}, computed "
        f"{_when(batch.created_at)}, model {_clean(batch.model_version)}, data "
        f"{_clean(batch.data_fingerprint)}, ε spent {batch.epsilon_spent:.2f}"
    )
    if not batch.rows:
        reason = batch.meta.get("reason")
        why = f": {_clean(reason)}" if isinstance(reason, str) and reason else ""
        return f"{heading}\n(no rows in this computation{why})"
    lines = [heading]
    if batch.kind == "value":
        lines.extend(f"  {_clean(str(r['message']))}" for r in batch.rows if r.get("message"))
    headers, numeric, cells = _COLUMNS[batch.kind]
    lines.append(format_table(headers, [cells(row) for row in batch.rows], numeric=numeric))
    return "\n".join(lines)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: set[int] | None = None
) -> str:
    """Aligned columns; cells are cleaned of control characters and, except in the last
    column (free text such as a reason), cut at ``MAX_CELL``."""
    numeric = numeric or set()
    last = len(headers) - 1
    table = [
        [_clean(c) if i == last else _clip(_clean(c)) for i, c in enumerate(row)]
        for row in [headers, *rows]
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pricing_cells(r: Mapping[str, Any]) -> list[str]:
    return [
        _txt(r.get("product_id")),
        _txt(r.get("category")),
        _num(r.get("current_price")),
        _num(r.get("recommended_price")),
        _span(r.get("recommended_low"), r.get("recommended_high")),
        _txt(r.get("objective")),
        _num(r.get("elasticity")),
        _num(r.get("revenue_change"), signed=True),
        _num(r.get("margin_change"), signed=True),
        _txt(r.get("market_position")),
    ]


def _forecast_cells(r: Mapping[str, Any]) -> list[str]:
    predicted, lower, upper = (_seq(r.get(k)) for k in ("predicted", "lower", "upper"))
    starts = _seq(r.get("period_starts"))
    raw_trend = r.get("trend")
    trend: Mapping[str, Any] = raw_trend if isinstance(raw_trend, Mapping) else {}
    change = _number(trend.get("weekly_change_pct"))
    return [
        _txt(r.get("scope")),
        _txt(r.get("key")),
        _txt(r.get("horizon")),
        _txt(starts[0]) if starts else MISSING,
        _num(predicted[0] if predicted else None, 1),
        _span(lower[0] if lower else None, upper[0] if upper else None, 1),
        str(len(predicted)),
        _txt(trend.get("direction")) + (f" {change:+.1f}%/wk" if change is not None else ""),
    ]


def _bundle_cells(r: Mapping[str, Any]) -> list[str]:
    separate = [p for p in (_number(v) for v in _seq(r.get("individual_prices"))) if p is not None]
    discount = _number(r.get("discount_pct"))
    return [
        _txt(r.get("bundle_id")),
        " + ".join(_txt(p) for p in _seq(r.get("products"))) or MISSING,
        _num(r.get("bundle_price")),
        _num(sum(separate)) if separate else MISSING,
        f"{discount:.1f}%" if discount is not None else MISSING,
        _num(r.get("expected_lift")),
        _num(r.get("confidence")),
        _num(r.get("score")),
    ]


def _trend_cells(r: Mapping[str, Any]) -> list[str]:
    index = [v for v in (_number(x) for x in _seq(r.get("index"))) if v is not None]
    return [
        _txt(r.get("category")),
        _txt(r.get("status")),
        _num(r.get("contributors"), 0),
        str(len(_seq(r.get("weeks")))),
        _num(index[-1] if index else None, 1),
        _txt(r.get("reason"), empty=""),
    ]


def _value_cells(r: Mapping[str, Any]) -> list[str]:
    improvement = _number(r.get("improvement_pct"))
    return [
        _txt(r.get("node")),
        _num(r.get("local_wape"), 3),
        _num(r.get("federated_wape"), 3),
        f"{improvement:+.1f}%" if improvement is not None else MISSING,
        _num(r.get("holdout_days"), 0),
    ]


_COLUMNS: dict[str, tuple[list[str], set[int], Callable[[Mapping[str, Any]], list[str]]]] = {
    "pricing": (
        [
            "product",
            "category",
            "current",
            "recommended",
            "range",
            "objective",
            "elasticity",
            "revenue chg",
            "margin chg",
            "position",
        ],
        {2, 3, 6, 7, 8},
        _pricing_cells,
    ),
    "forecast": (
        ["scope", "key", "horizon", "from", "next", "interval", "periods", "trend"],
        {4, 6},
        _forecast_cells,
    ),
    "bundles": (
        ["bundle", "products", "price", "separately", "discount", "lift", "confidence", "score"],
        {2, 3, 4, 5, 6, 7},
        _bundle_cells,
    ),
    "trends": (
        ["category", "status", "shops", "weeks", "latest index", "reason"],
        {2, 3, 4},
        _trend_cells,
    ),
    "value": (
        ["node", "own data error", "federated error", "improvement", "held-out days"],
        {1, 2, 3, 4},
        _value_cells,
    ),
}


# -- helpers ----------------------------------------------------------------------------------


def _nothing_yet(root: Path, kind: str | None = None) -> str:
    what = f"no {kind} insights" if kind else "no insights"
    return (
        f"{what} yet in {root} ({INSIGHTS_FILENAME}): run `retail-node insights refresh` "
        "after a training campaign"
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _problem(message: str, as_json: bool) -> int:
    _report_error(message, as_json)
    return EXIT_PROBLEM


def _usage(message: str, as_json: bool) -> int:
    _report_error(message, as_json)
    return EXIT_USAGE


def _report_error(message: str, as_json: bool) -> None:
    if as_json:
        _print_json({"ok": False, "error": message})
    else:
        print(f"error: {message}", file=sys.stderr)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _num(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    number = _number(value)
    if number is None:
        return MISSING
    return f"{number:+,.{digits}f}" if signed else f"{number:,.{digits}f}"


def _span(low: Any, high: Any, digits: int = 2) -> str:
    if _number(low) is None and _number(high) is None:
        return MISSING
    return f"{_num(low, digits)}-{_num(high, digits)}"


def _txt(value: Any, empty: str = MISSING) -> str:
    if value is None or value == "":
        return empty
    return str(value)


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _clean(text: str) -> str:
    """Data reaches the terminal: control characters (escape sequences) become '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
