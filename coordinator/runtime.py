"""The coordinator's services wired together once per process: what the API and CLI stand on.

``Coordinator.open`` builds every service over one database from the config; the SuperLink's
Control API client is optional, so the API can be served (and tested) without a SuperLink, in
which case enrollment records the node and registration waits until one is reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from coordinator.audit import AuditLog
from coordinator.auth import CredentialService
from coordinator.config import CoordinatorConfig
from coordinator.db import Database, open_database
from coordinator.flower_control import FlowerControl
from coordinator.services.aggregates import AggregateStore
from coordinator.services.campaigns import CampaignStore
from coordinator.services.enrollment import EnrollmentRateLimiter, EnrollmentService
from coordinator.services.ledger import LedgerMirror
from coordinator.services.models import ModelRegistry


@dataclass
class Coordinator:
    config: CoordinatorConfig
    db: Database
    audit: AuditLog
    credentials: CredentialService
    enrollment: EnrollmentService
    campaigns: CampaignStore
    ledger: LedgerMirror
    models: ModelRegistry
    aggregates: AggregateStore
    rate_limiter: EnrollmentRateLimiter
    control: FlowerControl | None = None
    superlink_address: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        config: CoordinatorConfig,
        *,
        control: FlowerControl | None = None,
        superlink_address: str | None = None,
    ) -> Coordinator:
        db = open_database(config.database_url)
        audit = AuditLog(db)
        credentials = CredentialService(
            db,
            access_ttl=timedelta(minutes=config.access_token_minutes),
            refresh_ttl=timedelta(days=config.refresh_token_days),
            audit=audit,
        )
        return cls(
            config=config,
            db=db,
            audit=audit,
            credentials=credentials,
            enrollment=EnrollmentService(db, audit, credentials),
            campaigns=CampaignStore(db, audit),
            ledger=LedgerMirror(db),
            models=ModelRegistry(db, _inside(config, config.models_dir), audit),
            aggregates=AggregateStore(db, timedelta(days=config.aggregate_retention_days)),
            rate_limiter=EnrollmentRateLimiter(config.enrollment_attempts_per_minute),
            control=control,
            superlink_address=superlink_address,
        )

    @property
    def ca_certificate(self) -> str:
        """The CA nodes pin at enrollment (PEM)."""
        return _inside(self.config, self.config.ca_cert).read_text("ascii")

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        self.db.close()


def _inside(config: CoordinatorConfig, path: Path) -> Path:
    return path if path.is_absolute() else config.data_dir / path
