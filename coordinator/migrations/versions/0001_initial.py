"""Initial coordinator schema: retailers, enrollment, credentials, campaigns, ledger mirror,
models, aggregates and the hash-chained audit log (with database-level append-only guards).

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _hash(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.String(64), nullable=False)


SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
    """CREATE TRIGGER audit_events_delete_pruned_only BEFORE DELETE ON audit_events
    WHEN OLD.seq > (SELECT seq FROM audit_anchor WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, 'audit events are removed only by retention pruning'); END""",
    """CREATE TRIGGER audit_anchor_forward_only BEFORE UPDATE ON audit_anchor
    WHEN NEW.seq < OLD.seq OR NEW.head_seq < OLD.head_seq
    BEGIN SELECT RAISE(ABORT, 'the audit anchor only moves forward'); END""",
    """CREATE TRIGGER audit_anchor_kept BEFORE DELETE ON audit_anchor
    BEGIN SELECT RAISE(ABORT, 'the audit anchor cannot be deleted'); END""",
)

POSTGRES_TRIGGERS = (
    """CREATE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            RAISE EXCEPTION 'audit events are append-only';
        END IF;
        IF OLD.seq > (SELECT seq FROM audit_anchor WHERE id = 1) THEN
            RAISE EXCEPTION 'audit events are removed only by retention pruning';
        END IF;
        RETURN OLD;
    END $$""",
    """CREATE TRIGGER audit_events_guard BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard()""",
    """CREATE FUNCTION audit_anchor_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'the audit anchor cannot be deleted';
        END IF;
        IF NEW.seq < OLD.seq OR NEW.head_seq < OLD.head_seq THEN
            RAISE EXCEPTION 'the audit anchor only moves forward';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER audit_anchor_guard BEFORE UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_guard()""",
)


def upgrade() -> None:
    op.create_table(
        "retailers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("node_public_key", sa.Text(), nullable=False),
        sa.Column("flower_node_id", sa.String(20), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="ck_retailers_status"),
        sa.PrimaryKeyConstraint("id", name="pk_retailers"),
        sa.UniqueConstraint("name", name="uq_retailers_name"),
        sa.UniqueConstraint("node_public_key", name="uq_retailers_node_public_key"),
        sa.UniqueConstraint("flower_node_id", name="uq_retailers_flower_node_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        _hash("token_hash"),
        sa.Column("retailer_name", sa.String(100), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("used_by_retailer_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["used_by_retailer_id"],
            ["retailers.id"],
            name="fk_enrollment_tokens_used_by_retailer_id_retailers",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_enrollment_tokens_token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("retailer_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        _hash("access_hash"),
        _hash("refresh_hash"),
        _ts("access_expires_at"),
        _ts("refresh_expires_at"),
        _ts("revoked_at", nullable=True),
        _ts("created_at"),
        sa.CheckConstraint("role IN ('admin', 'retailer', 'viewer')", name="ck_credentials_role"),
        sa.CheckConstraint(
            "(role = 'retailer' AND retailer_id IS NOT NULL)"
            " OR (role <> 'retailer' AND retailer_id IS NULL)",
            name="ck_credentials_retailer_role",
        ),
        sa.ForeignKeyConstraint(
            ["retailer_id"],
            ["retailers.id"],
            name="fk_credentials_retailer_id_retailers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
        sa.UniqueConstraint("access_hash", name="uq_credentials_access_hash"),
        sa.UniqueConstraint("refresh_hash", name="uq_credentials_refresh_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_credentials_retailer_id", "credentials", ["retailer_id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("tasks", sa.String(200), nullable=False),
        sa.Column("flower_run_id", sa.String(20), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'finished', 'failed', 'cancelled')",
            name="ck_campaigns_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status"])
    op.create_table(
        "round_progress",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("participants", sa.Integer(), nullable=False),
        sa.Column("dropouts", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _ts("recorded_at"),
        sa.CheckConstraint("stage IN ('train', 'statistics')", name="ck_round_progress_stage"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_round_progress_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_round_progress"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_round_progress_campaign_id_seq", "round_progress", ["campaign_id", "seq"])
    op.create_table(
        "ledger_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("retailer_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("epsilon_cap", sa.Float(), nullable=False),
        _ts("reported_at"),
        sa.ForeignKeyConstraint(
            ["retailer_id"],
            ["retailers.id"],
            name="fk_ledger_reports_retailer_id_retailers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_ledger_reports_campaign_id_campaigns",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_reports"),
        sa.UniqueConstraint(
            "retailer_id",
            "campaign_id",
            "round",
            name="uq_ledger_reports_retailer_id_campaign_id_round",
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        _hash("sha256"),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_model_versions_campaign_id_campaigns"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("version", name="uq_model_versions_version"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_model_versions_campaign_id", "model_versions", ["campaign_id"])
    op.create_table(
        "aggregates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("contributors", sa.Integer(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.CheckConstraint("contributors >= 5", name="ck_aggregates_k_anonymity"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_aggregates_campaign_id_campaigns",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_aggregates"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_aggregates_kind_expires_at", "aggregates", ["kind", "expires_at"])
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _hash("prev_hash"),
        _hash("hash"),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("hash", name="uq_audit_events_hash"),
    )
    op.create_index("ix_audit_events_subject_seq", "audit_events", ["subject", "seq"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    anchor = op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _hash("hash"),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        _hash("head_hash"),
        sa.CheckConstraint("id = 1", name="ck_audit_anchor_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_anchor"),
    )
    op.bulk_insert(
        anchor,
        [{"id": 1, "seq": 0, "hash": GENESIS_HASH, "head_seq": 0, "head_hash": GENESIS_HASH}],
    )
    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRES_TRIGGERS}.get(dialect, ())
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_anchor_guard ON audit_anchor")
        op.execute("DROP TRIGGER IF EXISTS audit_events_guard ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_anchor_guard()")
        op.execute("DROP FUNCTION IF EXISTS audit_events_guard()")
    for table in (
        "audit_anchor",
        "audit_events",
        "aggregates",
        "model_versions",
        "ledger_reports",
        "round_progress",
        "campaigns",
        "credentials",
        "enrollment_tokens",
        "retailers",
    ):
        op.drop_table(table)  # SQLite triggers go with their tables
