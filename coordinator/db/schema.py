"""The coordinator's tables, as typed SQLAlchemy ORM classes.

These classes describe the schema that ``migrations/versions`` creates; they are never used to
create tables in production (``open_database`` runs the Alembic migrations). A test compares
the migrated database with this metadata so the two cannot drift apart.

Flower node and run ids are unsigned 64-bit numbers, beyond PostgreSQL's BIGINT, so they are
stored as decimal text and exposed as ``int`` by the services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from coordinator.db.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RETAILER_STATUSES = ("active", "revoked")
CAMPAIGN_STATUSES = ("pending", "running", "finished", "failed", "cancelled")
ROUND_STAGES = ("train", "statistics")
ROLES = ("admin", "retailer", "viewer")
HASH_LENGTH = 64  # hex SHA-256
GENESIS_HASH = "0" * HASH_LENGTH


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention (stable constraint names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012


class Retailer(Base):
    """An enrolled retailer: one node key pair, registered with the SuperLink."""

    __tablename__ = "retailers"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'revoked')", name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    node_public_key: Mapped[str] = mapped_column(Text, unique=True)
    flower_node_id: Mapped[str | None] = mapped_column(String(20), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]


class EnrollmentToken(Base):
    """A single-use invitation for one retailer; only its SHA-256 is kept."""

    __tablename__ = "enrollment_tokens"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    retailer_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_retailer_id: Mapped[int | None] = mapped_column(
        ForeignKey("retailers.id", ondelete="SET NULL")
    )


class Credential(Base):
    """An API credential (access + refresh token pair), stored as SHA-256 hashes only."""

    __tablename__ = "credentials"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'retailer', 'viewer')", name="role"),
        CheckConstraint(
            "(role = 'retailer' AND retailer_id IS NOT NULL)"
            " OR (role <> 'retailer' AND retailer_id IS NULL)",
            name="retailer_role",
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    retailer_id: Mapped[int | None] = mapped_column(
        ForeignKey("retailers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    access_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    refresh_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Campaign(Base):
    """A federated training campaign (one Flower run)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'finished', 'failed', 'cancelled')", name="status"
        ),
        Index("ix_campaigns_status", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    rounds: Mapped[int] = mapped_column(Integer)
    epsilon: Mapped[float] = mapped_column(Float)
    tasks: Mapped[str] = mapped_column(String(200))
    flower_run_id: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class RoundProgress(Base):
    """One attempt at one round of a campaign; ``seq`` only grows (streamed to watchers)."""

    __tablename__ = "round_progress"
    __table_args__ = (
        CheckConstraint("stage IN ('train', 'statistics')", name="stage"),
        Index("ix_round_progress_campaign_id_seq", "campaign_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    participants: Mapped[int] = mapped_column(Integer)
    dropouts: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]


class LedgerReport(Base):
    """A node's report of its own privacy ledger (the node stays the authority)."""

    __tablename__ = "ledger_reports"
    __table_args__ = (
        UniqueConstraint("retailer_id", "campaign_id", "round"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    retailer_id: Mapped[int] = mapped_column(ForeignKey("retailers.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    round: Mapped[int] = mapped_column(Integer)
    epsilon_spent: Mapped[float] = mapped_column(Float)
    epsilon_cap: Mapped[float] = mapped_column(Float)
    reported_at: Mapped[datetime]


class ModelVersion(Base):
    """A published global model: an .npz file, its checksum and its model card."""

    __tablename__ = "model_versions"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(HASH_LENGTH))
    path: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Aggregate(Base):
    """A published aggregate (market statistics) from at least k contributors."""

    __tablename__ = "aggregates"
    __table_args__ = (
        CheckConstraint("contributors >= 5", name="k_anonymity"),
        Index("ix_aggregates_kind_expires_at", "kind", "expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    contributors: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditEvent(Base):
    """One hash-chained audit event; ``seq`` is contiguous (gaps mean deletions)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject_seq", "subject", "seq"),
        Index("ix_audit_events_at", "at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)


class AuditAnchor(Base):
    """The single row that pins the audit chain's ends.

    ``seq``/``hash``: the last pruned event (0 and the genesis hash before any pruning), so a
    chain whose oldest events were removed for retention still verifies. ``head_seq``/
    ``head_hash``: the last appended event, so removing the newest events is detected too.
    """

    __tablename__ = "audit_anchor"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    head_seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
