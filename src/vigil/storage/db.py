"""The catalog database: SQLAlchemy engine (SQLite in WAL mode, or PostgreSQL), Alembic migrations on open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from vigil.core.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def shown(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "(unreadable URL)"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout. PostgreSQL connections
    are checked before use (``pool_pre_ping``), so a restarted server costs no failed request."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        pg = make_url(url).get_backend_name() == "postgresql"
        engine = create_engine(url, pool_pre_ping=True) if pg else create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot use database URL {shown(url)!r}: {exc}",
            hint="check VIGIL_DATABASE_URL (PostgreSQL: postgresql+psycopg://USER:PASSWORD@HOST/DB)",
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # A migration that rebuilds a table drops the old one: with foreign keys on, that drop
            # would cascade into every table that refers to it. The pragma only works outside a
            # transaction; the references are checked once the migration is done.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if sqlite else []
                if broken:
                    raise ConfigError(
                        f"the catalog migration left {len(broken)} broken references (first: {broken[0]})",
                        hint="restore the catalog from a backup and report the problem",
                    )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


@dataclass
class Database:
    """The catalog: an engine and a session factory, migrated on open."""

    url: str
    engine: Engine = field(init=False)
    _sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)
        try:
            migrate(self.engine)
        except SQLAlchemyError as exc:
            raise ConfigError(
                f"cannot open the catalog at {shown(self.url)}: {exc}",
                hint="check that the database server runs and VIGIL_DATABASE_URL names it",
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


class HasDatabase(Protocol):
    """What storage functions take: anything with the catalog (:class:`vigil.app.App` is one)."""

    @property
    def db(self) -> Database: ...
