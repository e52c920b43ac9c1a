"""The coordinator's mirror of each retailer's privacy ledger.

The node's own ledger is the authority: it checks and charges every release before anything
leaves the retailer's machine. The coordinator only mirrors what nodes report, to plan
campaigns (``over_budget`` leaves out retailers who could not afford the next one) and to show
admins where budgets stand. Reports are idempotent per (retailer, campaign, round), because a
node retries when a reply is lost, and a report lower than one already mirrored is refused:
privacy spending only ever grows, so a shrinking ledger is a bug or a forgery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError
from coordinator.db.types import Clock, as_utc, utc_now

LIFETIME_EPSILON_LIMIT = 10.0  # the platform's lifetime budget per retailer (δ = 1e-5)
EPSILON_TOLERANCE = 1e-9  # float sums of per-round spends must not lock a retailer out


class LedgerError(ValueError):
    """A ledger report was refused; the message says why."""


@dataclass(frozen=True)
class LedgerEntry:
    """One mirrored report: the retailer's cumulative ε spent and its cap at that point."""

    id: int
    retailer_id: int
    campaign_id: int | None
    round: int
    epsilon_spent: float
    epsilon_cap: float
    reported_at: datetime

    @property
    def remaining(self) -> float:
        """How much ε the retailer had left (never negative)."""
        return max(0.0, self.epsilon_cap - self.epsilon_spent)


class LedgerMirror:
    """Mirrors nodes' cumulative privacy spending as they report it."""

    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self._db = db
        self._clock = clock

    def report(
        self,
        retailer_id: int,
        *,
        campaign_id: int | None,
        round: int,
        epsilon_spent: float,
        epsilon_cap: float,
    ) -> LedgerEntry:
        """Mirror one report of the retailer's cumulative ε after ``round`` of a campaign
        (``campaign_id`` None for spending outside campaigns).

        Reporting the same (retailer, campaign, round) again with the same numbers returns the
        stored entry unchanged; the newest report may be corrected upwards. Raises
        ``LedgerError`` when the spend is lower than one already mirrored, an older report
        would change, or the numbers are invalid, and ``NotFoundError`` for an unknown
        retailer or campaign.
        """
        spent, cap = _check_numbers(round, epsilon_spent, epsilon_cap)
        try:
            with self._db.session() as session:
                _lock_retailer(session, retailer_id)
                if campaign_id is not None and session.get(t.Campaign, campaign_id) is None:
                    raise NotFoundError(f"there is no campaign #{campaign_id}")
                key = (
                    t.LedgerReport.retailer_id == retailer_id,
                    t.LedgerReport.campaign_id.is_(None)
                    if campaign_id is None
                    else t.LedgerReport.campaign_id == campaign_id,
                    t.LedgerReport.round == round,
                )
                existing = session.scalars(select(t.LedgerReport).where(*key)).first()
                if existing is not None and (existing.epsilon_spent, existing.epsilon_cap) == (
                    spent,
                    cap,
                ):
                    return _entry(existing)  # a retried report: nothing changes
                newest = session.scalars(
                    select(t.LedgerReport)
                    .where(t.LedgerReport.retailer_id == retailer_id)
                    .order_by(t.LedgerReport.id.desc())
                    .limit(1)
                ).first()
                highest = session.scalar(
                    select(func.max(t.LedgerReport.epsilon_spent)).where(
                        t.LedgerReport.retailer_id == retailer_id
                    )
                )
                if highest is not None and spent < highest - EPSILON_TOLERANCE:
                    raise LedgerError(
                        f"retailer #{retailer_id} reported ε spent {spent:g}, below the "
                        f"{highest:g} it reported before; privacy ledgers only grow"
                    )
                if existing is not None:
                    if newest is None or existing.id != newest.id:
                        raise LedgerError(
                            f"round {round} of this campaign was already reported with ε spent "
                            f"{existing.epsilon_spent:g}, and later reports exist"
                        )
                    session.execute(
                        update(t.LedgerReport)
                        .where(t.LedgerReport.id == existing.id)
                        .values(epsilon_spent=spent, epsilon_cap=cap)
                        .execution_options(synchronize_session=False)
                    )
                    session.refresh(existing)
                    return _entry(existing)
                entry_id = session.execute(
                    insert(t.LedgerReport)
                    .values(
                        retailer_id=retailer_id,
                        campaign_id=campaign_id,
                        round=round,
                        epsilon_spent=spent,
                        epsilon_cap=cap,
                        reported_at=as_utc(self._clock(), what="the ledger clock"),
                    )
                    .returning(t.LedgerReport.id)
                ).scalar_one()
                return _entry(session.get_one(t.LedgerReport, entry_id))
        except IntegrityError as exc:
            raise LedgerError(f"the ledger report could not be stored: {exc.orig}") from None

    def for_retailer(self, retailer_id: int) -> list[LedgerEntry]:
        """Every mirrored report of one retailer, oldest first."""
        query = (
            select(t.LedgerReport)
            .where(t.LedgerReport.retailer_id == retailer_id)
            .order_by(t.LedgerReport.id)
        )
        with self._db.session(readonly=True) as session:
            return [_entry(row) for row in session.scalars(query)]

    def latest(self) -> dict[int, tuple[float, float]]:
        """Per retailer that has reported: (ε spent, ε cap) from its newest report."""
        newest = (
            select(func.max(t.LedgerReport.id))
            .group_by(t.LedgerReport.retailer_id)
            .scalar_subquery()
        )
        query = select(
            t.LedgerReport.retailer_id, t.LedgerReport.epsilon_spent, t.LedgerReport.epsilon_cap
        ).where(t.LedgerReport.id.in_(newest))
        with self._db.session(readonly=True) as session:
            return {
                int(retailer): (float(spent), float(cap))
                for retailer, spent, cap in session.execute(query)
            }

    def over_budget(self, next_epsilon: float) -> set[int]:
        """Retailers whose remaining budget (cap - spent) is below ``next_epsilon``: a
        campaign asking that much would be refused by their nodes, so leave them out."""
        if not math.isfinite(next_epsilon) or next_epsilon < 0:
            raise ValueError(f"next_epsilon must be a finite number >= 0, got {next_epsilon!r}")
        return {
            retailer
            for retailer, (spent, cap) in self.latest().items()
            if cap - spent < next_epsilon - EPSILON_TOLERANCE
        }


