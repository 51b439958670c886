"""store.apply_record and the relay, on SQLite and PostgreSQL alike (the `engine` fixture)."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import DeliveryRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker import store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime

GRACE = timedelta(minutes=5)


def record(
    clock: ManualClock,
    external_id: str = "m1",
    status: str = "scheduled",
    start_min: float = 10,
    minutes: float = 30,
    title: str = "Demo",
    email: str = "lisa@acme.com",
    scope: str | None = None,
) -> SourceRecord:
    start = clock.now() + timedelta(minutes=start_min)
    return SourceRecord(
        external_id=external_id,
        scope=scope,
        meeting=Meeting(
            status=status,
            title=title,
            start=start,
            end=start + timedelta(minutes=minutes),
            attendee={"email": email},
        ),
    )


def apply(
    engine: Engine, clock: ManualClock, rec: SourceRecord, connection: str = "leezy-main"
) -> store.Applied:
    with transaction(engine) as session:
        return store.apply_record(
            session,
            connection=connection,
            provider="leezy",
            record=rec,
            raw={"id": rec.external_id},
            now=clock.now(),
            grace=GRACE,
        )


def events(engine: Engine) -> list[EventRow]:
    with transaction(engine) as session:
        return list(session.exec(select(EventRow).order_by(col(EventRow.id))))


def by_status(engine: Engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in events(engine):
        out.setdefault(event.status, []).append(event.type)
    return out


def test_new_meeting_books_and_sets_timers_and_replay_is_a_no_op(engine: Engine, clock: ManualClock) -> None:
    first = apply(engine, clock, record(clock))
    assert first.changed and first.events == ("meeting.booked", "meeting.hasStarted", "meeting.hasEnded")
    again = apply(engine, clock, record(clock))
    assert not again.changed and again.meeting_id == first.meeting_id
    assert [e.type for e in events(engine)] == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    with transaction(engine) as session:
        assert len(session.exec(select(MeetingRow)).all()) == 1
        assert len(session.exec(select(LinkRow)).all()) == 1


def test_same_external_id_on_two_connections_is_two_links(engine: Engine, clock: ManualClock) -> None:
    a = apply(engine, clock, record(clock), connection="a")
    b = apply(engine, clock, record(clock), connection="b")
    assert a.meeting_id != b.meeting_id


def test_reschedule_cancels_old_timers_and_sets_new_ones(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock))
    moved = apply(engine, clock, record(clock, start_min=60))
    assert moved.events == ("meeting.rescheduled", "meeting.hasStarted", "meeting.hasEnded")
    statuses = by_status(engine)
    assert statuses["cancelled"] == ["meeting.hasStarted", "meeting.hasEnded"]
    assert statuses["pending"] == [
        "meeting.booked",
        "meeting.rescheduled",
        "meeting.hasStarted",
        "meeting.hasEnded",
    ]
    # Moving back to the first time revives the cancelled timers instead of duplicating them.
    apply(engine, clock, record(clock))
    timers = [e for e in events(engine) if e.type == "meeting.hasStarted"]
    assert [t.status for t in timers] == ["pending", "cancelled"]


def test_cancel_emits_deleted_and_cancels_pending_timers(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock))
    gone = apply(engine, clock, record(clock, status="cancelled"))
    assert gone.events == ("meeting.deleted",)
    statuses = by_status(engine)
    assert statuses["cancelled"] == ["meeting.hasStarted", "meeting.hasEnded"]
    assert statuses["pending"] == ["meeting.booked", "meeting.deleted"]


def test_sweep_marks_only_unseen_links_in_window_missing(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock, "keep", scope="p@x.com"))
    apply(engine, clock, record(clock, "vanish", scope="p@x.com"))
    apply(engine, clock, record(clock, "old", start_min=-3000, scope="p@x.com"))
    apply(engine, clock, record(clock, "other-scope", scope="q@x.com"))
    with transaction(engine) as session:
        swept = store.sweep(
            session,
            connection="leezy-main",
            scope="p@x.com",
            window_start=clock.now() - timedelta(days=1),
            seen=frozenset({"keep"}),
            now=clock.now(),
            grace=GRACE,
        )
    assert [s.events for s in swept] == [("meeting.deleted",)]
    with transaction(engine) as session:
        missing = session.exec(select(LinkRow.external_id).where(col(LinkRow.missing).is_(True))).all()
    assert missing == ["vanish"]
    # It comes back: the link is live again and the meeting gets a new generation.
    back = apply(engine, clock, record(clock, "vanish", scope="p@x.com"))
    assert back.events[0] == "meeting.updated"


def test_cursor_round_trip(engine: Engine, clock: ManualClock) -> None:
    with transaction(engine) as session:
        assert store.get_cursor(session, "c") is None
        store.save_cursor(session, "c", {"since": "2026-01-01T00:00:00Z", "offset": 0}, clock.now())
    with transaction(engine) as session:
        store.save_cursor(session, "c", {"since": "2026-01-02T00:00:00Z", "offset": 100}, clock.now())
    with transaction(engine) as session:
        assert store.get_cursor(session, "c") == {"since": "2026-01-02T00:00:00Z", "offset": 100}


def test_relay_claims_due_events_in_order_with_sequences(engine: Engine, clock: ManualClock) -> None:
    applied = apply(engine, clock, record(clock, start_min=10, minutes=30))
    claimed = claim(engine, clock.now(), lease_seconds=3600, limit=100)
    assert len(claimed.events) == 1  # booked; the timers are not due yet
    clock.advance(minutes=10)
    started = claim(engine, clock.now(), lease_seconds=3600, limit=100)
    assert len(started.events) == 1
    clock.advance(minutes=30)
    ended = claim(engine, clock.now(), lease_seconds=3600, limit=100)
    assert len(ended.events) == 1
    rows = {e.event_id: e for e in events(engine)}
    seq = [(rows[i].type, rows[i].sequence) for i in claimed.events + started.events + ended.events]
    assert seq == [("meeting.booked", 1), ("meeting.hasStarted", 2), ("meeting.hasEnded", 3)]
    body = rows[started.events[0]].payload
    assert body["type"] == "meeting.hasStarted" and body["data"]["sequence"] == 2
    assert body["data"]["occurred_at"] == body["data"]["meeting"]["start"]
    assert body["data"]["meeting"]["id"] == applied.meeting_id
    assert body["data"]["meeting"]["links"] == [
        {"connection": "leezy-main", "provider": "leezy", "external_id": "m1"}
    ]


def test_leased_event_is_reclaimed_after_lease_with_same_id_and_sequence(
    engine: Engine, clock: ManualClock
) -> None:
    apply(engine, clock, record(clock))
    first = claim(engine, clock.now(), lease_seconds=30, limit=100)
    assert claim(engine, clock.now() + timedelta(seconds=10), lease_seconds=30, limit=100).events == []
    again = claim(engine, clock.now() + timedelta(seconds=31), lease_seconds=30, limit=100)
    assert again.events == first.events
    row = next(e for e in events(engine) if e.event_id == first.events[0])
    assert row.sequence == 1 and row.attempts == 2


def test_timer_superseded_while_leased_is_not_published(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock, start_min=1))
    clock.advance(minutes=1)
    claimed = claim(engine, clock.now(), lease_seconds=30, limit=100)
    started = next(e for e in events(engine) if e.type == "meeting.hasStarted")
    assert started.event_id in claimed.events
    apply(engine, clock, record(clock, status="cancelled"))  # cancels pending and leased timers
    rt = Runtime(config=parse_config({}, environ={}), engine=engine, clock=clock)
    assert publish(rt, started.event_id) is None


def test_stale_timer_is_dropped_at_claim(engine: Engine, clock: ManualClock) -> None:
    applied = apply(engine, clock, record(clock, start_min=1))
    # Simulate a timer that escaped cancellation: move the meeting behind the store's back.
    with transaction(engine) as session:
        row = session.get(MeetingRow, applied.meeting_id)
        row.start = row.start + timedelta(hours=1)
        row.end = row.end + timedelta(hours=1)
    clock.advance(minutes=1)
    claim(engine, clock.now(), lease_seconds=30, limit=100)
    started = next(e for e in events(engine) if e.type == "meeting.hasStarted")
    assert started.status == "dropped" and started.sequence is None


def test_concurrent_claims_never_share_an_event(engine: Engine, clock: ManualClock) -> None:
    for i in range(60):
        apply(engine, clock, record(clock, external_id=f"m{i}"))
    results: list[list[str]] = []
    lock = threading.Lock()

    def worker() -> None:
        got: list[str] = []
        for _ in range(10):
            got += claim(engine, clock.now(), lease_seconds=30, limit=7).events
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [e for r in results for e in r]
    assert len(flat) == len(set(flat)) == 60


def test_publish_creates_one_delivery_per_subscription_once(engine: Engine, clock: ManualClock) -> None:
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "subscriptions": [
                {
                    "id": "crm",
                    "url": "http://127.0.0.1:9/hook",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                },
                {
                    "id": "only-deleted",
                    "url": "http://127.0.0.1:9/other",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "events": ["meeting.deleted"],
                },
            ],
        },
        environ={},
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    apply(engine, clock, record(clock))
    event_id = claim(engine, clock.now(), lease_seconds=30, limit=100).events[0]
    published = publish(rt, event_id)
    assert published is not None and published.type == "meeting.booked" and len(published.deliveries) == 1
    assert publish(rt, event_id) is None  # already published
    with transaction(engine) as session:
        rows = session.exec(select(DeliveryRow)).all()
    assert [(r.event_id, r.subscription_id, r.status) for r in rows] == [(event_id, "crm", "leased")]


def test_a_successor_booking_continues_the_meeting_and_the_old_one_falls_silent(
    engine: Engine, clock: ManualClock
) -> None:
    first = apply(engine, clock, record(clock, "appt-1", start_min=60))
    moved = record(clock, "appt-2", start_min=120).model_copy(update={"supersedes": "appt-1"})
    successor = apply(engine, clock, moved)
    assert successor.meeting_id == first.meeting_id
    assert successor.events == ("meeting.rescheduled", "meeting.hasStarted", "meeting.hasEnded")
    # The provider then reports the old booking cancelled: part of the move, not a deletion.
    old_cancelled = apply(engine, clock, record(clock, "appt-1", start_min=60, status="cancelled"))
    assert not old_cancelled.changed
    with transaction(engine) as session:
        links = {link.external_id: link for link in session.exec(select(LinkRow))}
        assert links["appt-1"].missing and links["appt-2"].meeting_id == first.meeting_id
        assert session.get(MeetingRow, first.meeting_id).status == "scheduled"


def test_a_meeting_first_seen_late_fires_has_started_at_once_with_late_by(
    engine: Engine, clock: ManualClock
) -> None:
    window = timedelta(hours=24)
    with transaction(engine) as session:
        store.apply_record(
            session,
            connection="leezy-main",
            provider="leezy",
            record=record(clock, start_min=-10, minutes=30),
            raw={},
            now=clock.now(),
            grace=window,
        )
    claimed = claim(engine, clock.now(), lease_seconds=3600, limit=100)
    rows = {e.event_id: e for e in events(engine)}
    bodies = [rows[i].payload for i in claimed.events]
    assert [b["type"] for b in bodies] == ["meeting.booked", "meeting.hasStarted"]  # hasEnded is 20 min away
    started = bodies[1]["data"]
    assert started["late_by"] == 600.0 and started["occurred_at"] == started["meeting"]["start"]
    # One format for every time in an event: UTC, milliseconds, Z.
    meeting = started["meeting"]
    for text in (bodies[1]["timestamp"], started["occurred_at"], meeting["start"], meeting["end"]):
        assert len(text) == 24 and text.endswith("Z") and text[19] == "."
    assert "late_by" not in bodies[0]["data"]


def test_a_meeting_first_seen_beyond_the_late_window_is_counted_not_announced(
    engine: Engine, clock: ManualClock
) -> None:
    from bookingsync.worker import metrics

    before = (
        metrics.REGISTRY.get_sample_value(
            "bookingsync_late_timers_skipped_total", {"type": "meeting.hasStarted"}
        )
        or 0.0
    )
    with transaction(engine) as session:
        store.apply_record(
            session,
            connection="leezy-main",
            provider="leezy",
            record=record(clock, start_min=-26 * 60, minutes=30),
            raw={},
            now=clock.now(),
            grace=timedelta(hours=24),
        )
    assert events(engine) == []
    after = metrics.REGISTRY.get_sample_value(
        "bookingsync_late_timers_skipped_total", {"type": "meeting.hasStarted"}
    )
    assert after == before + 1
