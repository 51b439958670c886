"""SQLite webhook receipts written by the web process's event loop, when that costs no wait.

The thread writer (`GroupCommit` with `write_receipts`) costs every batch a round of wake-ups
between threads: the loop wakes the writer, the writer waits for the GIL the busy loop holds,
the writer wakes the loop with the answers. On the 2-core virtual machine of bench/ingress.py
those hand-overs, not the SQL, made the difference: the writer thread spent 49–68 µs of CPU a
receipt on batches that cost 29 µs written in a plain loop, and with the loop writing them the
web process spent 174–188 µs a request against 223–303 (bench/README.md, ingress).

So the loop gathers the receipts of the requests it has read, until a turn of the loop brings
no more (or `MAX_BATCH` of them, or `LINGER_SECONDS` after the first), and writes them itself,
one `BEGIN IMMEDIATE … COMMIT` on a connection of its own, but only where nothing makes it wait:

- the process's SQLite write lock (worker/db.py) is tried, never waited for: when another
  thread's transaction holds it (in `run`: an ingest page, the relay), the batch goes to the
  thread writer, which waits for it;
- the connection's busy timeout is 0: when another process holds the database's write lock,
  BEGIN fails at once and the batch goes to the thread writer.

The loop's connection never checkpoints the WAL itself. SQLite runs an automatic checkpoint in
the commit that takes the WAL past 1,000 pages, which here would be the event loop: copying 4 MB
back into the database and syncing it held every request for 12–16 ms (once every ~130 batches of
31 receipts, on this project's 2-core machine; the batches around it took 0.13 ms). Once the loop
has written about `CHECKPOINT_BYTES`, a passive checkpoint runs in a thread on a connection of its
own instead: SQLite lets it copy committed frames while the loop goes on writing, and the next
write after a complete one starts the WAL from its beginning again, so it stays about that size.

A batch that fails here for any other reason is rolled back and goes to the thread writer as
well, which writes it again item by item if it fails there too, so that one bad item fails only
its own caller. Either way a caller hears back only once its row is committed. An in-memory
database (a connection of its own would be another database) always uses the thread writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import Engine

from bookingsync.worker.db import process_write_lock
from bookingsync.worker.receipts import Receipt, write_sqlite_receipts

log = logging.getLogger(__name__)
Outcome = tuple[str, int | None]
# The longest the first receipt of a batch waits for others; a batch is written as soon as a turn
# of the loop adds nothing to it (`_when_quiet`), which under load is a whole batch (32 concurrent
# requests: batches of 31 on average) and alone is at once.
LINGER_SECONDS = 0.002
MAX_BATCH = 64
# A checkpoint after about as much as SQLite's own default (1,000 pages of 4 KiB) would have let in.
CHECKPOINT_BYTES = 4 * 1024 * 1024
# What a receipt adds to the WAL besides its body: its other columns and its index entries.
ROW_OVERHEAD_BYTES = 256


def writable_from_loop(engine: Engine) -> bool:
    """A SQLite file: a second connection sees the same database."""
    database = engine.url.database or ""
    return (
        engine.dialect.name == "sqlite"
        and process_write_lock(engine) is not None
        and database not in ("", ":memory:")
        and "mode=memory" not in str(engine.url)
    )


class LoopSQLiteReceipts:
    """`await submit(receipt)` -> (outcome, receipt id), as `GroupCommit.submit_async` answers it."""

    def __init__(
        self,
        engine: Engine,
        thread_writer: Callable[[Receipt], Awaitable[Outcome]],
        *,
        after: Callable[[Sequence[Receipt], Sequence[Outcome]], None] | None = None,
        linger: float = LINGER_SECONDS,
        max_batch: int = MAX_BATCH,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
    ) -> None:
        lock = process_write_lock(engine)
        if lock is None:
            raise ValueError("LoopSQLiteReceipts needs an engine made by worker.db.make_engine for SQLite")
        self.engine, self.thread_writer, self.after = engine, thread_writer, after
        self.linger, self.max_batch, self.checkpoint_bytes = linger, max_batch, checkpoint_bytes
        self._unchecked = 0  # bytes written here since the last checkpoint began
        self._checkpointing: asyncio.Future[None] | None = None
        self.checkpoints = 0  # completed in a thread (the tests read it)
        self._lock = lock
        self._driver: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Receipt, asyncio.Future[Outcome]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batch = 0  # which batch is gathering, for `_when_quiet`
        # Batches committed here, and batches left to the thread writer (the tests read them).
        self.written_here = 0
        self.handed_on = 0

    def submit(self, item: Receipt) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a test client may bring a new loop per request
            self._flush()
            self._loop = loop
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif len(self._pending) == 1:  # a new batch: written when the loop is through, or at the cap
            self._batch += 1
            self._timer = loop.call_later(self.linger, self._flush)
            loop.call_soon(self._when_quiet, self._batch, 0)
        return future

    def _when_quiet(self, batch: int, seen: int) -> None:
        """Write the batch once a turn of the loop has added nothing to it: every request that was
        ready has been read and is waiting here, and the loop would otherwise sit idle. A fixed
        linger instead either waits with nothing to do or writes before the batch is whole."""
        if batch != self._batch or not self._pending:  # written already (full, or at the cap)
            return
        if len(self._pending) == seen:
            self._flush()
        else:
            asyncio.get_running_loop().call_soon(self._when_quiet, batch, len(self._pending))

    def close(self) -> None:
        """Close the connection; receipts still gathering were never answered (the provider retries)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            results = self._write_here(items)
        except Exception:  # no connection, say: the thread writer has its own, and says why
            log.exception("webhook receipts: the loop could not write; the writer thread takes the batch")
            results = None
        if results is None:
            self.handed_on += 1
            for item, future in batch:
                _forward(self.thread_writer(item), future)
            return
        self.written_here += 1
        self._unchecked += sum(len(item.row.get("body") or "") + ROW_OVERHEAD_BYTES for item in items)
        if self._unchecked >= self.checkpoint_bytes and self._checkpointing is None:
            self._checkpoint_in_a_thread()
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # cancelled: the client went away
                try:
                    future.set_result(result)
                except RuntimeError:  # its loop is closed (a test client's earlier one): nobody waits
                    pass
        if self.after is not None:
            try:
                self.after(items, results)
            except Exception:
                log.exception("webhook receipts: the after-commit step failed")

    def _checkpoint_in_a_thread(self) -> None:
        self._unchecked = 0
        loop = asyncio.get_running_loop()
        database = self.engine.url.database
        assert database  # writable_from_loop: a file
        self._checkpointing = done = loop.run_in_executor(None, _checkpoint, database)

        def finished(future: asyncio.Future[None]) -> None:
            if self._checkpointing is done:
                self._checkpointing = None
            if future.cancelled():
                return
            if (error := future.exception()) is not None:
                # Nothing is lost: the next one copies what this one did not.
                log.warning("webhook receipts: a WAL checkpoint failed (%s); the next one will retry", error)
            else:
                self.checkpoints += 1

        done.add_done_callback(finished)

    def _write_here(self, items: list[Receipt]) -> list[Outcome] | None:
        """The batch's outcomes once committed, or None if it was not written (nothing of it is stored)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            driver = self._connection()
            try:
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                # Another process writes (SQLITE_BUSY at once), or worse, which the thread will report.
                log.debug("webhook receipts: BEGIN failed on the loop (%s); the writer thread takes it", exc)
                return None
            try:
                results = write_sqlite_receipts(driver, self.engine.dialect, items)
                driver.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001 - a bad row, say: the thread writer isolates it
                log.warning(
                    "webhook receipts: a batch of %d failed on the loop (%s); the writer thread takes it",
                    len(items),
                    exc,
                )
                _roll_back(driver)
                return None
            return results
        finally:
            self._lock.release()

    def _connection(self) -> Any:
        """A sqlite3 connection of this writer's own, with the engine's settings but no busy wait."""
        if self._driver is None:
            pooled = self.engine.raw_connection()
            driver: Any = pooled.driver_connection
            pooled.detach()  # never back in the pool: its busy timeout is 0
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")  # a thread checkpoints (see the module)
            self._driver = driver
        return self._driver


def _checkpoint(database: str) -> None:
    """A passive checkpoint (it waits for no reader or writer) on a connection opened for it: one
    every few MB, so opening one costs nothing that counts, and none is shared across threads."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        connection.close()


def _roll_back(driver: Any) -> None:
    try:
        if driver.in_transaction:
            driver.execute("ROLLBACK")
    except sqlite3.Error:  # the transaction is gone either way; the next BEGIN will tell
        log.exception("webhook receipts: ROLLBACK failed on the loop's connection")


def _forward(source: Awaitable[Outcome], target: asyncio.Future[Outcome]) -> None:
    """Settle `target` as the thread writer settles `source`."""
    inner = asyncio.ensure_future(source)

    def copy(done: asyncio.Future[Outcome]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    inner.add_done_callback(copy)
