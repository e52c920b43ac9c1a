"""Alembic migrations of the coordinator database (run by ``coordinator.db.open_database``)."""
