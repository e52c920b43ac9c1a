"""The coordinator's database: schema, migrations runner, sessions and shared types."""

from coordinator.db.database import (
    Database,
    DatabaseError,
    NotFoundError,
    create_database_engine,
    migrate,
    open_database,
)
from coordinator.db.types import Clock, UTCDateTime, as_utc, utc_now

__all__ = [
    "Clock",
    "Database",
    "DatabaseError",
    "NotFoundError",
    "UTCDateTime",
    "as_utc",
    "create_database_engine",
    "migrate",
    "open_database",
    "utc_now",
]
