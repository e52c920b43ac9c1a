"""Tables of insight rows as plain data: the text a person reads and the value it sorts by.

Why separate from the Qt model: the formatting rules (missing numbers shown as a dash, signed
changes, intervals as "low to high") are business rules with their own tests; the Qt model in
``insights_qtmodel`` only hands these cells to a view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MISSING = "—"


@dataclass(frozen=True)
class Cell:
    """What is shown (``text``) and how it sorts (``key``: numbers by value, unknown last)."""

    text: str
    key: float | str | None = None
    numeric: bool = False


@dataclass(frozen=True)
class Table:
    """Column headings and rows of cells; ``ids`` names each row (a product, a bundle)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    ids: tuple[str, ...] = field(default=())

    def column(self, header: str) -> list[str]:
        index = self.headers.index(header)
        return [row[index].text for row in self.rows]


def number(value: Any) -> float | None:
    """A finite number, else None (stored rows use None for unknown)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def num(value: Any, digits: int = 2, *, signed: bool = False) -> Cell:
    found = number(value)
    if found is None:
        return Cell(MISSING, None, True)
    text = f"{found:+,.{digits}f}" if signed else f"{found:,.{digits}f}"
    return Cell(text, found, True)


def with_interval(
    row: Mapping[str, Any], key: str, low: str, high: str, *, signed: bool = False
) -> Cell:
    """``centre (low to high)``, sorted by the centre."""
    centre = num(row.get(key), signed=signed)
    lo, hi = num(row.get(low), signed=signed), num(row.get(high), signed=signed)
    if lo.key is None and hi.key is None:
        return centre
    return Cell(f"{centre.text} ({lo.text} to {hi.text})", centre.key, True)


def pct(value: Any) -> Cell:
    found = number(value)
    return Cell(MISSING, None, True) if found is None else Cell(f"{found:.1f}%", found, True)


def text(value: Any, empty: str = MISSING) -> Cell:
    if value is None or value == "":
        return Cell(empty, None)
    return Cell(str(value), str(value).casefold())


def joined(values: Any) -> Cell:
    items = [str(v) for v in values] if isinstance(values, list | tuple) else []
    return text(", ".join(items)) if items else Cell(MISSING, None)


def sequence(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def sorted_rows(table: Table, column: int, descending: bool) -> list[int]:
    """Row indexes in display order when sorted by ``column`` (stable; unknown cells last)."""
    numeric = [i for i in range(len(table.rows)) if table.rows[i][column].key is not None]
    unknown = [i for i in range(len(table.rows)) if table.rows[i][column].key is None]
    numeric.sort(key=lambda i: _comparable(table.rows[i][column].key), reverse=descending)
    return numeric + unknown


def _comparable(key: float | str | None) -> tuple[int, float, str]:
    if isinstance(key, float | int):
        return (0, float(key), "")
    return (1, 0.0, str(key))
