"""Engines, sessions and migrations, for SQLite and PostgreSQL alike.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for every transaction: writers queue for
the lock up front instead of failing when a read snapshot goes stale under another writer. Within
one process they queue on a lock of the engine, first come first served, so the write lock passes
from one thread to the next at once (see `make_engine`). A new SQLite file is made with
incremental auto_vacuum, so retention can give freed pages back (worker/retention.py); a file
made before that is converted by `upgrade` (one full VACUUM) while it is small enough to do so
quickly, and otherwise named in a warning with the command that converts it.
PostgreSQL connections give up after CONNECT_TIMEOUT_SECONDS, so a database that does not
answer is reported in seconds, not minutes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

import bookingsync.models

MIGRATIONS = Path(bookingsync.models.__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 3
_HOLDS_WRITER = "bookingsync_holds_writer"
# A VACUUM rewrites the whole file (and needs room for a copy): done on its own at upgrade only
# below this size, where it takes seconds; a bigger file waits for `bookingsync prune --vacuum`.
AUTO_VACUUM_CONVERT_MAX_BYTES = 256 * 2**20
SQLITE_INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental

log = logging.getLogger(__name__)


# Each SQLite engine's lock of its process's writers (make_engine), for a writer that must not
# wait for it: the web process's event loop tries it and leaves the batch to a thread if it is taken.
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def process_write_lock(engine: Engine) -> threading.Lock | None:
    """The lock every transaction of this SQLite engine holds from BEGIN to its end; None for PostgreSQL."""
    return _WRITE_LOCKS.get(engine)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "isolation_level": None,
            },
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # Takes effect only on a file without tables yet (a new one); harmless on the others.
            # Set only when it differs: setting it waits for the write lock (in the busy handler's
            # sleeps), and the pool opens connections while other threads write (issue 6: a burst's
            # publishers stalled here for seconds). Reading it takes no lock.
            if cursor.execute("PRAGMA auto_vacuum").fetchone()[0] != SQLITE_INCREMENTAL:
                cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        # One writer at a time, queued on a lock of this process: SQLite's own busy handler makes a
        # waiting writer sleep in growing steps (up to 100 ms each) and so wastes most of the time
        # the lock is free when a process's threads contend. Other processes still meet the
        # busy timeout.
        writer = threading.Lock()
        _WRITE_LOCKS[engine] = writer

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise sqlite3.OperationalError(
                    "database is locked: another thread of this process held the "
                    f"write lock for {SQLITE_BUSY_TIMEOUT_MS / 1000:.0f}s"
                )
            conn.info[_HOLDS_WRITER] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release(conn)
                raise

        def _release(conn: Any) -> None:
            if conn.info.pop(_HOLDS_WRITER, False):
                writer.release()

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            # The event comes before SQLAlchemy's own commit; commit here so the lock is let go only
            # once the transaction is over (SQLAlchemy's commit then finds none and does nothing).
            conn.connection.dbapi_connection.commit()
            _release(conn)

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            try:
                conn.connection.dbapi_connection.rollback()
            finally:
                _release(conn)

        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **kwargs.pop("connect_args", {})}
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=kwargs.pop("pool_size", 5),
        max_overflow=kwargs.pop("max_overflow", 10),
        connect_args=connect_args,
        **kwargs,
    )


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
    if engine.dialect.name == "sqlite":
        note = ensure_incremental_vacuum(engine)
        if note:
            log.warning("%s", note)


def sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    return Path(database) if database and database != ":memory:" else None


def convert_to_incremental_vacuum(engine: Engine) -> None:
    """Switch an SQLite file to incremental auto_vacuum: the mode only takes effect through a VACUUM."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")


def ensure_incremental_vacuum(engine: Engine, max_bytes: int = AUTO_VACUUM_CONVERT_MAX_BYTES) -> str | None:
    """Convert an SQLite file made before incremental auto_vacuum, when it is small enough; a note
    saying what was done or what to run, or None when there was nothing to do."""
    path = sqlite_file(engine)
    if path is None:
        return None
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
    if mode == SQLITE_INCREMENTAL:
        return None
    size = path.stat().st_size if path.exists() else 0
    if size > max_bytes:
        return (
            f"{path} ({size / 2**20:.0f} MiB) predates incremental auto_vacuum, so space retention frees "
            "stays inside the file; run `bookingsync prune --vacuum` once (rewrites it, needs as much free "
            "disk again) to let the file shrink"
        )
    convert_to_incremental_vacuum(engine)
    return f"converted {path} ({size / 2**20:.1f} MiB) to incremental auto_vacuum, so retention can shrink it"


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


def insert_for(dialect: str) -> Any:
    """The INSERT that knows ON CONFLICT, for a database dialect's name (PostgreSQL's or SQLite's)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
