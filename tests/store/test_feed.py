"""The event feed: positions follow commit order, so `after=<cursor>` never skips an event.

On both backends: published events get positions 1..n with no holes, cancelled and dropped
events never enter the feed. On PostgreSQL, with real concurrent transactions: an event whose
row id is smaller but whose publishing commits later still comes after the cursor a reader
already holds, and a reader polling while many publishers commit sees every event exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import EventRow
from bookingsync.worker import feed, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import alembic_config, transaction, upgrade
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.conftest import drop_postgres, postgres_engine

GRACE = timedelta(minutes=5)


def book(engine: Engine, clock: ManualClock, count: int, prefix: str = "m") -> None:
    with transaction(engine) as session:
        for index in range(count):
            start = clock.now() + timedelta(days=1, minutes=index)
            record = SourceRecord(
                external_id=f"{prefix}{index}",
                meeting=Meeting(
                    status="scheduled",
                    title="Demo",
                    start=start,
                    end=start + timedelta(minutes=30),
                    attendee={"email": f"p{index}@acme.com"},
                ),
            )
            store.apply_record(
                session,
                connection="leezy-main",
                provider="leezy",
                record=record,
                raw={"id": record.external_id},
                now=clock.now(),
                grace=GRACE,
            )


def claimed_events(engine: Engine, clock: ManualClock) -> list[str]:
    return claim(engine, clock.now(), lease_seconds=300, limit=10_000).events


def read_all(engine: Engine, after: int = 0) -> list[EventRow]:
    with transaction(engine) as session:
        return feed.read(session, after, 10_000)


def test_published_events_are_numbered_without_holes_and_only_they_are_in_the_feed(
    engine: Engine, clock: ManualClock
) -> None:
    rt = Runtime(config=parse_config({}, environ={}), engine=engine, clock=clock)
    book(engine, clock, 5)
    events = claimed_events(engine, clock)
    assert len(events) == 5  # the booked events; the 10 timers are not due
    for event_id in reversed(events):
        publish(rt, event_id)
    rows = read_all(engine)
    assert [row.feed_position for row in rows] == [1, 2, 3, 4, 5]
    assert [row.event_id for row in rows] == list(reversed(events))  # publishing order, not id order
    assert [row.event_id for row in read_all(engine, after=3)] == list(reversed(events))[3:]
    with transaction(engine) as session:
        assert feed.head(session) == 5
        unpublished = session.exec(select(EventRow).where(col(EventRow.status) != "published")).all()
        assert len(unpublished) == 10 and all(row.feed_position is None for row in unpublished)
    # Publishing the same event twice (a redelivered message) does not number it again.
    assert publish(rt, events[0]) is None
    assert len(read_all(engine)) == 5


def _publish_by_hand(
    engine: Engine,
    event_id: str,
    stall: str | None = None,
    stalled: threading.Event | None = None,
    go_on: threading.Event | None = None,
) -> None:
    """What publish.py does, optionally pausing `before` or `after` the feed position is taken."""
    with transaction(engine) as session:
        event = session.exec(select(EventRow).where(EventRow.event_id == event_id).with_for_update()).one()
        event.status = "published"
        event.published_at = event.due_at
        if stall == "before":
            _pause(stalled, go_on)
        feed.assign(session, [event])
        session.flush()
        if stall == "after":
            _pause(stalled, go_on)


def _pause(stalled: threading.Event | None, go_on: threading.Event | None) -> None:
    assert stalled is not None and go_on is not None
    stalled.set()
    assert go_on.wait(20)


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    eng = postgres_engine()
    yield eng
    drop_postgres(eng)


@pytest.mark.postgres
def test_an_earlier_row_that_commits_later_is_not_skipped(pg_engine: Engine, clock: ManualClock) -> None:
    engine = pg_engine
    book(engine, clock, 2)
    first, second = claimed_events(engine, clock)
    with transaction(engine) as session:
        ids = {row.event_id: row.id for row in session.exec(select(EventRow))}
    assert ids[first] < ids[second]

    # `first` starts publishing, then stalls; `second` publishes and commits meanwhile.
    stalled, go_on = threading.Event(), threading.Event()
    slow = threading.Thread(target=_publish_by_hand, args=(engine, first, "before", stalled, go_on))
    slow.start()
    assert stalled.wait(20)
    _publish_by_hand(engine, second)
    seen = read_all(engine)
    assert [row.event_id for row in seen] == [second]
    cursor = seen[-1].feed_position
    assert cursor is not None
    # An id-ordered feed would now hold cursor id(second) and never return `first`, whose id is smaller.
    go_on.set()
    slow.join(20)
    assert [row.event_id for row in read_all(engine, after=cursor)] == [first]


@pytest.mark.postgres
def test_a_position_taken_blocks_later_positions_until_it_commits(
    pg_engine: Engine, clock: ManualClock
) -> None:
    """A sequence (nextval) would let `second` commit position 2 while 1 is still in flight, and a
    reader at cursor 2 would then never see 1. The counter row makes `second` wait instead."""
    engine = pg_engine
    book(engine, clock, 2)
    first, second = claimed_events(engine, clock)
    stalled, go_on = threading.Event(), threading.Event()
    slow = threading.Thread(target=_publish_by_hand, args=(engine, first, "after", stalled, go_on))
    slow.start()
    assert stalled.wait(20)
    fast = threading.Thread(target=_publish_by_hand, args=(engine, second))
    fast.start()
    fast.join(0.5)
    assert fast.is_alive(), "the second publisher took a position while the first still held one"
    assert read_all(engine) == []
    go_on.set()
    slow.join(20)
    fast.join(20)
    assert [(row.event_id, row.feed_position) for row in read_all(engine)] == [(first, 1), (second, 2)]


@pytest.mark.postgres
def test_a_polling_reader_sees_every_event_once_while_publishers_commit_concurrently(
    pg_engine: Engine, clock: ManualClock
) -> None:
    engine = pg_engine
    book(engine, clock, 120)
    events = claimed_events(engine, clock)
    assert len(events) == 120
    queue = list(events)
    random.Random(7).shuffle(queue)
    lock, done = threading.Lock(), threading.Event()

    def publisher() -> None:
        rnd = random.Random(threading.get_ident())
        while True:
            with lock:
                if not queue:
                    return
                event_id = queue.pop()
            with transaction(engine) as session:
                event = session.exec(
                    select(EventRow).where(EventRow.event_id == event_id).with_for_update()
                ).one()
                event.status, event.published_at = "published", event.due_at
                time.sleep(rnd.uniform(0, 0.004))  # work before the position is taken
                feed.assign(session, [event])
                session.flush()
                time.sleep(rnd.uniform(0, 0.004))  # and between taking it and committing

    received: list[EventRow] = []

    def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()  # read once more after the publishers are done
            page = read_all(engine, after=cursor)
            received.extend(page)
            if page:
                cursor = page[-1].feed_position or cursor
            if finished and not page:
                return
            time.sleep(0.002)

    publishers = [threading.Thread(target=publisher) for _ in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(60)
    done.set()
    watcher.join(60)

    positions = [row.feed_position for row in received]
    assert positions == list(range(1, 121)), "the reader missed, repeated or reordered a position"
    assert sorted(row.event_id for row in received) == sorted(events)


def test_the_migration_numbers_events_published_before_it_in_publishing_order(
    engine: Engine, clock: ManualClock
) -> None:
    rt = Runtime(config=parse_config({}, environ={}), engine=engine, clock=clock)
    book(engine, clock, 3)
    events = claimed_events(engine, clock)
    for event_id in reversed(events):
        clock.advance(1)
        publish(rt, event_id)
    command.downgrade(alembic_config(engine), "0005")  # as a database from before the feed
    upgrade(engine)
    rows = read_all(engine)
    assert [(row.event_id, row.feed_position) for row in rows] == list(
        zip(reversed(events), [1, 2, 3], strict=True)
    )
    with transaction(engine) as session:
        assert feed.head(session) == 3
    book(engine, clock, 1, prefix="late")
    [late] = claimed_events(engine, clock)
    publish(rt, late)
    assert read_all(engine, after=3)[0].event_id == late
