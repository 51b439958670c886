"""A page of records costs a few statements whatever its size (issue 6), and the same statement
texts for every page size (issue 18), on SQLite and PostgreSQL.

On PostgreSQL every statement is a round trip, and under load each cost 5 to 10 ms: a page of new
bookings ran eleven where the rows it writes take four (meetings, links, events, cursor). Now a new
page reads its links (with the touch of its unchanged records), asks identity once, takes its
savepoint and writes everything in one statement; a rescheduled page reads its links and meetings,
cancels the old timers and writes the rest in one statement. The texts stay the same whatever the
page's size: a list binds as one parameter, never a placeholder per value.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import func, select

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

GRACE = timedelta(minutes=5)
CONNECTION = "leezy-main"
SIZES = (1, 2, 3, 5, 8)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def page(now: datetime, first: int, count: int, *, moved: timedelta = timedelta(0)) -> list[RawRecord]:
    out = []
    for i in range(first, first + count):
        start = now + timedelta(days=1, minutes=15 * i) + moved
        attributes = {
            "start_time": iso(start),
            "end_time": iso(start + timedelta(minutes=30)),
            "attendee": {"email": f"prospect.{i}@acme.com", "name": f"Prospect {i}"},
            "status": "scheduled",
            "title": f"Demo {i}",
            "timezone": "Europe/Berlin",
            "updated_at": iso(now - timedelta(minutes=1) + moved),
        }
        eid = f"lz_{i}"
        out.append(
            RawRecord(payload={"id": eid, "type": "meeting", "attributes": attributes}, external_id=eid)
        )
    return out


@pytest.fixture
def adapter() -> Iterator[LeezyAdapter]:
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    yield adapter
    adapter.close()


def ingest(
    engine: Engine, adapter: LeezyAdapter, raws: list[RawRecord], now: datetime
) -> tuple[IngestResult, list[str]]:
    """One page in one transaction, as the poller's `ingest.apply_page` does; the statements it ran."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    result = IngestResult()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with transaction(engine) as session:
            ingest_records(
                session,
                adapter,
                CONNECTION,
                raws,
                source="poll",
                now=now,
                grace=GRACE,
                result=result,
                open_quarantine=False,
            )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return result, statements


def test_pages_of_every_size_run_the_same_statements(
    engine: Engine, clock: ManualClock, adapter: LeezyAdapter
) -> None:
    now = clock.now()
    texts: dict[str, dict[int, list[str]]] = {"fresh": {}, "no-op": {}, "reschedule": {}}
    first = 0
    for size in SIZES:
        fresh = page(now, first, size)
        moved = page(now, first, size, moved=timedelta(hours=1))
        for case, raws, events in (("fresh", fresh, 3), ("no-op", fresh, 0), ("reschedule", moved, 3)):
            result, statements = ingest(engine, adapter, raws, now)
            assert (result.applied, len(result.events)) == (size, events * size), (case, size)
            texts[case][size] = statements
        first += size
    for case, by_size in texts.items():
        assert all(by_size[size] == by_size[SIZES[0]] for size in SIZES), {
            case: {size: len(statements) for size, statements in by_size.items()}
        }
    if engine.dialect.name == "postgresql":
        # Round trips: the page's links (and the touch), identity, the savepoint, the writes.
        assert len(texts["fresh"][8]) == 4, texts["fresh"][8]
        # The links (and the touch), their meetings, the old timers cancelled, the writes.
        assert len(texts["reschedule"][8]) == 4, texts["reschedule"][8]
        assert len(texts["no-op"][8]) == 1, texts["no-op"][8]
    with transaction(engine) as session:
        total = sum(SIZES)
        assert session.exec(select(func.count()).select_from(MeetingRow)).one() == total
        assert session.exec(select(func.count()).select_from(LinkRow)).one() == total
        # booked, hasStarted, hasEnded; rescheduled, two new timers (the old two cancelled)
        assert session.exec(select(func.count()).select_from(EventRow)).one() == 6 * total
        cancelled = select(func.count()).select_from(EventRow).where(EventRow.status == "cancelled")
        assert session.exec(cancelled).one() == 2 * total
