"""The self-contained HTML insight report a store manager opens offline, or prints.

One file, no JavaScript, no fonts or images from the network: inline CSS, inline SVG charts
(``svg_charts``) and a Content-Security-Policy that forbids the browser from loading anything,
so the report works on a shop computer without internet and cannot leak a byte if someone
emails it on. Every value from the data (product ids, category names, notes) is escaped.
Each section says which computation it shows (batch, time, model version, data fingerprint,
ε spent), because sections can come from different refreshes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from shared.insights import svg_charts as charts
from shared.insights.export import write_text_atomically
from shared.insights.store import KINDS, InsightStore, StoredBatch, check_kind

DEFAULT_TITLE = "Retail insights"
MAX_TABLE_ROWS = 200
MAX_CURVES = 4
MAX_FORECAST_KEYS = 12
MAX_TREND_LINES = len(charts.PALETTE)
HORIZON_ORDER = ("daily", "weekly", "monthly")
MISSING = "—"

SECTION_TITLES = {
    "pricing": "Price recommendations",
    "forecast": "Demand forecasts",
    "bundles": "Bundle suggestions",
    "trends": "Market trends",
    "value": "Value of collaboration",
}

# No network, no script, no plugins: only the inline styles and inline SVG in this file.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1.5rem;
       color: #222; line-height: 1.4; }
header { border-bottom: 2px solid #1f77b4; margin-bottom: 1rem; }
h1 { margin: 0 0 .5rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; font-family: monospace; }
nav a { margin-right: 1rem; }
.provenance, .note, .empty { color: #555; font-size: .9rem; }
.empty { font-style: italic; }
.message { font-size: 1.25rem; font-weight: 600; color: #1a4d80; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { background: #f3f6fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: .75rem; }
figure { margin: 0; } figcaption { font-size: .8rem; color: #555; max-width: 520px; }
@media print { nav { display: none; } section { break-inside: avoid-page; } }
"""


def render_report(
    batches: Mapping[str, StoredBatch],
    *,
    title: str = DEFAULT_TITLE,
    generated_at: datetime | None = None,
) -> str:
    """The whole report as one HTML document; a kind missing from ``batches`` gets a section
    that says there is no data yet."""
    for kind, batch in batches.items():
        check_kind(kind)
        if batch.kind != kind:
            raise ValueError(f"report section {kind!r} was given a {batch.kind} batch")
    moment = (generated_at or datetime.now(UTC)).astimezone(UTC)
    ordered = [batches[k] for k in KINDS if k in batches]
    renderers: dict[str, Callable[[StoredBatch], str]] = {
        "pricing": _pricing,
        "forecast": _forecast,
        "bundles": _bundles,
        "trends": _trends,
        "value": _value,
    }
    sections = [_section(kind, batches.get(kind), renderers[kind]) for kind in KINDS]
    nav = " ".join(f'<a href="#{k}">{escape(SECTION_TITLES[k])}</a>' for k in KINDS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>{_header_meta(ordered, moment)}"
        '<p class="note">Computed on this computer from the shared (federated) model and this '
        "shop's own sales. Nothing in this file needs a network connection.</p>"
        f"<nav>{nav}</nav></header>"
        + "".join(sections)
        + f'<footer class="note">Generated {escape(_when(moment))}.</footer></body></html>\n'
    )


