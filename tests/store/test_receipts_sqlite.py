"""SQLite webhook receipts written by the event loop when the write lock is free (worker/receipts_sqlite.py).

Concurrent callers share one transaction and hear back only once it is committed; duplicates
are told apart; when another thread of the process, or another process, holds the write lock
the loop does not wait for it (the writer thread does) and nothing is lost; one bad row fails
only its own caller; an in-memory database keeps the thread writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, upgrade
from bookingsync.worker.groupcommit import GroupCommit
from bookingsync.worker.receipts import Receipt, write_receipts
from bookingsync.worker.receipts_sqlite import LoopSQLiteReceipts, writable_from_loop
from bookingsync.worker.runtime import Runtime
from tests.store.test_receipts import (
    arriving_over_turns,
    item,
    loop_callers_hear_back_only_when_stored,
    one_bad_row_among_good,
    stored_ids,
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def thread_writer(engine: Engine) -> Iterator[GroupCommit[Any]]:
    writer: GroupCommit[Any] = GroupCommit(engine, write_receipts, name="test receipts")
    yield writer
    writer.close()


def loop_writer(engine: Engine, thread_writer: GroupCommit[Any], **kwargs: Any) -> LoopSQLiteReceipts:
    return LoopSQLiteReceipts(engine, thread_writer.submit_async, **kwargs)


async def ticking(stop: asyncio.Event) -> float:
    """The longest the loop went without running this task: how long anything blocked it."""
    longest, last = 0.0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


def test_concurrent_callers_share_one_transaction_and_hear_back_only_when_stored(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    after: list[int] = []
    writer = loop_writer(engine, thread_writer, after=lambda items, results: after.append(len(items)))
    loop_callers_hear_back_only_when_stored(engine, writer.submit, 40)
    writer.close()
    # All 40 were ready in one turn of the loop: one transaction, written by the loop itself.
    assert after == [40]
    assert (writer.written_here, writer.handed_on) == (1, 0)


def test_a_batch_is_written_once_a_turn_of_the_loop_adds_nothing(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    """Not at a fixed linger: a request alone is answered at once, not after LINGER_SECONDS."""
    writer = loop_writer(engine, thread_writer, linger=5.0)

    async def main() -> float:
        started = time.monotonic()
        assert (await writer.submit(item("alone")))[0] == "accepted"
        return time.monotonic() - started

    took = asyncio.run(main())
    writer.close()
    assert took < 1.0
    assert stored_ids(engine) == {"alone"}


def test_receipts_arriving_over_consecutive_turns_share_a_batch(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    after: list[int] = []
    writer = loop_writer(engine, thread_writer, after=lambda items, results: after.append(len(items)))
    results = arriving_over_turns(writer.submit, 20, turns=4)
    writer.close()
    assert [outcome for outcome, _ in results] == ["accepted"] * 20
    assert after == [20]  # written once the loop had read them all, not after the first turn's


def test_duplicates_inside_a_batch_and_across_batches(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    writer = loop_writer(engine, thread_writer)

    async def main() -> tuple[list[Any], list[Any]]:
        first = await asyncio.gather(*(writer.submit(item(x)) for x in ("a", "b", "a", "c", "b")))
        again = await asyncio.gather(*(writer.submit(item(x)) for x in ("b", "d")))
        return first, again

    first, again = asyncio.run(main())
    writer.close()
    assert [outcome for outcome, _ in first] == ["accepted", "accepted", "duplicate", "accepted", "duplicate"]
    assert [outcome for outcome, _ in again] == ["duplicate", "accepted"]
    assert stored_ids(engine) == {"a", "b", "c", "d"}


def test_while_another_thread_writes_the_loop_does_not_wait_and_the_thread_writer_stores_them(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    writer = loop_writer(engine, thread_writer)
    holding, release = threading.Event(), threading.Event()

    def other_role() -> None:  # in `run`: an ingest page, the relay
        with engine.begin():
            holding.set()
            release.wait(10)

    other = threading.Thread(target=other_role)
    other.start()
    assert holding.wait(5)

    async def main() -> tuple[list[Any], float]:
        stop = asyncio.Event()
        ticker = asyncio.create_task(ticking(stop))
        pending = asyncio.gather(*(writer.submit(item(f"w{i}")) for i in range(5)))
        await asyncio.sleep(0.5)  # the lock is held all this while
        assert not pending.done()  # nothing answered that is not stored
        release.set()
        results = await pending
        stop.set()
        return results, await ticker

    results, longest_stall = asyncio.run(main())
    other.join(5)
    writer.close()
    assert [outcome for outcome, _ in results] == ["accepted"] * 5
    assert stored_ids(engine) == {f"w{i}" for i in range(5)}
    assert (writer.written_here, writer.handed_on) == (0, 1)
    assert longest_stall < 0.25  # the loop kept running while the thread writer waited


def test_while_another_process_holds_the_database_the_loop_does_not_wait(
    engine: Engine, thread_writer: GroupCommit[Any]
) -> None:
    """Another process's write lock is not the process lock: BEGIN fails at once (busy timeout 0)
    and the thread writer, whose connections wait, stores the batch once the lock is let go."""
    writer = loop_writer(engine, thread_writer)
    database = engine.url.database
    assert database is not None
    outside = sqlite3.connect(database, isolation_level=None)  # as another process's connection
    outside.execute("BEGIN IMMEDIATE")

    async def main() -> tuple[list[Any], float]:
        stop = asyncio.Event()
        ticker = asyncio.create_task(ticking(stop))
        pending = asyncio.gather(*(writer.submit(item(f"p{i}")) for i in range(3)))
        await asyncio.sleep(0.5)
        assert not pending.done()
        outside.execute("COMMIT")
        results = await pending
        stop.set()
        return results, await ticker

    try:
        results, longest_stall = asyncio.run(main())
    finally:
        outside.close()
    writer.close()
    assert [outcome for outcome, _ in results] == ["accepted"] * 3
    assert stored_ids(engine) == {"p0", "p1", "p2"}
    assert writer.handed_on == 1
    assert longest_stall < 0.25


def test_a_bad_row_fails_only_its_own_caller(engine: Engine, thread_writer: GroupCommit[Any]) -> None:
    writer = loop_writer(engine, thread_writer)
    error = one_bad_row_among_good(engine, writer.submit)
    writer.close()
    assert "NOT NULL" in str(error)
    # The loop rolled its try back, and the thread writer isolated the bad row.
    assert (writer.written_here, writer.handed_on) == (0, 1)
    # The loop's connection is usable again: the next batch is written there.
    assert asyncio.run(_one(writer, "after"))[0] == "accepted"
    assert writer.written_here == 1


async def _one(writer: LoopSQLiteReceipts, delivery_id: str) -> Any:
    return await writer.submit(item(delivery_id))


def test_only_a_sqlite_file_is_written_from_the_loop(tmp_path: Path) -> None:
    cfg = parse_config({}, environ={})
    memory = make_engine("sqlite://")
    assert not writable_from_loop(memory)
    assert Runtime(config=cfg, engine=memory).loop_receipts is None
    on_file = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    assert writable_from_loop(on_file)
    rt = Runtime(config=cfg, engine=on_file)
    assert isinstance(rt.loop_receipts, LoopSQLiteReceipts)
    rt.close()


def test_the_loop_never_checkpoints_itself_and_a_thread_keeps_the_wal_bounded(
    engine: Engine, thread_writer: GroupCommit[Any], tmp_path: Path
) -> None:
    # SQLite's automatic checkpoint would run in the loop's commit and hold every request meanwhile;
    # here the loop's connection has it off, and a thread checkpoints every `checkpoint_bytes`. The
    # WAL stays near that size however much is written: without the thread's checkpoints it would
    # hold everything (autocheckpoint off), and with SQLite's own it would grow to 1,000 pages first.
    writer = loop_writer(engine, thread_writer, checkpoint_bytes=64 * 1024)
    body = "x" * 2000
    written = 0

    async def main() -> None:
        nonlocal written
        for batch in range(48):
            items = [item(f"d{batch}-{i}") for i in range(32)]
            big = [Receipt(r.connection, r.delivery_id, r.kind, {**r.row, "body": body}) for r in items]
            results = await asyncio.gather(*(writer.submit(r) for r in big))
            assert [outcome for outcome, _ in results] == ["accepted"] * 32
            written += len(body) * len(big)
            await asyncio.sleep(0.005)  # a request's worth of other work: the thread gets its turn
        while writer._checkpointing is not None:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert writer._driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    wal = (tmp_path / "store.db-wal").stat().st_size  # before the last connection closes (and removes it)
    writer.close()
    assert writer.written_here == 48 and writer.handed_on == 0
    assert writer.checkpoints >= 10
    assert written > 3_000_000 and wal < 1_000_000, wal
    assert len(stored_ids(engine)) == 48 * 32
