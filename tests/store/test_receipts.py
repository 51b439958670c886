"""Group-committed webhook receipts on SQLite and PostgreSQL (the `engine` fixture).

Many concurrent callers share a transaction, nobody hears back before their row is committed,
duplicates are told apart inside a batch and across batches, and one bad row fails alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlmodel import Session

from bookingsync.adapters.base import RawRecord, WebhookDelivery
from bookingsync.models.tables import ReceiptRow
from bookingsync.worker import receipts
from bookingsync.worker.groupcommit import Closed, GroupCommit
from bookingsync.worker.receipts import MESSAGE_SIZE, HandOver, Receipt, hand_over, receipt, write_receipts

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def delivery(delivery_id: str, *, records: int = 1, handled: bool = True) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=delivery_id,
        event_type="meeting.scheduled",
        handled=handled,
        records=[
            RawRecord(payload={"id": f"m-{delivery_id}-{i}"}, external_id=f"m-{delivery_id}-{i}")
            for i in range(records)
        ],
    )


def item(delivery_id: str, **kwargs: Any) -> Receipt:
    return receipt("leezy", delivery(delivery_id, **kwargs), b'{"id": "x"}', NOW, 30)


@pytest.fixture
def commits(engine: Engine) -> Iterator[list[int]]:
    counted: list[int] = []

    def on_commit(_conn: Any) -> None:
        counted.append(1)

    event.listen(engine, "commit", on_commit)
    yield counted
    event.remove(engine, "commit", on_commit)


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(ReceiptRow.delivery_id)).scalars())


def one_bad_row_among_good(engine: Engine, submit: Any) -> BaseException:
    """Four concurrent receipts on one event loop, the third unstorable (no body): the other three
    are accepted and stored; the bad one's error is returned."""
    broken = item("broken")
    broken = Receipt(broken.connection, broken.delivery_id, broken.kind, {**broken.row, "body": None})

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(submit(x) for x in (item("ok1"), item("ok2"), broken, item("ok3"))), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [r[0] for r in results if not isinstance(r, BaseException)] == ["accepted"] * 3
    assert stored_ids(engine) == {"ok1", "ok2", "ok3"}
    assert isinstance(results[2], BaseException)
    return results[2]


def arriving_over_turns(submit: Any, n: int, turns: int) -> list[Any]:
    """`n` receipts submitted over `turns` consecutive turns of one event loop (as requests read
    from sockets that were ready a moment apart): their outcomes."""

    async def caller(i: int) -> Any:
        for _ in range(i % turns):
            await asyncio.sleep(0)
        return await submit(item(f"t{i}"))

    async def main() -> list[Any]:
        return await asyncio.gather(*(caller(i) for i in range(n)))

    return asyncio.run(main())


def loop_callers_hear_back_only_when_stored(engine: Engine, submit: Any, n: int) -> None:
    """`n` concurrent callers on one event loop: each answered `accepted` with an id, and each sees
    its row from a connection of the engine's pool once answered (committed, not only written)."""
    seen: dict[str, bool] = {}

    async def caller(i: int) -> None:
        outcome, receipt_id = await submit(item(f"d{i}"))
        assert outcome == "accepted" and receipt_id is not None
        seen[f"d{i}"] = f"d{i}" in await asyncio.to_thread(stored_ids, engine)

    async def main() -> None:
        await asyncio.gather(*(caller(i) for i in range(n)))

    asyncio.run(main())
    assert len(seen) == n and all(seen.values())
    assert stored_ids(engine) == {f"d{i}" for i in range(n)}


def test_concurrent_callers_share_commits_and_hear_back_only_when_stored(
    engine: Engine, commits: list[int]
) -> None:
    writer = GroupCommit(engine, write_receipts, name="test receipts")
    seen_before_answer: dict[str, bool] = {}
    lock = threading.Lock()
    start = threading.Barrier(40)

    def caller(i: int) -> None:
        start.wait()
        outcome, receipt_id = writer.submit(item(f"d{i}")).result(timeout=30)
        assert outcome == "accepted" and receipt_id is not None
        present = f"d{i}" in stored_ids(engine)  # from another connection: committed, not just written
        with lock:
            seen_before_answer[f"d{i}"] = present

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert len(seen_before_answer) == 40 and all(seen_before_answer.values())
    assert stored_ids(engine) == {f"d{i}" for i in range(40)}
    assert len(commits) < 40  # grouped: fewer transactions than requests