def _check_numbers(round_number: int, spent: float, cap: float) -> tuple[float, float]:
    if isinstance(round_number, bool) or not isinstance(round_number, int) or round_number < 0:
        raise LedgerError(f"round must be a whole number >= 0, got {round_number!r}")
    for name, value in (("epsilon_spent", spent), ("epsilon_cap", cap)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise LedgerError(f"{name} must be a finite number, got {value!r}")
    if spent < 0:
        raise LedgerError(f"epsilon_spent must be >= 0, got {spent}")
    if not 0 < cap <= LIFETIME_EPSILON_LIMIT:
        raise LedgerError(
            f"epsilon_cap must be above 0 and at most the lifetime limit "
            f"{LIFETIME_EPSILON_LIMIT:g}, got {cap}"
        )
    return float(spent), float(cap)


def _lock_retailer(session: Session, retailer_id: int) -> None:
    """Serialise one retailer's reports (PostgreSQL row lock; SQLite's write lock already
    serialises), so the monotonicity check and the insert see the same ledger."""
    row = session.get(t.Retailer, retailer_id, with_for_update=True)
    if row is None:
        raise NotFoundError(f"there is no retailer #{retailer_id}")


def _entry(row: t.LedgerReport) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        retailer_id=row.retailer_id,
        campaign_id=row.campaign_id,
        round=row.round,
        epsilon_spent=row.epsilon_spent,
        epsilon_cap=row.epsilon_cap,
        reported_at=row.reported_at,
    )
