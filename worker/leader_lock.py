"""The leader's lock: held for as long as the holding process (or its database session) lives.

A timed lease alone makes a successor wait out the dead leader's lease. A lock that the operating
system or the database server releases the moment its holder is gone lets a successor lead at
once, so the scheduler uses one of these beside its lease (worker/leadership.py):

* PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a dedicated
  connection kept open in autocommit. The server drops it when that session ends: the process
  died, was SIGKILLed, or its connection broke. The key is a hash of the database, the schema the
  connection resolves to and the lock's name, so databases and schemas sharing one server (tests
  do) never contend.
* SQLite file: `flock` on a file beside the database (`<db file>.<name>.lock`). The kernel releases it
  when the process dies. `flock` belongs to an open file description, so two schedulers in one
  process contend exactly as two processes do.
* SQLite in memory: a lock of this process (no other process can open that database anyway).

Every `try_acquire` both takes a free lock and checks a held one: a PostgreSQL lock whose
connection fails is reported lost (the server has already released it or will when the session
dies), so the holder steps down instead of leading on a lock it may no longer have.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)


class LeaderLock(Protocol):
    holding: bool

    def try_acquire(self) -> bool:
        """Take the lock if it is free, or confirm it is still ours; never blocks on another holder."""
        ...

    def release(self) -> None: ...


class PostgresLock:
    """A session advisory lock on a connection of its own (autocommit, so it is never idle in a transaction)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self.holding = False
        self.failed = False  # the database failed under this lock since the flag was last cleared
        self._conn: Connection | None = None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never back into the pool: the session may still hold the lock
                conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken; nothing to keep
                pass

    def try_acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self.holding:
                self._conn.execute(text("SELECT 1")).scalar_one()  # the session lives, so the lock does
                return True
            got = self._conn.execute(
                text(
                    "SELECT pg_try_advisory_lock(hashtextextended(current_database() || '/' "
                    "|| coalesce(current_schema(), '') || '/' || :name, 0))"
                ),
                {"name": self.name},
            ).scalar_one()
            self.holding = bool(got)
            return self.holding
        except Exception as exc:  # noqa: BLE001 - any failure of the lock's session means the lock is gone
            self.failed = True
            if self.holding:
                log.warning("the leader lock's database session failed (%s); the lock is lost", exc)
            self.holding = False
            self._drop_connection()
            return False

    def release(self) -> None:
        if self._conn is not None and self.holding:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            except Exception:  # noqa: BLE001 - closing the session below releases it anyway
                pass
        self.holding = False
        self._drop_connection()


class FileLock:
    """`flock` on a file beside an SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.holding = False
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self.holding:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd, self.holding = fd, True
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        self.holding = False
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


class LocalLock:
    """For an in-memory SQLite database: only this process can reach it."""

    def __init__(self, key: str) -> None:
        with _LOCAL_GUARD:
            self._lock = _LOCAL.setdefault(key, threading.Lock())
        self.holding = False

    def try_acquire(self) -> bool:
        if not self.holding:
            self.holding = self._lock.acquire(blocking=False)
        return self.holding

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self._lock.release()


def sqlite_lock_path(database: str, name: str) -> Path:
    """`<database file>.<name>.lock`, in the database's own directory."""
    path = Path(os.path.abspath(database))
    return path.with_name(f"{path.name}.{name}.lock")


def for_engine(engine: Engine, name: str) -> LeaderLock:
    """The lock kind that fits the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresLock(engine, name)
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file::memory"):
        return FileLock(sqlite_lock_path(database, name))
    return LocalLock(f"{engine.url}/{name}")
