"""Campaigns: the lifecycle of federated training runs and their round-by-round progress.

A campaign is created ``pending`` by an admin, becomes ``running`` once its Flower run is
submitted to the SuperLink, and ends ``finished``, ``failed`` or ``cancelled``. Round progress
rows are appended as the ServerApp reports them; their ``seq`` only grows, so a WebSocket can
stream new rows by asking for those after the last ``seq`` it sent. Campaigns still
``running`` when the daemon starts were interrupted by a restart and are returned by
``interrupted`` for recovery. Every transition is audited.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from coordinator.audit import AuditLog
from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError
from coordinator.db.types import Clock, as_utc, plain_json, utc_now

TASKS = ("demand_pricing", "forecasting", "bundles")
MIN_ROUNDS, MAX_ROUNDS = 1, 1000
MIN_EPSILON, MAX_EPSILON = 0.05, 10.0  # per retailer, for the whole campaign
ROUND_STATUSES = ("pending", "aggregated", "failed", "skipped")
STATISTICS_ROUND = 0  # the ServerApp's basket-statistics round comes before training round 1
_ENDED = ("finished", "failed", "cancelled")


class CampaignStateError(ValueError):
    """The campaign is not in a state that allows the requested change."""


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as stored; ``tasks`` in the order given at creation."""

    id: int
    status: str
    rounds: int
    epsilon: float
    tasks: tuple[str, ...]
    flower_run_id: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the API's and CLI's shape)."""
        return {
            "id": self.id,
            "status": self.status,
            "rounds": self.rounds,
            "epsilon": self.epsilon,
            "tasks": list(self.tasks),
            "flower_run_id": self.flower_run_id,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class RoundRecord:
    """One attempt at one round of a campaign, as reported by the ServerApp."""

    seq: int
    campaign_id: int
    round: int
    stage: str
    attempt: int
    status: str
    participants: int
    dropouts: int
    metrics: dict[str, Any]
    recorded_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the WebSocket's and CLI's shape)."""
        return {
            "seq": self.seq,
            "campaign_id": self.campaign_id,
            "round": self.round,
            "stage": self.stage,
            "attempt": self.attempt,
            "status": self.status,
            "participants": self.participants,
            "dropouts": self.dropouts,
            "metrics": self.metrics,
            "recorded_at": self.recorded_at.isoformat(),
        }