def test_duplicates_inside_a_batch_and_across_batches(engine: Engine) -> None:
    with engine.begin() as conn:
        first = write_receipts(conn, [item("a"), item("b"), item("a")])
    assert [outcome for outcome, _ in first] == ["accepted", "accepted", "duplicate"]
    assert first[0][1] is not None and first[0][1] != first[1][1]
    with engine.begin() as conn:
        again = write_receipts(conn, [item("b"), item("c")])
    assert [outcome for outcome, _ in again] == ["duplicate", "accepted"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ReceiptRow)).scalar_one() == 3


def test_a_batch_of_many_statements_stores_every_row_once(engine: Engine) -> None:
    """37 items, 30 distinct: more than one insert statement (16, 8, 4 and 2 rows)."""
    with engine.begin() as conn:
        results = write_receipts(conn, [item(f"d{i % 30}") for i in range(37)])
    assert [outcome for outcome, _ in results] == ["accepted"] * 30 + ["duplicate"] * 7
    assert len({receipt_id for _, receipt_id in results[:30]}) == 30
    assert stored_ids(engine) == {f"d{i}" for i in range(30)}


def test_batches_of_every_size_insert_with_a_few_statement_texts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both drivers keep statements compiled or prepared by text (worker/sql_lists.py): batches of
    1 to 40 receipts go in as statements of power-of-two sizes, six texts, not forty."""
    name = "insert_postgres_sql" if engine.dialect.name == "postgresql" else "_insert_sqlite_sql"
    built = getattr(receipts, name)
    sizes: list[int] = []

    def recording(rows: int) -> str:
        sizes.append(rows)
        return built(rows)

    monkeypatch.setattr(receipts, name, recording)
    for n in range(1, 41):
        with engine.begin() as conn:
            results = write_receipts(conn, [item(f"b{n}-{i}") for i in range(n)])
        assert [outcome for outcome, _ in results] == ["accepted"] * n
    assert len(stored_ids(engine)) == sum(range(1, 41))
    assert set(sizes) == {1, 2, 4, 8, 16, 32}


def test_kinds_are_stored_with_their_status(engine: Engine) -> None:
    with engine.begin() as conn:
        results = write_receipts(conn, [item("acc"), item("ign", handled=False), item("note", records=0)])
    assert [kind for kind, _ in results] == ["accepted", "ignored", "notified"]
    with engine.connect() as conn:
        rows = {r.delivery_id: r for r in conn.execute(select(ReceiptRow))}
    assert (
        rows["acc"].status == "leased" and rows["acc"].attempts == 1 and rows["acc"].lease_until is not None
    )
    assert rows["acc"].records == [{"payload": {"id": "m-acc-0"}, "external_id": "m-acc-0", "scope": None}]
    assert rows["acc"].received_at == rows["acc"].due_at == NOW and rows["acc"].handled is True
    assert rows["ign"].status == "ignored" and not rows["ign"].handled
    assert rows["note"].status == "done" and rows["note"].processed_at is not None


def test_callers_hear_back_before_the_after_commit_step_runs(engine: Engine) -> None:
    """A broker round trip after the commit must not hold the answers of the batch it follows."""
    release = threading.Event()
    writer = GroupCommit(engine, write_receipts, name="test receipts", after=lambda *_: release.wait(10))
    try:
        assert writer.submit(item("answered")).result(5)[0] == "accepted"
    finally:
        release.set()
        writer.close()


def test_a_bad_row_fails_only_its_own_caller(engine: Engine) -> None:
    gate = threading.Event()
    batches: list[list[str]] = []

    def gated(conn: Any, items: Any) -> Any:
        batches.append([i.delivery_id for i in items])
        if len(batches) == 1:
            gate.wait(10)  # hold the writer so that the next items queue up behind this one
        return write_receipts(conn, items)

    writer = GroupCommit(engine, gated, name="test receipts")
    held = writer.submit(item("first"))
    while not batches:
        threading.Event().wait(0.01)
    broken = item("broken")
    broken = Receipt(
        broken.connection, broken.delivery_id, broken.kind, {**broken.row, "body": None}
    )  # NOT NULL
    futures = [writer.submit(x) for x in (item("ok1"), broken, item("ok2"))]
    gate.set()
    assert held.result(10)[0] == "accepted"
    assert futures[0].result(10)[0] == "accepted" and futures[2].result(10)[0] == "accepted"
    with pytest.raises(Exception, match="body"):
        futures[1].result(10)
    writer.close()
    assert batches[1] == ["ok1", "broken", "ok2"]  # tried together first, then one by one
    assert stored_ids(engine) == {"first", "ok1", "ok2"}
    with pytest.raises(Closed):
        writer.submit(item("late")).result(1)


class Sent:
    """Actors whose sends are recorded, as (actor, argument)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.ingest, self.poll = self._actor("ingest"), self._actor("poll")

    def _actor(self, name: str) -> Any:
        sent = self.sent

        class Actor:
            def send(self, arg: Any) -> None:
                sent.append((name, arg))

        return Actor()


