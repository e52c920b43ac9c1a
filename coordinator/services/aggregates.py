"""Published aggregates: market statistics that every node may download.

Anything published from fewer than ``k = 5`` contributing retailers could single out one of
them, so such an aggregate is refused here (and by a database CHECK constraint). Aggregates
describe a market at one time and expire after a retention period; expired ones are no longer
listed and ``prune`` deletes them.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError, affected_rows
from coordinator.db.types import Clock, as_utc, plain_json, utc_now

MIN_CONTRIBUTORS = 5  # k: the smallest group anything may be published from


@dataclass(frozen=True)
class AggregateRecord:
    """One published aggregate."""

    id: int
    kind: str
    campaign_id: int | None
    contributors: int
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the API's shape)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "campaign_id": self.campaign_id,
            "contributors": self.contributors,
            "payload": self.payload,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


class AggregateStore:
    """Stores k-anonymous aggregates and forgets them after ``retention``."""

    def __init__(
        self,
        db: Database,
        retention: timedelta = timedelta(days=90),
        min_contributors: int = MIN_CONTRIBUTORS,
        *,
        clock: Clock = utc_now,
    ) -> None:
        if min_contributors < MIN_CONTRIBUTORS:
            raise ValueError(
                f"min_contributors cannot be below {MIN_CONTRIBUTORS} (k-anonymity of publication)"
            )
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self._db = db
        self.retention = retention
        self.min_contributors = min_contributors
        self._clock = clock

    def publish(
        self, kind: str, campaign_id: int | None, contributors: int, payload: Mapping[str, Any]
    ) -> AggregateRecord:
        """Publish ``payload`` computed from ``contributors`` retailers.

        Raises ``ValueError`` when fewer than ``min_contributors`` contributed, for an empty
        kind or a non-JSON payload, and ``NotFoundError`` for an unknown campaign.
        """
        if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
            raise ValueError("an aggregate kind must be text of 1 to 64 characters")
        if isinstance(contributors, bool) or not isinstance(contributors, int):
            raise ValueError(f"contributors must be a whole number, got {contributors!r}")
        if contributors < self.min_contributors:
            raise ValueError(
                f"refusing to publish {kind!r} from {contributors} retailers: at least "
                f"{self.min_contributors} must contribute so that no single one is exposed"
            )
        plain = plain_json(dict(payload), "payload")
        now = as_utc(self._clock(), what="the aggregate clock")
        with self._db.session() as session:
            if campaign_id is not None and session.get(t.Campaign, campaign_id) is None:
                raise NotFoundError(f"there is no campaign #{campaign_id}")
            aggregate_id = session.execute(
                insert(t.Aggregate)
                .values(
                    kind=kind,
                    campaign_id=campaign_id,
                    contributors=contributors,
                    payload=plain,
                    created_at=now,
                    expires_at=now + self.retention,
                )
                .returning(t.Aggregate.id)
            ).scalar_one()
            return _record(session.get_one(t.Aggregate, aggregate_id))

    def list(
        self, kind: str | None = None, now: datetime | None = None
    ) -> builtins.list[AggregateRecord]:
        """Unexpired aggregates (of ``kind`` if given), newest first."""
        moment = as_utc(now if now is not None else self._clock(), what="now")
        query = select(t.Aggregate).where(t.Aggregate.expires_at > moment)
        if kind is not None:
            query = query.where(t.Aggregate.kind == kind)
        query = query.order_by(t.Aggregate.id.desc())
        with self._db.session(readonly=True) as session:
            return [_record(row) for row in session.scalars(query)]

    def prune(self, now: datetime | None = None) -> int:
        """Delete expired aggregates; returns how many were deleted."""
        moment = as_utc(now if now is not None else self._clock(), what="now")
        with self._db.session() as session:
            result = session.execute(
                delete(t.Aggregate)
                .where(t.Aggregate.expires_at <= moment)
                .execution_options(synchronize_session=False)
            )
            return affected_rows(result)


def _record(row: t.Aggregate) -> AggregateRecord:
    return AggregateRecord(
        id=row.id,
        kind=row.kind,
        campaign_id=row.campaign_id,
        contributors=row.contributors,
        payload=dict(row.payload),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )
