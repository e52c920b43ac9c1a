"""Small inline-SVG charts for the offline HTML report: lines with interval bands, and bars.

The report must open on a shop's computer with no network and no JavaScript, so charts are
plain SVG text computed here. Missing values (None, NaN) break a line instead of being drawn
as zero; every piece of text is escaped, because category and product names come from data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
BAND_OPACITY = 0.18
BAND_REACH = 2.0  # bands may widen the y axis by this many times the lines' own span
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 30, 40, 46


@dataclass(frozen=True)
class Series:
    """One line; ``xs`` default to 0, 1, 2, ...; ``low``/``high`` draw a shaded band."""

    name: str
    ys: Sequence[float | None]
    xs: Sequence[float] | None = None
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    colour: str = PALETTE[0]
    dashed: bool = False

    def x_values(self) -> list[float]:
        return (
            [float(x) for x in self.xs]
            if self.xs is not None
            else [*map(float, range(len(self.ys)))]
        )


@dataclass(frozen=True)
class Marker:
    """A labelled vertical line, e.g. the current or the recommended price."""

    x: float
    label: str
    colour: str = "#555555"


@dataclass(frozen=True)
class _Frame:
    """Maps data coordinates to SVG pixels inside the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int
    plot: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "plot",
            (
                _MARGIN_LEFT,
                _MARGIN_TOP,
                self.width - _MARGIN_RIGHT,
                self.height - _MARGIN_BOTTOM,
            ),
        )

    def px(self, x: float) -> float:
        left, _, right, _ = self.plot
        return left + (x - self.x0) / (self.x1 - self.x0) * (right - left)

    def py(self, y: float) -> float:
        """Pixel row of ``y``, held inside the plot (a band beyond the axis is cut there)."""
        _, top, _, bottom = self.plot
        inside = min(max(y, self.y0), self.y1)
        return bottom - (inside - self.y0) / (self.y1 - self.y0) * (bottom - top)


