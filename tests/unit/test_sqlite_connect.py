"""A new SQLite connection does not wait for another connection's write (issue 6).

The pool opens connections while other threads write. Setting `auto_vacuum` on every new
connection waited for the write lock (in SQLite's busy handler, in sleeps of up to 100 ms): a
burst's publishers stalled for seconds opening connections. It is set only on a file that needs it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from bookingsync.worker.db import make_engine


def test_a_new_connection_opens_while_another_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = make_engine(f"sqlite:///{path}")
    with first.begin() as conn:  # the file exists, in WAL and incremental auto_vacuum
        conn.execute(text("CREATE TABLE t (a INTEGER)"))
    first.dispose()

    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(2.0, writer.execute, args=("COMMIT",))
    release.start()
    try:
        engine = make_engine(f"sqlite:///{path}")
        began = time.monotonic()
        with engine.connect() as conn:
            opened = time.monotonic() - began
            raw = conn.connection.driver_connection  # no transaction: that would wait for the writer
            assert raw is not None
            assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        engine.dispose()
    finally:
        release.cancel()  # a passing run does not wait the two seconds out
        release.join()
        if writer.in_transaction:
            writer.execute("COMMIT")
        writer.close()
    assert opened < 1.0, f"opening a connection waited {opened:.1f}s for another's write"