def validate_campaign(rounds: int, epsilon: float, tasks: Sequence[str]) -> tuple[str, ...]:
    """Check a campaign's settings; returns the tasks deduplicated, or raises ``ValueError``
    saying which value is wrong and what is allowed."""
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise ValueError(f"rounds must be a whole number, got {rounds!r}")
    if not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise ValueError(f"rounds must be between {MIN_ROUNDS} and {MAX_ROUNDS}, got {rounds}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        raise ValueError(f"epsilon must be a number, got {epsilon!r}")
    if not math.isfinite(epsilon) or not MIN_EPSILON <= epsilon <= MAX_EPSILON:
        raise ValueError(
            f"epsilon (per retailer, for the whole campaign) must be between {MIN_EPSILON} "
            f"and {MAX_EPSILON}, got {epsilon}"
        )
    if isinstance(tasks, str):
        raise ValueError("tasks must be a list of task names, not one string")
    chosen: list[str] = []
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose among {', '.join(TASKS)}")
        if task not in chosen:
            chosen.append(task)
    if not chosen:
        raise ValueError(f"choose at least one task among {', '.join(TASKS)}")
    return tuple(chosen)


class CampaignStore:
    """Stores campaigns and their round progress; every change is audited."""

    def __init__(self, db: Database, audit: AuditLog, *, clock: Clock = utc_now) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    def _now(self) -> datetime:
        return as_utc(self._clock(), what="the campaign clock")

    def create(
        self, *, rounds: int, epsilon: float, tasks: Sequence[str], created_by: str
    ) -> CampaignRecord:
        """A new ``pending`` campaign. Raises ``ValueError`` for settings out of range."""
        chosen = validate_campaign(rounds, epsilon, tasks)
        if not isinstance(created_by, str) or not created_by.strip() or len(created_by) > 100:
            raise ValueError("created_by must name who creates the campaign (1..100 characters)")
        with self._db.session() as session:
            campaign_id = session.execute(
                insert(t.Campaign)
                .values(
                    status="pending",
                    rounds=rounds,
                    epsilon=float(epsilon),
                    tasks=",".join(chosen),
                    created_by=created_by,
                    created_at=self._now(),
                )
                .returning(t.Campaign.id)
            ).scalar_one()
            self._audit.append_in(
                session,
                created_by,
                "campaign.create",
                f"campaign:{campaign_id}",
                {"rounds": rounds, "epsilon": float(epsilon), "tasks": list(chosen)},
            )
            return _campaign(_locked(session, campaign_id))

    def mark_running(self, campaign_id: int, flower_run_id: int) -> CampaignRecord:
        """``pending`` -> ``running`` once the Flower run was submitted."""
        if isinstance(flower_run_id, bool) or not 0 <= int(flower_run_id) < 2**64:
            raise ValueError(f"a Flower run id is an unsigned 64-bit number, got {flower_run_id!r}")
        with self._db.session() as session:
            row = _locked(session, campaign_id)
            _require(row, ("pending",), "start")
            row.status = "running"
            row.flower_run_id = str(int(flower_run_id))
            row.started_at = self._now()
            session.flush()
            self._audit.append_in(
                session,
                "system",
                "campaign.start",
                f"campaign:{campaign_id}",
                {"flower_run_id": row.flower_run_id},
            )
            return _campaign(row)

    def finish(self, campaign_id: int) -> CampaignRecord:
        """``running`` -> ``finished``."""
        return self._end(campaign_id, "finished", ("running",), "system", None)

    def fail(self, campaign_id: int, error: str) -> CampaignRecord:
        """``pending``/``running`` -> ``failed`` with a message saying what went wrong."""
        if not isinstance(error, str) or not error.strip():
            raise ValueError("a failed campaign needs an error message")
        return self._end(campaign_id, "failed", ("pending", "running"), "system", error[:4000])

    def cancel(self, campaign_id: int, actor: str) -> CampaignRecord:
        """``pending``/``running`` -> ``cancelled`` (the caller stops the Flower run)."""
        return self._end(campaign_id, "cancelled", ("pending", "running"), actor, None)

    def _end(
        self,
        campaign_id: int,
        status: str,
        allowed: tuple[str, ...],
        actor: str,
        error: str | None,
    ) -> CampaignRecord:
        verb = {"finished": "finish", "failed": "fail", "cancelled": "cancel"}[status]
        with self._db.session() as session:
            row = _locked(session, campaign_id)
            _require(row, allowed, verb)
            row.status = status
            row.finished_at = self._now()
            row.error = error
            session.flush()
            details: dict[str, Any] = {"error": error} if error else {}
            self._audit.append_in(
                session, actor, f"campaign.{verb}", f"campaign:{campaign_id}", details
            )
            return _campaign(row)

    def get(self, campaign_id: int) -> CampaignRecord | None:
        """One campaign, or None if there is no such id."""
        with self._db.session(readonly=True) as session:
            row = session.get(t.Campaign, campaign_id)
            return None if row is None else _campaign(row)

    def list(self, limit: int = 50) -> builtins.list[CampaignRecord]:
        """Up to ``limit`` (1..1000) campaigns, newest first."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be between 1 and 1000, got {limit}")
        query = select(t.Campaign).order_by(t.Campaign.id.desc()).limit(limit)
        with self._db.session(readonly=True) as session:
            return [_campaign(row) for row in session.scalars(query)]

    def interrupted(self) -> builtins.list[CampaignRecord]:
        """Campaigns still ``running``: after a daemon restart these lost their supervisor and
        must be resumed or failed."""
        query = select(t.Campaign).where(t.Campaign.status == "running").order_by(t.Campaign.id)
        with self._db.session(readonly=True) as session:
            return [_campaign(row) for row in session.scalars(query)]

    # -- round progress --------------------------------------------------------------------

    def record_round(
        self,
        campaign_id: int,
        *,
        round: int,
        stage: str,
        attempt: int,
        status: str,
        participants: int,
        dropouts: int,
        metrics: Mapping[str, Any] | None = None,
    ) -> RoundRecord:
        """Append one round attempt of a ``running`` campaign (audited as ``round``).

        ``round`` is 0 for the statistics round and 1..rounds for training rounds. Raises
        ``ValueError`` for values out of range and ``CampaignStateError`` when the campaign
        is not running.
        """
        _check_round(round, stage, attempt, status, participants, dropouts)
        plain = plain_json(dict(metrics or {}), "metrics")
        with self._db.session() as session:
            campaign = _locked(session, campaign_id)
            _require(campaign, ("running",), "record a round of")
            if round > campaign.rounds:
                raise ValueError(
                    f"round {round} is beyond campaign {campaign_id}'s {campaign.rounds} rounds"
                )
            values: dict[str, Any] = {
                "campaign_id": campaign_id,
                "round": round,
                "stage": stage,
                "attempt": attempt,
                "status": status,
                "participants": participants,
                "dropouts": dropouts,
                "metrics": plain,
                "recorded_at": self._now(),
            }
            seq = session.execute(
                insert(t.RoundProgress).values(**values).returning(t.RoundProgress.seq)
            ).scalar_one()
            self._audit.append_in(
                session,
                "system",
                "round",
                f"campaign:{campaign_id}",
                {k: v for k, v in values.items() if k not in ("campaign_id", "recorded_at")},
            )
            return RoundRecord(
                seq=seq,
                campaign_id=campaign_id,
                round=round,
                stage=stage,
                attempt=attempt,
                status=status,
                participants=participants,
                dropouts=dropouts,
                metrics=plain,
                recorded_at=values["recorded_at"],
            )

    def rounds(
        self, campaign_id: int, after_seq: int = 0, limit: int = 1000
    ) -> builtins.list[RoundRecord]:
        """Round rows of one campaign with ``seq > after_seq``, oldest first (streaming)."""
        query = (
            select(t.RoundProgress)
            .where(t.RoundProgress.campaign_id == campaign_id, t.RoundProgress.seq > after_seq)
            .order_by(t.RoundProgress.seq)
            .limit(limit)
        )
        with self._db.session(readonly=True) as session:
            return [_round(row) for row in session.scalars(query)]


def _check_round(
    round_number: int, stage: str, attempt: int, status: str, participants: int, dropouts: int
) -> None:
    for name, value, low in (
        ("round", round_number, 0),
        ("attempt", attempt, 1),
        ("participants", participants, 0),
        ("dropouts", dropouts, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if stage not in t.ROUND_STAGES:
        raise ValueError(f"stage must be one of {', '.join(t.ROUND_STAGES)}, got {stage!r}")
    if status not in ROUND_STATUSES:
        raise ValueError(f"round status must be one of {', '.join(ROUND_STATUSES)}, got {status!r}")
    if (stage == "statistics") != (round_number == STATISTICS_ROUND):
        raise ValueError("round 0 is the statistics round, and only it has stage 'statistics'")


def _locked(session: Session, campaign_id: int) -> t.Campaign:
    row = session.get(t.Campaign, campaign_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFoundError(f"there is no campaign #{campaign_id}")
    return row


def _require(row: t.Campaign, allowed: tuple[str, ...], verb: str) -> None:
    if row.status not in allowed:
        ended = " (it has ended)" if row.status in _ENDED else ""
        raise CampaignStateError(
            f"cannot {verb} campaign #{row.id}: it is {row.status}{ended}, "
            f"not {' or '.join(allowed)}"
        )


def _campaign(row: t.Campaign) -> CampaignRecord:
    return CampaignRecord(
        id=row.id,
        status=row.status,
        rounds=row.rounds,
        epsilon=row.epsilon,
        tasks=tuple(task for task in row.tasks.split(",") if task),
        flower_run_id=None if row.flower_run_id is None else int(row.flower_run_id),
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
    )


def _round(row: t.RoundProgress) -> RoundRecord:
    return RoundRecord(
        seq=row.seq,
        campaign_id=row.campaign_id,
        round=row.round,
        stage=row.stage,
        attempt=row.attempt,
        status=row.status,
        participants=row.participants,
        dropouts=row.dropouts,
        metrics=dict(row.metrics),
        recorded_at=row.recorded_at,
    )
