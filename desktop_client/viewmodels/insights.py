"""What the Insights page shows, read from the node's local insight store only.

Why a view-model: store managers open the app offline, often in view-only mode, and must get
the same answers whatever widget draws them. This module opens ``insights.sqlite`` read-only
(never creating it), picks the newest batch of a kind or an earlier one from the history, and
says where every number came from (model version, date computed) or, when nothing is stored
yet, what to do in plain words. It imports neither torch nor pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import QCoreApplication

from shared.insights.store import (
    INSIGHTS_FILENAME,
    KINDS,
    InsightStore,
    InsightStoreError,
    NoInsightsError,
    StoredBatch,
)

HISTORY_LIMIT = 50
CONTEXT = "Insights"


def tr(text: str) -> str:
    """Every sentence a person reads goes through Qt's translation (context ``Insights``)."""
    return QCoreApplication.translate(CONTEXT, text)


def when(moment: datetime) -> str:
    """A moment as the shop reads it everywhere in the app: UTC, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Provenance:
    """Which computation a view shows, so a manager can tell old advice from new."""

    batch_id: int
    created_at: datetime
    model_version: str
    data_fingerprint: str
    epsilon_spent: float

    @classmethod
    def of(cls, batch: StoredBatch) -> Provenance:
        return cls(
            batch.id,
            batch.created_at,
            batch.model_version,
            batch.data_fingerprint,
            batch.epsilon_spent,
        )

    def text(self) -> str:
        template = tr(
            "Model {model}, computed {when} (batch #{batch}, privacy budget spent ε {eps})"
        )
        return template.format(
            model=self.model_version,
            when=when(self.created_at),
            batch=self.batch_id,
            eps=f"{self.epsilon_spent:.2f}",
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One earlier computation of a kind, as listed in the history picker."""

    batch_id: int
    created_at: datetime
    model_version: str
    row_count: int

    def label(self) -> str:
        return tr("{when} — model {model} ({rows} rows)").format(
            when=when(self.created_at), model=self.model_version, rows=self.row_count
        )


@dataclass(frozen=True)
class KindState:
    """One kind's view: the batch to show, or the plain sentence shown instead."""

    kind: str
    batch: StoredBatch | None
    message: str = ""

    @property
    def provenance(self) -> Provenance | None:
        return None if self.batch is None else Provenance.of(self.batch)

    @property
    def has_rows(self) -> bool:
        return self.batch is not None and bool(self.batch.rows)


def empty_message(kind: str | None = None) -> str:
    """What a store manager reads when there is nothing to show yet, and what to do about it."""
    if kind is None:
        return tr(
            "No insights yet: join a training round, then refresh the insights "
            "(the shop owner can do this on the Insights page or with "
            "`retail-node insights refresh`)."
        )
    return tr(
        "No {kind} insights yet: join a training round, then refresh the insights "
        "(the shop owner can do this on the Insights page or with "
        "`retail-node insights refresh`)."
    ).format(kind=_KIND_WORDS.get(kind, kind))


def no_rows_message(batch: StoredBatch) -> str:
    """A stored computation that produced nothing, with the engine's reason when it gave one."""
    reason = batch.meta.get("reason")
    base = tr("This computation produced no {kind} results.").format(
        kind=_KIND_WORDS.get(batch.kind, batch.kind)
    )
    return f"{base} {reason}" if isinstance(reason, str) and reason else base


_KIND_WORDS = {
    "pricing": "pricing",
    "forecast": "forecast",
    "bundles": "bundle",
    "trends": "market trend",
    "value": "collaboration value",
}


class InsightsViewModel:
    """Reads one node's insight store; every call opens and closes the file, so a refresh
    written by another process is seen on the next read and nothing keeps the file locked."""

    def __init__(self, node_dir: Path) -> None:
        self.node_dir = Path(node_dir)

    @property
    def store_path(self) -> Path:
        return self.node_dir / INSIGHTS_FILENAME

    def state(self, kind: str, batch_id: int | None = None) -> KindState:
        """The newest batch of ``kind`` (or batch ``batch_id`` from its history)."""
        try:
            with InsightStore(self.store_path, create=False) as store:
                batch = store.latest(kind) if batch_id is None else store.get(batch_id)
        except NoInsightsError:
            return KindState(kind, None, empty_message(kind))
        except InsightStoreError as exc:
            return KindState(kind, None, self._unreadable(exc))
        if batch is None:
            if batch_id is not None:
                return KindState(
                    kind, None, tr("That computation is no longer in the insight store.")
                )
            return KindState(kind, None, empty_message(kind))
        if batch.kind != kind:
            return KindState(kind, None, tr("That computation holds different insights."))
        if not batch.rows:
            return KindState(kind, batch, no_rows_message(batch))
        return KindState(kind, batch)

    def states(self) -> dict[str, KindState]:
        """The newest batch of every kind, in the store's kind order."""
        return {kind: self.state(kind) for kind in KINDS}

    def history(self, kind: str) -> list[HistoryEntry]:
        """Earlier computations of ``kind``, newest first (empty when nothing is stored)."""
        try:
            with InsightStore(self.store_path, create=False) as store:
                found = store.history(kind, HISTORY_LIMIT)
        except InsightStoreError:
            return []
        return [HistoryEntry(b.id, b.created_at, b.model_version, b.row_count) for b in found]

    def has_insights(self) -> bool:
        try:
            with InsightStore(self.store_path, create=False) as store:
                return store.count() > 0
        except InsightStoreError:
            return False

    def _unreadable(self, exc: InsightStoreError) -> str:
        return tr(
            "The insight store {path} cannot be read: {reason}. Ask the shop owner to refresh "
            "the insights."
        ).format(path=self.store_path, reason=str(exc))
