"""The worker's poll end to end: simulators over real HTTP → adapter → ingest → store (SQLite and PostgreSQL).

The runtime uses the system clock, since the Leezy adapter caps its watermark at `now - 30 s`
and the simulators stamp changes with the real time; meetings are booked in the near future.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine
from sqlmodel import Session, select

from bookingsync.models.tables import CursorRow, EventRow, LinkRow, MeetingRow, QuarantineRow
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.server import RunningSandbox, start_sandbox
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker import ingest, poll_state
from bookingsync.worker.ingest_store import FirstSightContended
from bookingsync.worker.ingest_store import apply_page as apply_incoming
from bookingsync.worker.poll import poll
from bookingsync.worker.reports import quarantine_table
from bookingsync.worker.runtime import Runtime

LEEZY, LEANDATA = "leezy-main", "leandata-main"
PROSPECT = "prospect@example.com"
BOOKED, STARTED, ENDED = "meeting.booked", "meeting.hasStarted", "meeting.hasEnded"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox()
    yield running
    running.stop()


@pytest.fixture
def rt(sandbox: RunningSandbox, engine: Engine) -> Iterator[Runtime]:
    config = parse_config(
        {
            "allow_private_targets": True,
            "connections": [
                {
                    "id": LEEZY,
                    "provider": "leezy",
                    "base_url": sandbox.leezy_url,
                    "token": sandbox.leezy_token,
                },
                {
                    "id": LEANDATA,
                    "provider": "leandata",
                    "base_url": sandbox.leandata_url,
                    "api_key": sandbox.leandata_api_key,
                    "watch_emails": [PROSPECT],
                    # A watched email is due again one interval after its read: here every poll reads it. The
                    # rate must allow one read per interval too, or the schedule spaces reads at 1/rate.
                    "poll_interval_seconds": 0.01,
                    "requests_per_second": 1000,
                },
            ],
        },
        environ={},
    )
    sleeps: list[float] = []  # pacing and backoff are recorded, not slept
    runtime = Runtime(
        config=config, engine=engine, clock=SystemClock(), adapter_overrides={"sleep": sleeps.append}
    )
    yield runtime
    runtime.close()


def end_backoff(engine: Engine, connection: str) -> None:
    """What waiting out a failed read's back-off would do (the connection may be read again)."""
    poll_state.update(engine, connection, datetime.now(UTC), lambda row: setattr(row, "not_before", None))


def soon(hours: float = 1) -> datetime:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0)


def book_leezy(sandbox: RunningSandbox, count: int) -> list[str]:
    start = soon()
    return [
        sandbox.leezy.book(
            f"Demo {i}", start, start + timedelta(minutes=30), "Europe/Berlin", f"lead{i}@example.com"
        )
        for i in range(count)
    ]


def book_leandata(sandbox: RunningSandbox, hours: float) -> str:
    start = soon(hours)
    return sandbox.leandata.book("Intro", start, start + timedelta(minutes=30), PROSPECT)


def rows(engine: Engine, model: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model)))


def meeting_of(engine: Engine, connection: str, external_id: str) -> str:
    return next(
        link.meeting_id
        for link in rows(engine, LinkRow)
        if (link.connection, link.external_id) == (connection, external_id)
    )


def events_of(engine: Engine, meeting_id: str) -> list[EventRow]:
    return [e for e in rows(engine, EventRow) if e.meeting_id == meeting_id]


