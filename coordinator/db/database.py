"""Opening the coordinator's database: engine, SQLite tuning, migrations, sessions.

The coordinator keeps everything (retailers, credentials, campaigns, audit log) in one
database: SQLite by default (embedded, one file, nothing to operate) and PostgreSQL when a
``postgresql+psycopg://`` URL is given. ``open_database`` always brings the schema to the
newest Alembic revision, so a daemon upgraded in place migrates its own data on start; the
tables are never created from the ORM metadata outside tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, CursorResult, Result, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x52495031  # pg_advisory_xact_lock key: one migrator at a time


class DatabaseError(RuntimeError):
    """The database cannot be opened or migrated; the message says which and why."""


class NotFoundError(LookupError):
    """A record asked for by id does not exist (routes answer 404)."""


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the API read while a campaign writes; foreign keys are off by default in
    SQLite; busy_timeout makes concurrent writers wait instead of failing at once.

    The driver's own transaction handling is switched off so that ``_sqlite_on_begin`` decides
    how a transaction starts.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Write transactions start with BEGIN IMMEDIATE: they take the write lock up front, so
    two writers queue (busy_timeout) instead of one failing with "database is locked" when it
    upgrades a read snapshot that another writer has meanwhile changed."""
    readonly = connection.get_execution_options().get("coordinator_readonly", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


class Database:
    """An open coordinator database: the engine plus transaction helpers.

    ``session()`` is the unit of work for services: it commits when the block ends and rolls
    back when it raises. ``session(readonly=True)`` is for queries: it sees one consistent
    snapshot, does not take SQLite's write lock, and never commits.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        options: dict[str, Any] = {"coordinator_readonly": True}
        if engine.dialect.name == "postgresql":
            # One snapshot for the whole read (SQLite's deferred transactions already are one).
            options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._readonly_engine = engine.execution_options(**options)

    @property
    def url(self) -> URL:
        """The database URL; its ``str`` and ``repr`` hide the password."""
        return self.engine.url

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``: services adapt their locking to it."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        bind = self._readonly_engine if readonly else self.engine
        with Session(bind, expire_on_commit=False) as session:
            if readonly:
                # Closing (not rolling back) ends the transaction without expiring what was
                # loaded, so records built from it stay readable after the block.
                yield session
            else:
                with session.begin():
                    yield session

    def ping(self) -> bool:
        """True when the database answers a trivial query (health checks)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        """Release every pooled connection; the object must not be used afterwards."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def create_database_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url`` with the coordinator's SQLite settings; no migration is run."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            # One shared connection, otherwise every new connection sees an empty database.
            engine = create_engine(
                parsed,
                echo=echo,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, echo=echo)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(parsed, echo=echo, pool_pre_ping=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration without an .ini file; ``connection`` is handed to env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction, one migrator at a time."""
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})"))
        command.upgrade(alembic_config(connection), revision)


def open_database(url: str | URL, *, echo: bool = False) -> Database:
    """Open (creating if needed) the database at ``url`` and migrate it to the newest schema.

    ``url`` is any SQLAlchemy URL: ``sqlite:///path/coordinator.sqlite`` (parent folders are
    created) or ``postgresql+psycopg://user:pass@host/db``. Raises ``DatabaseError`` naming the
    (password-masked) URL when it cannot be reached or migrated.
    """
    try:
        engine = create_database_engine(url, echo=echo)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise DatabaseError(f"cannot use database URL: {_reason(exc)}") from exc
    try:
        migrate(engine)
    except CommandError as exc:  # typically a revision this program does not know
        masked = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        raise DatabaseError(
            f"the database {masked} has a schema this version does not know ({exc}); "
            "it was probably written by a newer coordinator: upgrade this one"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        masked = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        raise DatabaseError(
            f"cannot open or migrate the database {masked}: {_reason(exc)}"
        ) from exc
    except BaseException:
        engine.dispose()
        raise
    return Database(engine)


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` changed."""
    if isinstance(result, CursorResult):
        return int(result.rowcount or 0)
    raise TypeError("not the result of an UPDATE or DELETE statement")


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0] if str(original or exc) else type(exc).__name__
