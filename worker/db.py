"""Engines, sessions and migrations, for SQLite and PostgreSQL alike.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for every transaction: writers queue for
the lock up front instead of failing when a read snapshot goes stale under another writer. A new
SQLite file is made with incremental auto_vacuum, so retention can give freed pages back
(worker/retention.py). PostgreSQL connections give up after CONNECT_TIMEOUT_SECONDS, so a
database that does not answer is reported in seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

import bookingsync.models

MIGRATIONS = Path(bookingsync.models.__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 3


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                  "isolation_level": None}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # Takes effect only on a file without tables yet (a new one); harmless on the others.
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **kwargs.pop("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, pool_size=kwargs.pop("pool_size", 5),
                         max_overflow=kwargs.pop("max_overflow", 10), connect_args=connect_args, **kwargs)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error. The caller owns it."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's migration revision or None when it has none, the newest this code has)."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return current, head


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