def cursor(engine: Engine, connection: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.get(CursorRow, connection)
        return None if row is None else row.value


def test_poll_stores_each_meeting_once_and_a_second_poll_changes_nothing(sandbox, rt, engine):
    external = book_leezy(sandbox, 3)
    result = poll(rt, LEEZY)
    assert (result.ran, result.error, result.records, result.quarantined) == (True, None, 3, 0)

    links = rows(engine, LinkRow)
    assert sorted(link.external_id for link in links) == sorted(external)
    assert len(rows(engine, MeetingRow)) == 3
    for link in links:
        types = sorted(e.type for e in events_of(engine, link.meeting_id))
        assert types == sorted([BOOKED, STARTED, ENDED])
    assert Counter(result.events) == {BOOKED: 3, STARTED: 3, ENDED: 3}
    saved = cursor(engine, LEEZY)
    assert saved is not None and saved["since"] is not None and saved["offset"] == 0

    events_before = {e.event_id for e in rows(engine, EventRow)}
    versions_before = {m.id: m.version for m in rows(engine, MeetingRow)}
    again = poll(rt, LEEZY)
    assert again.error is None and again.records == 3  # the overlap re-reads them...
    assert again.events == []  # ...and nothing changes
    assert {e.event_id for e in rows(engine, EventRow)} == events_before
    assert {m.id: m.version for m in rows(engine, MeetingRow)} == versions_before


def test_malformed_record_is_quarantined_and_the_page_goes_on(sandbox, rt, engine):
    external = book_leezy(sandbox, 3)
    sandbox.leezy.add_fault(Fault(kind="malformed"))
    result = poll(rt, LEEZY)
    assert (result.error, result.records, result.quarantined) == (None, 4, 1)

    assert sorted(link.external_id for link in rows(engine, LinkRow)) == sorted(external)
    [item] = rows(engine, QuarantineRow)
    assert (item.connection, item.source, item.status) == (LEEZY, "poll", "open")
    assert item.external_id.startswith("meeting_malformed_") and item.raw["id"] == item.external_id
    assert item.raw["attributes"]["start_time"] == "not-a-date"
    assert "start_time" in item.reason and "not-a-date" in item.reason
    saved = cursor(engine, LEEZY)
    assert saved is not None and saved["since"] is not None and saved["offset"] == 0

    with Session(engine) as session:
        table = quarantine_table(session, limit=10, connection=LEEZY)
    out = io.StringIO()
    Console(file=out, width=400).print(table)
    assert table.row_count == 1 and item.external_id in out.getvalue()


def test_a_500_outlasting_the_retries_resumes_at_the_stored_page(sandbox, rt, engine):
    external = book_leezy(sandbox, 150)
    # Once page one (offset 0) is computed, the next request and its 4 retries answer 500.
    sandbox.leezy.after_page(0, lambda: sandbox.leezy.add_fault(Fault(kind="500", times=5)))

    failed = poll(rt, LEEZY)
    assert failed.error is not None and "HTTP 500" in failed.error
    assert failed.pages == 1 and len(rows(engine, MeetingRow)) == 100
    assert cursor(engine, LEEZY)["position"] is not None  # where the read stands, by key

    # The failure holds the connection back (worker/poll_state.py); the next tick after it resumes.
    assert poll(rt, LEEZY).skipped == "backing_off"
    end_backoff(engine, LEEZY)
    resumed = poll(rt, LEEZY)
    # The resumed read starts at the second of the last key stored: it re-reads that second.
    assert resumed.error is None and resumed.records >= 50
    links = rows(engine, LinkRow)
    assert sorted(link.external_id for link in links) == sorted(external)
    assert len(rows(engine, MeetingRow)) == 150
    assert Counter(e.type for e in rows(engine, EventRow))[BOOKED] == 150
    assert cursor(engine, LEEZY)["offset"] == 0

    again = poll(rt, LEEZY)  # within the skew margin everything is read again: nothing new comes of it
    assert again.error is None and again.records >= 150 and again.events == []


def test_a_page_whose_new_bookings_other_writers_keep_linking_first_is_read_again_next_tick(
    sandbox, rt, engine, monkeypatch, caplog
):
    """Ingest gives a page up after losing its first sights FIRST_SIGHT_ATTEMPTS times in a row (a
    flood of webhooks of the same bookings): the poll stops with a warning, not an exception out of
    the actor, and the next tick reads the page again from the stored cursor."""
    external = book_leezy(sandbox, 150)
    calls = []

    def contended_second_page(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise FirstSightContended("leezy: other writers created this page's new bookings first")
        return apply_incoming(*args, **kwargs)

    monkeypatch.setattr(ingest, "apply_incoming", contended_second_page)
    with caplog.at_level("WARNING", logger="bookingsync.worker.poll"):
        stopped = poll(rt, LEEZY)
    assert stopped.error is not None and "first" in stopped.error
    assert any("stopped after 1 page" in r.getMessage() for r in caplog.records)
    assert len(rows(engine, MeetingRow)) == 100

    resumed = poll(rt, LEEZY)  # not a provider failure: no back-off
    assert resumed.error is None
    assert sorted(link.external_id for link in rows(engine, LinkRow)) == sorted(external)
    assert Counter(e.type for e in rows(engine, EventRow))[BOOKED] == 150


def test_leandata_meeting_removed_at_the_source_is_deleted(sandbox, rt, engine):
    kept, gone = book_leandata(sandbox, 1), book_leandata(sandbox, 2)
    assert poll(rt, LEANDATA).error is None
    gone_mid, kept_mid = meeting_of(engine, LEANDATA, gone), meeting_of(engine, LEANDATA, kept)

    sandbox.leandata.remove(gone)
    result = poll(rt, LEANDATA)
    assert result.error is None and result.events == ["meeting.deleted"]
    by_type = {e.type: e.status for e in events_of(engine, gone_mid)}
    assert by_type == {
        BOOKED: "pending",
        STARTED: "cancelled",
        ENDED: "cancelled",
        "meeting.deleted": "pending",
    }
    assert {e.type for e in events_of(engine, kept_mid)} == {BOOKED, STARTED, ENDED}
    statuses = {m.id: m.status for m in rows(engine, MeetingRow)}
    assert statuses == {gone_mid: "cancelled", kept_mid: "scheduled"}
    assert [link.missing for link in rows(engine, LinkRow) if link.external_id == gone] == [True]


def test_leandata_failed_read_deletes_nothing(sandbox, rt, engine):
    gone = book_leandata(sandbox, 1)
    assert poll(rt, LEANDATA).error is None
    sandbox.leandata.remove(gone)
    sandbox.leandata.add_fault(Fault(kind="500", path="/v1/meetings", times=20))

    failed = poll(rt, LEANDATA)
    assert failed.error is not None and "Internal server error" in failed.error
    mid = meeting_of(engine, LEANDATA, gone)
    assert "meeting.deleted" not in {e.type for e in events_of(engine, mid)}
    assert [m.status for m in rows(engine, MeetingRow)] == ["scheduled"]

    sandbox.leandata.faults.clear()
    end_backoff(engine, LEANDATA)
    assert poll(rt, LEANDATA).events == ["meeting.deleted"]  # only deferred to a complete read


def test_reschedule_moves_the_timers(sandbox, rt, engine):
    [external] = book_leezy(sandbox, 1)
    assert poll(rt, LEEZY).error is None
    mid = meeting_of(engine, LEEZY, external)
    old = sandbox.leezy.get(external)
    new_start = old.start_time + timedelta(days=1)
    sandbox.leezy.reschedule(external, new_start, new_start + timedelta(minutes=45))

    result = poll(rt, LEEZY)
    assert result.error is None and Counter(result.events) == {"meeting.rescheduled": 1, STARTED: 1, ENDED: 1}
    timers = {(e.type, e.set_for): e.status for e in events_of(engine, mid) if e.type in (STARTED, ENDED)}
    assert timers == {
        (STARTED, old.start_time): "cancelled",
        (ENDED, old.end_time): "cancelled",
        (STARTED, new_start): "pending",
        (ENDED, new_start + timedelta(minutes=45)): "pending",
    }
    [meeting] = rows(engine, MeetingRow)
    assert (meeting.start, meeting.end) == (new_start, new_start + timedelta(minutes=45))
    assert [e.type for e in events_of(engine, mid)].count("meeting.rescheduled") == 1


def test_re_reading_a_malformed_record_does_not_quarantine_it_again(sandbox, rt, engine):
    broken = sandbox.leandata.book(
        "Intro", soon(), soon(1.5), PROSPECT, status="pending"
    )  # not a BookIt status
    for _ in range(3):
        assert poll(rt, LEANDATA).quarantined == 1
    [item] = rows(engine, QuarantineRow)
    assert item.external_id == broken and item.seen_count == 3 and item.status == "open"