def finite(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def format_number(value: float) -> str:
    """Compact axis label: 1.2k, 3.5M, 0.25, 12."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    x_tick_labels: Sequence[str] | None = None,
    markers: Sequence[Marker] = (),
    y_from_zero: bool = False,
    width: int = 520,
    height: int = 240,
) -> str:
    """Lines (with optional bands) on shared axes; ``x_tick_labels[i]`` labels x = i (dates).

    A chart without a single finite point says "no data" instead of drawing empty axes.
    """
    line_ys = [y for s in series for _, y in _finite_pairs(s.x_values(), s.ys)]
    band_ys = [
        y
        for s in series
        for band in (s.low, s.high)
        if band is not None
        for _, y in _finite_pairs(s.x_values(), band)
    ]
    xs = [
        x
        for s in series
        for column in (s.ys, s.low, s.high)
        if column is not None
        for x, _ in _finite_pairs(s.x_values(), column)
    ]
    if not line_ys and not band_ys:
        return _empty_chart(title, width, height)
    xs += [m.x for m in markers if finite(m.x) is not None]
    x0, x1 = _span(min(xs), max(xs))
    low, high = _y_extent(line_ys, band_ys, y_from_zero)
    y0, y1 = _span(low, high, pad=0.05)
    clipped = any(not low <= y <= high for y in band_ys)
    frame = _Frame(x0, x1, y0, y1, width, height)
    parts = [_open(title, width, height), _title(title, width)]
    parts.append(_y_axis(frame, y_label))
    parts.append(_x_axis(frame, x_label, x_tick_labels))
    for s in series:
        parts.extend(_band(frame, s))
    for s in series:
        parts.extend(_line(frame, s))
    for marker in markers:
        parts.append(_marker(frame, marker))
    if clipped:
        right = frame.plot[2]
        parts.append(
            f'<text x="{right:.0f}" y="{height - 3}" text-anchor="end" fill="#777"'
            f' font-family="system-ui, sans-serif" font-size="9">'
            "shaded range cut at the chart's edge</text>"
        )
    parts.append(_legend(series, width))
    parts.append("</svg>")
    return "".join(parts)


def _finite_pairs(xs: Sequence[float], ys: Sequence[float | None]) -> list[tuple[float, float]]:
    pairs = []
    for x, y in zip(xs, ys, strict=False):
        fx, fy = finite(x), finite(y)
        if fx is not None and fy is not None:
            pairs.append((fx, fy))
    return pairs


def _y_extent(
    line_ys: Sequence[float], band_ys: Sequence[float], from_zero: bool
) -> tuple[float, float]:
    """The y range: every line value, and bands only up to ``BAND_REACH`` times the lines'
    own span beyond them, so one very wide interval cannot flatten the line it surrounds."""
    values = [*line_ys, 0.0] if from_zero else list(line_ys)
    if not line_ys:
        values += band_ys
        return min(values), max(values)
    low, high = min(values), max(values)
    reach = BAND_REACH * max(high - low, abs(high), 1e-9)
    if band_ys:
        low = min(low, max(min(band_ys), low - reach))
        high = max(high, min(max(band_ys), high + reach))
    return low, high


def bar_chart(
    bars: Sequence[tuple[str, float | None]],
    *,
    title: str,
    y_label: str = "",
    colours: Sequence[str] = PALETTE,
    value_format: Callable[[float], str] = format_number,
    width: int = 420,
    height: int = 240,
) -> str:
    """Vertical bars from zero with the value written on each; unknown values are labelled
    "n/a" rather than drawn as zero."""
    known = [v for _, v in bars if finite(v) is not None]
    if not known:
        return _empty_chart(title, width, height)
    values = [finite(v) for _, v in bars]
    low = min(0.0, *(v for v in values if v is not None))
    high = max(0.0, *(v for v in values if v is not None))
    y0, y1 = _span(low, high, pad=0.1)
    frame = _Frame(-0.5, len(bars) - 0.5, y0, y1, width, height)
    parts = [_open(title, width, height), _title(title, width), _y_axis(frame, y_label)]
    left, _, right, bottom = frame.plot
    slot = (right - left) / len(bars)
    bar_width = slot * 0.55
    zero = frame.py(0.0)
    for index, ((label, _), value) in enumerate(zip(bars, values, strict=True)):
        centre = frame.px(index)
        colour = escape(colours[index % len(colours)])
        if value is not None:
            top = min(zero, frame.py(value))
            size = abs(frame.py(value) - zero)
            parts.append(
                f'<rect x="{centre - bar_width / 2:.1f}" y="{top:.1f}" width="{bar_width:.1f}"'
                f' height="{max(size, 0.5):.1f}" fill="{colour}"/>'
            )
            shown = escape(value_format(value))
            label_y = top - 4 if value >= 0 else top + size + 12
        else:
            shown, label_y = "n/a", zero - 4
        parts.append(
            f'<text x="{centre:.1f}" y="{label_y:.1f}" text-anchor="middle" {FONT}>{shown}</text>'
        )
        parts.append(
            f'<text x="{centre:.1f}" y="{bottom + 16:.1f}" text-anchor="middle" {FONT}>'
            f"{escape(_clip(label, int(slot / 6) + 4))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- pieces -----------------------------------------------------------------------------------


def _span(low: float, high: float, pad: float = 0.0) -> tuple[float, float]:
    if high == low:
        delta = abs(low) * 0.1 or 1.0
        return low - delta, high + delta
    extra = (high - low) * pad
    return low - extra if low != 0 else low, high + extra


def _open(title: str, width: int, height: int) -> str:
    label = escape(title)
    return (
        f'<svg class="chart" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" aria-label="{label}"><title>{label}</title>'
    )


def _title(title: str, width: int) -> str:
    return (
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-weight="600" {FONT}>'
        f"{escape(_clip(title, width // 6))}</text>"
    )


def _empty_chart(title: str, width: int, height: int) -> str:
    return (
        f"{_open(title, width, 60)}{_title(title, width)}"
        f'<text x="{width / 2:.0f}" y="40" text-anchor="middle" fill="#777" {FONT}>'
        "no data to chart</text></svg>"
    )


def _y_axis(frame: _Frame, label: str) -> str:
    left, top, right, bottom = frame.plot
    parts = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>']
    for tick in nice_ticks(frame.y0, frame.y1):
        y = frame.py(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(format_number(tick))}</text>"
        )
    if label:
        middle = (top + bottom) / 2
        parts.append(
            f'<text x="12" y="{middle:.1f}" text-anchor="middle" {FONT}'
            f' transform="rotate(-90 12 {middle:.1f})">{escape(label)}</text>'
        )
    return "".join(parts)


def _x_axis(frame: _Frame, label: str, tick_labels: Sequence[str] | None) -> str:
    left, _, right, bottom = frame.plot
    parts = [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>']
    ticks: list[tuple[float, str]]
    if tick_labels is not None:
        step = max(1, math.ceil(len(tick_labels) / 6))
        ticks = [(float(i), tick_labels[i]) for i in range(0, len(tick_labels), step)]
    else:
        ticks = [(t, format_number(t)) for t in nice_ticks(frame.x0, frame.x1)]
    for value, text in ticks:
        if not frame.x0 <= value <= frame.x1:
            continue
        x = frame.px(value)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#999"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" {FONT}>'
            f"{escape(_clip(text, 12))}</text>"
        )
    if label:
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="{bottom + 32}" text-anchor="middle" {FONT}>'
            f"{escape(label)}</text>"
        )
    return "".join(parts)


def _segments(
    frame: _Frame, xs: Sequence[float], *columns: Sequence[float | None] | None
) -> list[list[tuple[float, ...]]]:
    """Runs of consecutive indices where x and every column are finite, as pixel tuples
    (x, then one y per column)."""
    if any(c is None for c in columns):
        return []
    runs: list[list[tuple[float, ...]]] = [[]]
    for index, x in enumerate(xs):
        values = [finite(c[index]) if c is not None and index < len(c) else None for c in columns]
        if finite(x) is None or any(v is None for v in values):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((frame.px(x), *(frame.py(v) for v in values if v is not None)))
    return [run for run in runs if run]


def _band(frame: _Frame, series: Series) -> list[str]:
    colour = escape(series.colour)
    out = []
    for run in _segments(frame, series.x_values(), series.low, series.high):
        if len(run) < 2:
            continue
        upper = [f"{x:.1f},{high:.1f}" for x, _, high in run]
        lower = [f"{x:.1f},{low:.1f}" for x, low, _ in reversed(run)]
        out.append(
            f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{colour}"'
            f' fill-opacity="{BAND_OPACITY}" stroke="none"/>'
        )
    return out


def _line(frame: _Frame, series: Series) -> list[str]:
    colour = escape(series.colour)
    dash = ' stroke-dasharray="5 3"' if series.dashed else ""
    out = []
    for run in _segments(frame, series.x_values(), series.ys):
        if len(run) == 1:
            x, y = run[0]
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
            continue
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
    return out


def _marker(frame: _Frame, marker: Marker) -> str:
    x_value = finite(marker.x)
    if x_value is None or not frame.x0 <= x_value <= frame.x1:
        return ""
    _, top, _, bottom = frame.plot
    x = frame.px(x_value)
    colour = escape(marker.colour)
    return (
        f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}"'
        f' stroke-dasharray="3 3"/>'
        f'<text x="{x + 3:.1f}" y="{top + 10}" fill="{colour}" {FONT}>'
        f"{escape(marker.label)}</text>"
    )


def _legend(series: Sequence[Series], width: int) -> str:
    named = [s for s in series if s.name]
    if len(named) < 2:
        return ""
    parts = []
    x = float(_MARGIN_LEFT)
    for s in named:
        colour = escape(s.colour)
        parts.append(
            f'<rect x="{x:.0f}" y="26" width="10" height="3" fill="{colour}"/>'
            f'<text x="{x + 13:.0f}" y="31" {FONT}>{escape(_clip(s.name, 18))}</text>'
        )
        x += 20 + 6.5 * min(len(s.name), 18)
        if x > width - 60:
            break
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 1)] + "…"