def write_report(
    store: InsightStore,
    path: Path,
    *,
    title: str | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write the newest batch of every kind in ``store`` as one HTML file (atomically)."""
    batches = store.latest_by_kind()
    nodes = sorted({b.node for b in batches.values()})
    heading = title or (f"Insights for {', '.join(nodes)}" if nodes else DEFAULT_TITLE)
    html = render_report(batches, title=heading, generated_at=generated_at)
    return write_text_atomically(Path(path), html)


# -- frame --------------------------------------------------------------------------------------


def _header_meta(batches: Sequence[StoredBatch], moment: datetime) -> str:
    def distinct(values: Iterable[str]) -> str:
        seen = list(dict.fromkeys(v for v in values if v))
        return ", ".join(seen) if seen else MISSING

    spent = max((b.epsilon_spent for b in batches), default=None)
    items = [
        ("Node", distinct(b.node for b in batches)),
        ("Model version", distinct(b.model_version for b in batches)),
        ("Data fingerprint", distinct(b.data_fingerprint for b in batches)),
        ("Privacy budget spent (ε)", MISSING if spent is None else f"{spent:.2f}"),
        ("Generated", _when(moment)),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="meta">{rows}</dl>'


def _section(kind: str, batch: StoredBatch | None, render: Callable[[StoredBatch], str]) -> str:
    heading = f'<section id="{kind}"><h2>{escape(SECTION_TITLES[kind])}</h2>'
    if batch is None:
        return (
            f'{heading}<p class="empty">No {escape(kind)} insights yet. Run '
            "<code>retail-node insights refresh</code> after a training campaign.</p></section>"
        )
    provenance = (
        f'<p class="provenance">Batch #{batch.id}, computed {escape(_when(batch.created_at))} '
        f"with model {escape(batch.model_version)} on data {escape(batch.data_fingerprint)}; "
        f"ε spent then: {batch.epsilon_spent:.2f}; {_plural(len(batch.rows), 'row')}.</p>"
    )
    if not batch.rows:
        reason = batch.meta.get("reason")
        why = f" {escape(str(reason))}" if isinstance(reason, str) and reason else ""
        body = f'<p class="empty">This computation produced no {escape(kind)} rows.{why}</p>'
    else:
        body = render(batch)
    return f"{heading}{provenance}{body}</section>"


# -- sections ---------------------------------------------------------------------------------


def _pricing(batch: StoredBatch) -> str:
    headers = [
        "Product",
        "Category",
        "Current price",
        "Recommended (range)",
        "Objective",
        "Elasticity (range)",
        "Expected units",
        "Revenue change (range)",
        "Margin change (range)",
        "Competitor price",
        "Position",
        "Note",
    ]
    rows = [
        [
            _text(r.get("product_id")),
            _text(r.get("category")),
            _num(r.get("current_price")),
            _with_range(r, "recommended_price", "recommended_low", "recommended_high"),
            _text(r.get("objective")),
            _with_range(r, "elasticity", "elasticity_low", "elasticity_high"),
            _num(r.get("expected_units"), 1),
            _with_range(r, "revenue_change", "revenue_change_low", "revenue_change_high", True),
            _with_range(r, "margin_change", "margin_change_low", "margin_change_high", True),
            _num(r.get("competitor_price")),
            _text(r.get("market_position")),
            _text(r.get("note"), empty=""),
        ]
        for r in batch.rows
    ]
    table = _table(headers, rows, numeric={2, 3, 5, 6, 7, 8, 9}, kind="pricing")
    curves = [c for c in _list(batch.meta.get("curves")) if isinstance(c, Mapping)]
    if not curves:
        return table + '<p class="empty">No demand curves were stored with this computation.</p>'
    figures = "".join(_curve_figure(curve) for curve in curves[:MAX_CURVES])
    return f'{table}<h3>Demand and revenue by price</h3><div class="charts">{figures}</div>'


def _curve_figure(curve: Mapping[str, Any]) -> str:
    product = _text(curve.get("product_id"))
    prices = [
        p if (p := charts.finite(x)) is not None else float("nan")
        for x in _list(curve.get("prices"))
    ]
    markers = [
        charts.Marker(value, label, colour)
        for key, label, colour in (
            ("current_price", "now", "#555555"),
            ("recommended_price", "recommended", "#2ca02c"),
        )
        if (value := charts.finite(curve.get(key))) is not None
    ]
    demand = charts.line_chart(
        [
            charts.Series(
                "units",
                _floats(curve.get("units")),
                xs=prices,
                low=_floats_or_none(curve.get("units_low")),
                high=_floats_or_none(curve.get("units_high")),
            )
        ],
        title=f"{product}: expected units",
        x_label="price",
        y_label="units",
        markers=markers,
        y_from_zero=True,
    )
    money = [
        charts.Series(
            "revenue",
            _floats(curve.get("revenue")),
            xs=prices,
            low=_floats_or_none(curve.get("revenue_low")),
            high=_floats_or_none(curve.get("revenue_high")),
        )
    ]
    margin = _floats_or_none(curve.get("margin"))
    if margin is not None:
        money.append(
            charts.Series("margin", margin, xs=prices, colour=charts.PALETTE[2], dashed=True)
        )
    revenue = charts.line_chart(
        money,
        title=f"{product}: revenue" + (" and margin" if margin is not None else ""),
        x_label="price",
        y_label="per period",
        markers=markers,
        y_from_zero=True,
    )
    caption = "Shaded: the range the model considers plausible."
    return (
        f"<figure>{demand}{revenue}<figcaption>{escape(product)}. {escape(caption)}"
        "</figcaption></figure>"
    )


def _forecast(batch: StoredBatch) -> str:
    category_rows = [r for r in batch.rows if r.get("scope") == "category"]
    product_rows = [r for r in batch.rows if r.get("scope") != "category"]
    charted = category_rows or product_rows
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in charted:
        groups.setdefault(_text(row.get("key")), []).append(row)
    parts: list[str] = []
    what = "category" if category_rows else "product"
    for key, rows in list(groups.items())[:MAX_FORECAST_KEYS]:
        rows.sort(key=_horizon_rank)
        figures = "".join(_forecast_figure(row) for row in rows)
        parts.append(
            f'<h3>{escape(what.title())}: {escape(key)}</h3><div class="charts">{figures}</div>'
        )
    if len(groups) > MAX_FORECAST_KEYS:
        parts.append(
            f'<p class="note">Charts for the first {MAX_FORECAST_KEYS} of {len(groups)} '
            f"{what} keys; export the rest with <code>retail-node insights forecast --export "
            "forecast.csv</code>.</p>"
        )
    if product_rows:
        parts.append("<h3>Products</h3>" + _product_forecast_table(product_rows))
    return "".join(parts)


def _forecast_figure(row: Mapping[str, Any]) -> str:
    starts = [_text(s, empty="") for s in _list(row.get("period_starts"))]
    horizon = _text(row.get("horizon"))
    labels = [s[5:10] if len(s) >= 10 else s for s in starts]  # the year is in the axis label
    level = _interval_level(row.get("interval_level"))
    chart = charts.line_chart(
        [
            charts.Series(
                "forecast",
                _floats(row.get("predicted")),
                low=_floats_or_none(row.get("lower")),
                high=_floats_or_none(row.get("upper")),
            )
        ],
        title=f"{_text(row.get('key'))}: {horizon}",
        x_label=f"period start ({starts[0][:4]})" if starts and starts[0] else "period",
        y_label="units",
        x_tick_labels=labels,
        y_from_zero=True,
    )
    notes = [f"Shaded: {level} interval." if level else "Shaded: prediction interval."]
    trend = row.get("trend")
    if isinstance(trend, Mapping):
        notes.append(_trend_text(trend))
    seasonality = row.get("seasonality")
    if isinstance(seasonality, Mapping) and seasonality:
        factors = sorted(
            ((str(k), v) for k, v in seasonality.items() if charts.finite(v) is not None),
            key=lambda item: -abs(float(item[1]) - 1.0),
        )[:3]
        if factors:
            notes.append(
                "Seasonality: " + ", ".join(f"{k} x{float(v):.2f}" for k, v in factors) + "."
            )
    return f"<figure>{chart}<figcaption>{escape(' '.join(notes))}</figcaption></figure>"


def _product_forecast_table(rows: Sequence[Mapping[str, Any]]) -> str:
    headers = [
        "Product",
        "Category",
        "Horizon",
        "Next period",
        "Next predicted (interval)",
        "Periods",
        "Total predicted",
        "Trend",
    ]
    table_rows = []
    for row in sorted(rows, key=lambda r: (_text(r.get("key")), _horizon_rank(r))):
        predicted = _floats(row.get("predicted"))
        lower, upper = _floats(row.get("lower")), _floats(row.get("upper"))
        starts = _list(row.get("period_starts"))
        first = predicted[0] if predicted else None
        interval = _span_text(lower[0] if lower else None, upper[0] if upper else None)
        known = [p for p in predicted if p is not None]
        trend = row.get("trend")
        table_rows.append(
            [
                _text(row.get("key")),
                _text(row.get("category")),
                _text(row.get("horizon")),
                _text(starts[0]) if starts else MISSING,
                f"{_num(first, 1)}{f' ({interval})' if interval else ''}",
                str(len(predicted)),
                _num(sum(known), 1) if known else MISSING,
                _trend_text(trend, sentence=False) if isinstance(trend, Mapping) else MISSING,
            ]
        )
    return _table(headers, table_rows, numeric={4, 5, 6}, kind="forecast")


def _bundles(batch: StoredBatch) -> str:
    headers = [
        "Bundle",
        "Products",
        "Categories",
        "Bundle price",
        "Bought separately",
        "Discount",
        "Expected lift",
        "Confidence",
        "For",
        "Score",
        "Why",
    ]
    rows = []
    for r in batch.rows:
        separate = [p for p in _floats(r.get("individual_prices")) if p is not None]
        rows.append(
            [
                _text(r.get("bundle_id")),
                _joined(r.get("products")),
                _joined(r.get("categories")),
                _num(r.get("bundle_price")),
                _num(sum(separate)) if separate else MISSING,
                _pct(r.get("discount_pct")),
                _num(r.get("expected_lift")),
                _num(r.get("confidence")),
                _joined(r.get("target_segments")),
                _num(r.get("score")),
                " ".join(t for t in (_text(r.get("context"), empty=""), _joined_notes(r)) if t),
            ]
        )
    return _table(headers, rows, numeric={3, 4, 5, 6, 7, 9}, kind="bundles")


def _joined_notes(row: Mapping[str, Any]) -> str:
    return " ".join(_text(n, empty="") for n in _list(row.get("notes")))


def _trends(batch: StoredBatch) -> str:
    published = [r for r in batch.rows if r.get("status") != "withheld"]
    withheld = [r for r in batch.rows if r.get("status") == "withheld"]
    parts: list[str] = []
    weeks = sorted({_text(w, empty="") for r in published for w in _list(r.get("weeks"))} - {""})
    position = {week: i for i, week in enumerate(weeks)}
    series: list[charts.Series] = []
    for index, row in enumerate(r for r in published if _list(r.get("weeks"))):
        xs: list[float] = []
        ys: list[float | None] = []
        for week, value in zip(_list(row.get("weeks")), _list(row.get("index")), strict=False):
            if _text(week, empty="") in position:
                xs.append(float(position[_text(week)]))
                ys.append(charts.finite(value))
        colour = charts.PALETTE[index % len(charts.PALETTE)]
        series.append(charts.Series(_text(row.get("category")), ys, xs=xs, colour=colour))
    if series:
        figures = []
        for start in range(0, len(series), MAX_TREND_LINES):
            chunk = series[start : start + MAX_TREND_LINES]
            figures.append(
                charts.line_chart(
                    chunk,
                    title="Market index by week"
                    + (
                        f" ({start // MAX_TREND_LINES + 1})"
                        if len(series) > MAX_TREND_LINES
                        else ""
                    ),
                    x_label="week",
                    y_label="index",
                    x_tick_labels=[w[5:10] if len(w) >= 10 else w for w in weeks],
                    width=760,
                    height=280,
                )
            )
        parts.append(f'<div class="charts">{"".join(figures)}</div>')
    if published:
        rows = [
            [
                _text(r.get("category")),
                _num(r.get("contributors"), 0),
                str(len(_list(r.get("weeks")))),
                _num(_last_known(_floats(r.get("index")))),
                _pct(r.get("change_pct")),
            ]
            for r in published
        ]
        parts.append(
            _table(
                ["Category", "Contributing shops", "Weeks", "Latest index", "Recent change"],
                rows,
                numeric={1, 2, 3, 4},
                kind="trends",
            )
        )
    else:
        parts.append('<p class="empty">No category had enough contributing shops to publish.</p>')
    if withheld:
        rows = [[_text(r.get("category")), _text(r.get("reason"), empty=MISSING)] for r in withheld]
        parts.append(
            '<h3>Withheld categories</h3><p class="note">Not published, to protect the shops '
            "that contributed.</p>" + _table(["Category", "Reason"], rows, kind="trends")
        )
    return "".join(parts)


def _value(batch: StoredBatch) -> str:
    parts = []
    for row in batch.rows:
        message = row.get("message")
        if message:
            parts.append(f'<p class="message">{escape(_text(message))}</p>')
    bars: list[tuple[str, float | None]] = []
    for row in batch.rows:
        prefix = f"{_text(row.get('node'))}: " if len(batch.rows) > 1 else ""
        bars.append((f"{prefix}your data alone", charts.finite(row.get("local_wape"))))
        bars.append((f"{prefix}with the federation", charts.finite(row.get("federated_wape"))))
    colours = [charts.PALETTE[4], charts.PALETTE[2]]
    parts.append(
        charts.bar_chart(
            bars,
            title="Forecast error on held-out days (WAPE, lower is better)",
            y_label="WAPE",
            colours=colours,
            width=max(420, 150 * len(bars)),
        )
    )
    rows = [
        [
            _text(r.get("node")),
            _num(r.get("local_wape"), 3),
            _num(r.get("federated_wape"), 3),
            _pct(r.get("improvement_pct")),
            _num(r.get("holdout_days"), 0),
            _count(r.get("examples")),
        ]
        for r in batch.rows
    ]
    parts.append(
        _table(
            [
                "Node",
                "Error, own data only",
                "Error, with federation",
                "Improvement",
                "Held-out days",
                "Examples scored",
            ],
            rows,
            numeric={1, 2, 3, 4, 5},
            kind="value",
        )
    )
    for row in batch.rows:
        examples = [e for e in _list(row.get("examples")) if isinstance(e, Mapping)]
        if examples:
            headers = list(dict.fromkeys(k for e in examples for k in e))
            cells = [[_cell(e.get(h)) for h in headers] for e in examples]
            parts.append("<h3>Examples</h3>" + _table(headers, cells, kind="value"))
    return "".join(parts)


# -- formatting -------------------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: set[int] | frozenset[int] = frozenset(),
    kind: str = "",
) -> str:
    """An escaped HTML table of plain-text cells; long tables are cut with a pointer to the
    full CSV export."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(
            f'<td class="num">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if len(rows) > MAX_TABLE_ROWS:
        more = (
            f'<p class="note">Showing the first {MAX_TABLE_ROWS} of {len(rows)} rows; export '
            f"all with <code>retail-node insights {escape(kind)} --export {escape(kind)}.csv"
            "</code>.</p>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _text(value: Any, empty: str = MISSING) -> str:
    """Plain text for any value; escaping happens where the text meets HTML."""
    if value is None or value == "":
        return empty
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _num(value)
    return _text(value)


def _num(value: Any, digits: int = 2) -> str:
    number = charts.finite(value)
    if number is None:
        return MISSING if value is None or not isinstance(value, str) else value
    return f"{number:,.{digits}f}"


def _signed(value: Any, digits: int = 2) -> str:
    number = charts.finite(value)
    return MISSING if number is None else f"{number:+,.{digits}f}"


def _pct(value: Any) -> str:
    number = charts.finite(value)
    return MISSING if number is None else f"{number:.1f}%"


def _span_text(low: Any, high: Any, signed: bool = False) -> str:
    fmt = _signed if signed else _num
    if charts.finite(low) is None and charts.finite(high) is None:
        return ""
    return f"{fmt(low)} to {fmt(high)}"


def _with_range(row: Mapping[str, Any], key: str, low: str, high: str, signed: bool = False) -> str:
    centre = (_signed if signed else _num)(row.get(key))
    span = _span_text(row.get(low), row.get(high), signed)
    return f"{centre} ({span})" if span else centre


def _joined(value: Any) -> str:
    items = _list(value)
    return ", ".join(_text(v) for v in items) if items else _text(value if value != [] else None)


def _count(value: Any) -> str:
    """``examples`` is a count from the value engine; a list of examples counts its items."""
    if isinstance(value, list | tuple):
        return str(len(value))
    return _num(value, 0)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _floats(value: Any) -> list[float | None]:
    return [charts.finite(v) for v in _list(value)]


def _floats_or_none(value: Any) -> list[float | None] | None:
    return _floats(value) if isinstance(value, list | tuple) else None


def _last_known(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _interval_level(value: Any) -> str:
    level = charts.finite(value)
    if level is None or level <= 0:
        return ""
    return f"{level * 100:.0f}%" if level <= 1 else f"{level:.0f}%"


def _trend_text(trend: Mapping[str, Any], *, sentence: bool = True) -> str:
    direction = _text(trend.get("direction"), empty="")
    change = charts.finite(trend.get("weekly_change_pct"))
    rate = f"{change:+.1f}% a week" if change is not None else ""
    if not sentence:
        return " ".join(p for p in (direction, f"({rate})" if rate else "") if p) or MISSING
    text = f"Trend: {direction}" if direction else "Trend"
    return text + (f" ({rate})." if rate else ".")


def _horizon_rank(row: Mapping[str, Any]) -> int:
    horizon = row.get("horizon")
    return HORIZON_ORDER.index(horizon) if horizon in HORIZON_ORDER else len(HORIZON_ORDER)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
