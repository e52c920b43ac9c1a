"""The insight report as a PDF, written with Qt's own PDF writer (no extra dependency).

The document is Qt rich text (tables, headings, provenance lines) with the charts drawn by
``shared.insights.svg_charts`` (the same charts as the HTML report) rasterised to images, so a
PDF and an HTML report of the same store show the same pictures. Text stays text (selectable,
searchable). Written to a temporary file beside the target and renamed over it, so a failed
export never leaves half a PDF behind. Needs a Q(Gui)Application for fonts; no widgets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from PySide6.QtCore import QByteArray, QMarginsF, QSize, QUrl
from PySide6.QtGui import (
    QColor,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextDocument,
)
from PySide6.QtSvg import QSvgRenderer

from desktop_client.viewmodels import insights_forecast as forecast_vm
from desktop_client.viewmodels import insights_market as market_vm
from desktop_client.viewmodels import insights_pricing as pricing_vm
from desktop_client.viewmodels.insights import (
    Provenance,
    empty_message,
    no_rows_message,
    tr,
    when,
)
from desktop_client.viewmodels.insights_tables import Table, num, text
from shared.insights import svg_charts as charts
from shared.insights.store import KINDS, StoredBatch

MAX_PDF_ROWS = 100
MAX_CURVES = 3
MAX_FORECAST_CHARTS = 4
CHART_SCALE = 2  # raster at twice the SVG's size so print stays sharp
RESOLUTION_DPI = 150

SECTION_TITLES = {
    "pricing": "Price recommendations",
    "forecast": "Demand forecasts",
    "bundles": "Bundle suggestions",
    "trends": "Market trends",
    "value": "Value of collaboration",
}


class PdfReport:
    """Builds the rich-text document and its chart images for the newest batch of each kind."""

    def __init__(self, batches: Mapping[str, StoredBatch], title: str) -> None:
        self.batches = batches
        self.title = title
        self.images: dict[str, QImage] = {}

    def html(self, generated_at: datetime | None = None) -> str:
        moment = generated_at or datetime.now(UTC)
        parts = [
            f"<h1>{escape(self.title)}</h1>",
            "<p>"
            + escape(
                tr(
                    "Computed on this computer from the shared (federated) model and this "
                    "shop's own sales. Generated {when}."
                ).format(when=when(moment))
            )
            + "</p>",
        ]
        for kind in KINDS:
            parts.append(f"<h2>{escape(tr(SECTION_TITLES[kind]))}</h2>")
            batch = self.batches.get(kind)
            if batch is None:
                parts.append(f"<p><i>{escape(empty_message(kind))}</i></p>")
                continue
            parts.append(f"<p><small>{escape(Provenance.of(batch).text())}</small></p>")
            if not batch.rows:
                parts.append(f"<p><i>{escape(no_rows_message(batch))}</i></p>")
                continue
            parts.append(getattr(self, f"_{kind}")(batch))
        return "".join(parts)

    # -- sections -----------------------------------------------------------------------------

    def _pricing(self, batch: StoredBatch) -> str:
        parts = [_table(pricing_vm.pricing_table(batch))]
        for product in pricing_vm.product_ids(batch)[:MAX_CURVES]:
            curve = pricing_vm.curve_for(batch, product)
            if curve is None:
                continue
            markers = [
                charts.Marker(value, label, colour)
                for value, label, colour in (
                    (curve.current_price, tr("now"), "#555555"),
                    (curve.recommended_price, tr("recommended"), "#2ca02c"),
                )
                if value is not None
            ]
            money = [
                charts.Series(
                    tr("revenue"),
                    curve.revenue,
                    xs=curve.prices,
                    low=curve.revenue_low,
                    high=curve.revenue_high,
                )
            ]
            if curve.margin is not None:
                money.append(
                    charts.Series(
                        tr("margin"), curve.margin, xs=curve.prices, colour=charts.PALETTE[2]
                    )
                )
            svg = charts.line_chart(
                money,
                title=tr("{product}: revenue by price").format(product=product),
                x_label=tr("price"),
                y_label=tr("per period"),
                markers=markers,
                y_from_zero=True,
            )
            parts.append(self._image(svg, f"pricing-{len(self.images)}"))
        return "".join(parts)

    def _forecast(self, batch: StoredBatch) -> str:
        parts = []
        for choice in forecast_vm.choices(batch)[:MAX_FORECAST_CHARTS]:
            found = forecast_vm.series(batch, choice, "weekly") or next(
                (
                    s
                    for h in forecast_vm.horizons(batch, choice)
                    if (s := forecast_vm.series(batch, choice, h)) is not None
                ),
                None,
            )
            if found is None:
                continue
            svg = charts.line_chart(
                [charts.Series(tr("forecast"), found.predicted, low=found.lower, high=found.upper)],
                title=f"{choice.label()} — {forecast_vm.horizon_label(found.horizon)}",
                x_label=tr("period start"),
                y_label=tr("units"),
                x_tick_labels=[s[5:10] for s in found.period_starts],
                y_from_zero=True,
            )
            parts.append(self._image(svg, f"forecast-{len(self.images)}"))
            parts.append(f"<p><small>{escape(found.caption())}</small></p>")
        parts.append(_table(forecast_summary(batch)))
        return "".join(parts)

    def _bundles(self, batch: StoredBatch) -> str:
        return _table(market_vm.bundles_table(batch))

    def _trends(self, batch: StoredBatch) -> str:
        parts = []
        published = market_vm.trend_series(batch)
        if published:
            weeks = list(published[0].weeks)
            series = [
                charts.Series(s.category, s.market, colour=charts.PALETTE[i % len(charts.PALETTE)])
                for i, s in enumerate(published[: len(charts.PALETTE)])
            ]
            svg = charts.line_chart(
                series,
                title=tr("Market index by week"),
                x_label=tr("week"),
                y_label=tr("index"),
                x_tick_labels=[w[5:10] for w in weeks],
                width=720,
                height=280,
            )
            parts.append(self._image(svg, "trends"))
        else:
            parts.append(
                "<p><i>"
                + escape(tr("No category had enough contributing shops to publish."))
                + "</i></p>"
            )
        withheld = market_vm.withheld_table(batch)
        if withheld.rows:
            parts.append(f"<h3>{escape(tr('Withheld categories'))}</h3>")
            parts.append(_table(withheld))
        return "".join(parts)

    def _value(self, batch: StoredBatch) -> str:
        parts = []
        for value in market_vm.collaboration_values(batch):
            if value.sentence:
                parts.append(f"<p><b>{escape(value.sentence)}</b></p>")
            svg = charts.bar_chart(
                value.bars(),
                title=tr("Forecast error (WAPE, lower is better)"),
                y_label="WAPE",
                colours=[charts.PALETTE[4], charts.PALETTE[2]],
            )
            parts.append(self._image(svg, f"value-{len(self.images)}"))
            parts.append(f"<p><small>{escape(value.detail())}</small></p>")
        return "".join(parts)

    def _image(self, svg: str, name: str) -> str:
        image = render_svg(svg)
        self.images[name] = image
        width = image.width() // CHART_SCALE
        return f'<p><img src="chart:{escape(name)}" width="{width}"></p>'


def forecast_summary(batch: StoredBatch) -> Table:
    """Next period and total per product/category and horizon (the PDF's forecast table)."""
    headers = (tr("Forecast for"), tr("Horizon"), tr("First period"), tr("Next"), tr("Total"))
    rows = []
    for choice in forecast_vm.choices(batch):
        for horizon in forecast_vm.horizons(batch, choice):
            found = forecast_vm.series(batch, choice, horizon)
            if found is None:
                continue
            rows.append(
                (
                    text(choice.label()),
                    text(forecast_vm.horizon_label(horizon)),
                    text(found.period_starts[0] if found.period_starts else None),
                    num(found.predicted[0] if found.predicted else None, 1),
                    num(found.total(), 1),
                )
            )
    return Table(headers, tuple(rows))


def render_svg(svg: str) -> QImage:
    """One SVG chart as a white-backed image at ``CHART_SCALE`` times its size."""
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    size = renderer.defaultSize()
    if not size.isValid() or size.isEmpty():
        size = QSize(520, 240)
    image = QImage(size * CHART_SCALE, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    try:
        renderer.render(painter)
    finally:
        painter.end()
    return image


def write_pdf(
    batches: Mapping[str, StoredBatch],
    path: Path,
    *,
    title: str,
    generated_at: datetime | None = None,
) -> Path:
    """Write the report to ``path`` atomically; returns the path written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = PdfReport(batches, title)
    document = QTextDocument()
    html = report.html(generated_at)  # renders the charts into report.images
    for name, image in report.images.items():
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"chart:{name}"), image)
    document.setHtml(html)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        writer = QPdfWriter(str(temp))
        writer.setTitle(title)
        writer.setCreator("Retail Intelligence")
        writer.setResolution(RESOLUTION_DPI)
        writer.setPageLayout(
            QPageLayout(
                QPageSize(QPageSize.PageSizeId.A4),
                QPageLayout.Orientation.Landscape,
                QMarginsF(12, 12, 12, 12),
                QPageLayout.Unit.Millimeter,
            )
        )
        document.print_(writer)
        del writer  # the file is complete only once the writer is gone
        if temp.stat().st_size == 0:
            raise OSError(f"Qt wrote an empty PDF for {path}")
        temp.chmod(0o644)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = []
    for row in table.rows[:MAX_PDF_ROWS]:
        cells = "".join(
            f'<td align="{"right" if c.numeric else "left"}">{escape(c.text)}</td>' for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    more = ""
    if len(table.rows) > MAX_PDF_ROWS:
        more = (
            "<p><small>"
            + escape(
                tr(
                    "Showing the first {shown} of {total} rows; the CSV export has them all."
                ).format(shown=MAX_PDF_ROWS, total=len(table.rows))
            )
            + "</small></p>"
        )
    return (
        '<table border="1" cellspacing="0" cellpadding="3" width="100%">'
        f'<thead><tr bgcolor="#f3f6fa">{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        + more
    )


__all__: Sequence[str] = ("PdfReport", "forecast_summary", "render_svg", "write_pdf")