def test_one_ingest_message_per_batch_and_one_poll_per_noticing_connection() -> None:
    actors = Sent()
    items = [item("a"), item("b"), item("n1", records=0), item("n2", records=0), item("a")]
    hand_over(
        actors,
        items,
        [("accepted", 1), ("accepted", 2), ("notified", 3), ("notified", 4), ("duplicate", None)],
    )
    assert actors.sent == [("ingest", [1, 2]), ("poll", "leezy")]


def test_batches_committed_while_the_hand_over_lingers_share_messages_and_close_sends_them() -> None:
    actors = Sent()
    handover = HandOver(lambda: actors, linger=60)
    handover([item("a"), item("n1", records=0)], [("accepted", 1), ("notified", 2)])
    handover(
        [item("b"), item("a"), item("n2", records=0)], [("accepted", 3), ("duplicate", None), ("notified", 4)]
    )
    many = [item(f"m{i}") for i in range(MESSAGE_SIZE)]
    handover(many, [("accepted", 10 + i) for i in range(len(many))])
    assert actors.sent == []  # still gathering
    handover.close()
    ids = [1, 3, *range(10, 10 + MESSAGE_SIZE)]
    assert actors.sent == [
        ("ingest", ids[:MESSAGE_SIZE]),
        ("ingest", ids[MESSAGE_SIZE:]),
        ("poll", "leezy"),  # one poll for the connection's two notices
    ]


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=1))], ids=["utc", "plus-one"])
@pytest.mark.parametrize("kind", ["accepted", "notified"])
def test_every_column_is_stored_as_an_orm_insert_stores_it(engine: Engine, kind: str, zone: tzinfo) -> None:
    """write_receipts binds values itself (the ORM costs too much on the hot path): a row it writes
    reads back exactly as the ORM's insert of the same row, times included (UTC, as the clock gives
    them, and not UTC on the way in; no microseconds)."""
    at = datetime(2026, 3, 2, 10, 0, tzinfo=zone)
    records = [RawRecord(payload={"id": "m1", "title": "Café 10:00", "n": 1.5}, external_id="m1")] * (
        kind == "accepted"
    )
    body = '{"title": "Café 10:00"}'.encode()

    def made(delivery_id: str) -> Receipt:
        sent = WebhookDelivery(delivery_id=delivery_id, event_type="meeting.scheduled", records=records)
        return receipt("leezy", sent, body, at, 30.5)

    with engine.begin() as conn:
        assert write_receipts(conn, [made("fast")])[0][0] == kind
    with Session(engine) as session:
        session.add(ReceiptRow(**made("orm").row))
        session.commit()
    names = [c.name for c in ReceiptRow.__table__.columns if c.name not in ("id", "delivery_id")]  # type: ignore[attr-defined]
    columns = ", ".join(f"CAST({name} AS TEXT)" for name in names)
    with engine.connect() as conn:
        fast, orm = (
            conn.execute(
                text(f"SELECT {columns} FROM webhook_receipts WHERE delivery_id = :d"), {"d": d}
            ).one()
            for d in ("fast", "orm")
        )
    assert fast == orm


def test_a_lingering_writer_gathers_items_that_arrive_one_by_one(engine: Engine) -> None:
    """The delivery outcomes' writer (worker/runtime.py) lingers: items that come one at a time,
    one per POST, share a transaction instead of taking one each."""
    batches: list[int] = []

    def write(conn: Any, items: Any) -> list[None]:
        batches.append(len(items))
        return [None] * len(items)

    writer = GroupCommit(engine, write, name="test lingering", linger_seconds=1.0)
    try:
        futures = []
        for _ in range(3):
            futures.append(writer.submit(object()))
            time.sleep(0.1)  # long enough for a writer that does not linger to have written it alone
        for future in futures:
            future.result(10)
    finally:
        writer.close()
    assert batches == [3]
