"""PostgreSQL webhook receipts written from the web process's event loop.

The thread writer (`GroupCommit` with `write_receipts`) hands each batch from the event loop to
a writer thread and back, and spends three round trips on it (the pool's pre-ping, the INSERT,
the COMMIT); each hop waits for the GIL held by the busy loop and, on a loaded machine, for a
core. Here the loop itself sends the batch on a psycopg async connection in autocommit: one
statement per batch (a multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`) that is its own
transaction. psycopg returns from `execute` only at
ReadyForQuery, after the commit, so a caller hears back only once its row is stored.

While a batch is in flight the requests that arrive queue for the next; `CONNECTIONS` batches
may be in flight at once, each on its own connection. A failed batch is written again row by row
on a fresh connection, so one bad row fails only its own caller. The connection settings are
those of the engine's pooled connections (its URL and connect arguments, the schema's search
path included), read once from one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from sqlalchemy import Engine

from bookingsync.worker.receipts import Receipt, first_of_each, insert_postgres_sql, outcomes, postgres_params

log = logging.getLogger(__name__)
# Batches in flight at once, one connection each. One: the next batch gathers what arrives while
# the previous commits. Two made smaller batches and more CPU a receipt, no more requests/s (bench/README).
CONNECTIONS = 1
MAX_BATCH = 500
Outcome = tuple[str, int | None]


class LoopReceipts:
    """`await submit(receipt)` -> (outcome, receipt id), as `GroupCommit.submit_async` answers it."""

    def __init__(
        self,
        engine: Engine,
        *,
        after: Callable[[Sequence[Receipt], Sequence[Outcome]], None] | None = None,
        connections: int = CONNECTIONS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.engine, self.after, self.connections, self.max_batch = engine, after, connections, max_batch
        self._conninfo: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[tuple[Receipt, asyncio.Future[Outcome]]] = deque()
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, item: Receipt) -> Outcome:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start(loop)
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((item, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Writers on this loop (a server has one; a test client may bring a new one per request)."""
        self._loop, self._queue, self._wake = loop, deque(), asyncio.Event()
        self._tasks = [
            loop.create_task(self._writer(), name=f"receipts-{i}") for i in range(self.connections)
        ]

    async def _writer(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        queue, wake = self._queue, self._wake
        assert wake is not None
        try:
            while True:
                while not queue:
                    wake.clear()
                    await wake.wait()
                await _quiet_turn(queue, self.max_batch)
                batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                items = [item for item, _ in batch]
                try:
                    conn = await self._connected(conn)
                    results = await _write(conn, items)
                except Exception as exc:
                    conn = await _dropped(conn)
                    if len(batch) == 1:
                        log.exception("webhook receipts: writing a receipt failed")
                        _settle(batch, None, exc)
                        continue
                    log.warning(
                        "webhook receipts: a batch of %d failed (%s); writing them one by one",
                        len(batch),
                        exc,
                    )
                    for single in batch:
                        conn = await self._write_one(conn, single)
                    continue
                self._answer(batch, results)
        finally:
            if conn is not None:
                await conn.close()

    async def _write_one(
        self, conn: psycopg.AsyncConnection[Any] | None, single: tuple[Receipt, asyncio.Future[Outcome]]
    ) -> psycopg.AsyncConnection[Any] | None:
        try:
            conn = await self._connected(conn)
            results = await _write(conn, [single[0]])
        except Exception as exc:
            log.exception("webhook receipts: writing a receipt failed")
            _settle([single], None, exc)
            return await _dropped(conn)
        self._answer([single], results)
        return conn

    def _answer(
        self, batch: Sequence[tuple[Receipt, asyncio.Future[Outcome]]], results: list[Outcome]
    ) -> None:
        """Callers first, then the after-commit step (HandOver only queues the batch for its thread)."""
        _settle(batch, results, None)
        if self.after is not None:
            try:
                self.after([item for item, _ in batch], results)
            except Exception:
                log.exception("webhook receipts: the after-commit step failed")

    async def _connected(self, conn: psycopg.AsyncConnection[Any] | None) -> psycopg.AsyncConnection[Any]:
        if conn is not None and not conn.closed:
            return conn
        if self._conninfo is None:
            self._conninfo = await asyncio.to_thread(self._pooled_conninfo)
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    def _pooled_conninfo(self) -> str:
        with self.engine.connect() as conn:
            info = conn.connection.driver_connection.info  # type: ignore[union-attr]
            return psycopg.conninfo.make_conninfo(
                info.dsn, **({"password": info.password} if info.password else {})
            )


async def _quiet_turn(queue: deque[Any], most: int) -> None:
    """Return once a turn of the loop adds nothing to `queue` (every request that was ready has been
    read and waits here) or it holds `most`: one statement for the requests of a burst, not one for
    the first and another for the rest. Alone, a receipt waits one turn."""
    seen = -1
    while seen != len(queue) < most:
        seen = len(queue)
        await asyncio.sleep(0)


async def _write(conn: psycopg.AsyncConnection[Any], items: Sequence[Receipt]) -> list[Outcome]:
    first = first_of_each(items)
    rows = [items[index].row for index in first.values()]
    # One statement of the next power-of-two size, its spare rows copies of the last row (ON
    # CONFLICT DO NOTHING skips a key the same statement inserted): a dozen statement texts at
    # most, and the batch is one transaction. Not one array per column (`unnest`): psycopg dumps
    # arrays in Python, 1.4 ms for 16 receipts against 75 µs for the same values one by one.
    size = 1 << (len(rows) - 1).bit_length()
    rows += [rows[-1]] * (size - len(rows))
    async with psycopg.AsyncRawCursor(conn) as cursor:
        await cursor.execute(insert_postgres_sql(size), postgres_params(rows))
        stored = {
            (connection, delivery_id): receipt_id
            for receipt_id, connection, delivery_id in await cursor.fetchall()
        }
    return outcomes(items, first, stored)


async def _dropped(conn: psycopg.AsyncConnection[Any] | None) -> psycopg.AsyncConnection[Any] | None:
    """After a failure: keep a connection that is healthy and idle (a bad row's statement rolled
    itself back), else throw it away so the next write opens a new one."""
    if conn is None or (
        not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    ):
        return conn
    try:
        await conn.close()
    except Exception:  # noqa: BLE001 - it is being thrown away
        pass
    return None


def _settle(
    batch: Sequence[tuple[Receipt, asyncio.Future[Outcome]]],
    results: Sequence[Outcome] | None,
    error: BaseException | None,
) -> None:
    for index, (_, future) in enumerate(batch):
        if future.done():  # cancelled: the client went away
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[index])
