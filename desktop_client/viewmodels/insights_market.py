"""Bundles, market trends and the value of collaboration: tables, series and sentences.

These three views come from statistics shared across at least five shops (bundles, trends)
or from comparing the federated model with a local-only one (value); each keeps the engine's
own plain-language reasons (a withheld category, a bundle's season) visible to the manager.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from desktop_client.viewmodels.insights import tr
from desktop_client.viewmodels.insights_tables import (
    Table,
    joined,
    num,
    number,
    pct,
    sequence,
    text,
)
from shared.insights.store import StoredBatch

_PEAK = re.compile(r"bought together most in ([A-Za-z]+)")


def peak_month(row: Mapping[str, Any]) -> str | None:
    """The month the engine found the pair bought together most, from its context sentence."""
    context = row.get("context")
    found = _PEAK.search(context) if isinstance(context, str) else None
    return found.group(1) if found else None


def bundles_table(batch: StoredBatch) -> Table:
    headers = (
        tr("Products"),
        tr("Categories"),
        tr("Bundle price"),
        tr("Bought separately"),
        tr("Discount"),
        tr("Expected lift"),
        tr("Evidence"),
        tr("For customers"),
        tr("Peak month"),
        tr("New product"),
        tr("Why"),
    )
    rows = []
    for row in batch.rows:
        separate = [p for p in (number(v) for v in sequence(row.get("individual_prices"))) if p]
        notes = [str(n) for n in sequence(row.get("notes")) if n]
        why = "; ".join(t for t in (str(row.get("context") or ""), *notes) if t)
        rows.append(
            (
                text(" + ".join(str(p) for p in sequence(row.get("products")))),
                joined(row.get("categories")),
                num(row.get("bundle_price")),
                num(sum(separate)) if separate else num(None),
                pct(row.get("discount_pct")),
                num(row.get("expected_lift")),
                num(row.get("confidence")),
                joined(row.get("target_segments")),
                text(peak_month(row)),
                text(tr("Yes") if row.get("new_product") else "", empty=""),
                text(why, empty=""),
            )
        )
    ids = tuple(str(row.get("bundle_id", "")) for row in batch.rows)
    return Table(headers, tuple(rows), ids)


def new_product_suggestions(batch: StoredBatch) -> int:
    return sum(1 for row in batch.rows if row.get("new_product"))


@dataclass(frozen=True)
class TrendSeries:
    """A published category's weekly market index beside this shop's own index."""

    category: str
    weeks: tuple[str, ...]
    market: tuple[float | None, ...]
    own: tuple[float | None, ...]
    contributors: int | None
    change_pct: float | None

    @property
    def has_own(self) -> bool:
        return any(v is not None for v in self.own)

    def caption(self) -> str:
        parts = [tr("Weekly demand index (100 = an average week).")]
        if self.contributors is not None:
            parts.append(tr("Market: {n} shops.").format(n=self.contributors))
        if self.change_pct is not None:
            parts.append(tr("Recent change: {pct}%.").format(pct=f"{self.change_pct:+.1f}"))
        if not self.has_own:
            parts.append(
                tr("This shop has no sales in this category, so only the market is shown.")
            )
        return " ".join(parts)


@dataclass(frozen=True)
class Withheld:
    category: str
    reason: str


def trend_series(batch: StoredBatch) -> list[TrendSeries]:
    """Published categories with at least one week, in the batch's order."""
    out = []
    for row in batch.rows:
        if row.get("status") == "withheld" or not sequence(row.get("weeks")):
            continue
        contributors = number(row.get("contributors"))
        out.append(
            TrendSeries(
                category=str(row.get("category", "")),
                weeks=tuple(str(w) for w in sequence(row.get("weeks"))),
                market=tuple(number(v) for v in sequence(row.get("index"))),
                own=tuple(number(v) for v in sequence(row.get("own_index"))),
                contributors=None if contributors is None else int(contributors),
                change_pct=number(row.get("change_pct")),
            )
        )
    return out


def withheld(batch: StoredBatch) -> list[Withheld]:
    return [
        Withheld(
            str(row.get("category", "")),
            str(row.get("reason") or tr("withheld to protect the shops that contributed")),
        )
        for row in batch.rows
        if row.get("status") == "withheld"
    ]


def withheld_table(batch: StoredBatch) -> Table:
    rows = tuple((text(w.category), text(w.reason)) for w in withheld(batch))
    return Table((tr("Category"), tr("Why it is withheld")), rows)


@dataclass(frozen=True)
class CollaborationValue:
    """Forecast error with the shop's data alone against with the federation."""

    node: str
    local_error: float | None
    federated_error: float | None
    improvement_pct: float | None
    sentence: str
    holdout_days: int | None

    def bars(self) -> list[tuple[str, float | None]]:
        return [
            (tr("Your data alone"), self.local_error),
            (tr("With the federation"), self.federated_error),
        ]

    def detail(self) -> str:
        parts = [
            tr(
                "Forecast error on held-out days (WAPE: the share of units the forecast gets "
                "wrong; lower is better)."
            )
        ]
        if self.holdout_days is not None:
            parts.append(tr("Scored on the last {days} days.").format(days=self.holdout_days))
        return " ".join(parts)


def collaboration_values(batch: StoredBatch) -> list[CollaborationValue]:
    out = []
    for row in batch.rows:
        days = number(row.get("holdout_days"))
        message = row.get("message")
        out.append(
            CollaborationValue(
                node=str(row.get("node", "")),
                local_error=number(row.get("local_wape")),
                federated_error=number(row.get("federated_wape")),
                improvement_pct=number(row.get("improvement_pct")),
                sentence=str(message) if isinstance(message, str) and message else "",
                holdout_days=None if days is None else int(days),
            )
        )
    return out
