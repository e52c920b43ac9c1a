"""pyqtgraph helpers shared by the insight charts: one look, bands, markers, date ticks.

Why a module: every insight chart must read the same way (white background, a legend, the
interval as a shaded band, unknown values as gaps rather than zeros) and carry an accessible
name, and the pages should only say what to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QWidget

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
BAND_ALPHA = 60


def _tr(text: str) -> str:
    return QCoreApplication.translate("Charts", text)


def make_plot(
    accessible_name: str, *, x_label: str = "", y_label: str = "", parent: QWidget | None = None
) -> pg.PlotWidget:
    """An empty chart with the app's look; the accessible name says what it shows."""
    pg.setConfigOptions(antialias=True)
    plot = pg.PlotWidget(parent=parent, background="w")
    plot.setAccessibleName(accessible_name)
    plot.setMinimumHeight(220)
    item = plot.getPlotItem()
    item.showGrid(x=True, y=True, alpha=0.2)
    item.setMenuEnabled(False)
    for axis in ("left", "bottom"):
        item.getAxis(axis).setPen(pg.mkPen("#555555"))
        item.getAxis(axis).setTextPen(pg.mkPen("#333333"))
    if x_label:
        item.setLabel("bottom", x_label)
    if y_label:
        item.setLabel("left", y_label)
    item.addLegend(offset=(10, 10), labelTextColor="#333333")
    return plot


def clear(plot: pg.PlotWidget, title: str = "") -> None:
    """Remove every drawn item (and legend entry) before drawing new data."""
    item = plot.getPlotItem()
    item.clear()
    legend = item.legend
    if legend is not None:
        legend.clear()
    item.getAxis("bottom").setTicks(None)
    if title:
        item.setTitle(title, color="#222222")
    else:
        item.setTitle(None)


def _values(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None or not math.isfinite(v) else float(v) for v in values]


def line(
    plot: pg.PlotWidget,
    xs: Sequence[float],
    ys: Sequence[float | None],
    *,
    name: str,
    colour: str = PALETTE[0],
    dashed: bool = False,
) -> pg.PlotDataItem:
    """A line; unknown values leave a gap (never drawn as zero)."""
    style = pg.QtCore.Qt.PenStyle.DashLine if dashed else pg.QtCore.Qt.PenStyle.SolidLine
    pen = pg.mkPen(colour, width=2, style=style)
    curve = pg.PlotDataItem(list(xs), _values(ys), pen=pen, name=name, connect="finite")
    plot.addItem(curve)
    return curve


def band(
    plot: pg.PlotWidget,
    xs: Sequence[float],
    low: Sequence[float | None],
    high: Sequence[float | None],
    *,
    colour: str = PALETTE[0],
) -> pg.FillBetweenItem | None:
    """The interval as a shaded band between ``low`` and ``high`` (None when unknown)."""
    pairs = [
        (x, lo, hi)
        for x, lo, hi in zip(xs, _values(low), _values(high), strict=False)
        if math.isfinite(lo) and math.isfinite(hi)
    ]
    if len(pairs) < 2:
        return None
    bx = [p[0] for p in pairs]
    lower = pg.PlotDataItem(bx, [p[1] for p in pairs], pen=pg.mkPen(None))
    upper = pg.PlotDataItem(bx, [p[2] for p in pairs], pen=pg.mkPen(None))
    fill = QColor(colour)
    fill.setAlpha(BAND_ALPHA)
    shaded = pg.FillBetweenItem(lower, upper, brush=pg.mkBrush(fill))
    plot.addItem(lower)
    plot.addItem(upper)
    plot.addItem(shaded)
    return shaded


def marker(
    plot: pg.PlotWidget, x: float | None, label: str, colour: str = "#555555"
) -> pg.InfiniteLine | None:
    """A labelled vertical line (today's price, the recommended price)."""
    if x is None or not math.isfinite(x):
        return None
    mark = pg.InfiniteLine(
        pos=x,
        angle=90,
        pen=pg.mkPen(colour, width=1.5, style=pg.QtCore.Qt.PenStyle.DashLine),
        label=label,
        labelOpts={"position": 0.9, "color": colour, "fill": (255, 255, 255, 200)},
    )
    plot.addItem(mark)
    return mark


def category_ticks(plot: pg.PlotWidget, labels: Sequence[str], most: int = 8) -> None:
    """Label x = 0, 1, 2 ... with ``labels`` (dates), at most ``most`` of them."""
    step = max(1, math.ceil(len(labels) / most))
    ticks = [(float(i), labels[i]) for i in range(0, len(labels), step)]
    plot.getPlotItem().getAxis("bottom").setTicks([ticks, []])


def bars(
    plot: pg.PlotWidget,
    values: Sequence[tuple[str, float | None]],
    colours: Sequence[str] = (PALETTE[4], PALETTE[2]),
) -> pg.BarGraphItem:
    """Vertical bars from zero, labelled on the x axis; an unknown value draws no bar."""
    heights = [0.0 if v is None or not math.isfinite(v) else float(v) for _, v in values]
    brushes = [pg.mkBrush(colours[i % len(colours)]) for i in range(len(values))]
    item = pg.BarGraphItem(x=list(range(len(values))), height=heights, width=0.6, brushes=brushes)
    plot.addItem(item)
    labels = [
        label if v is not None else _tr("{label} (unknown)").format(label=label)
        for label, v in values
    ]
    category_ticks(plot, labels)
    plot.getPlotItem().setXRange(-0.7, len(values) - 0.3)
    return item
