"""Retention on SQLite and PostgreSQL: what goes after its window, what is never removed, batches,
the scheduled job, and a SQLite file that stops growing."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, bindparam, text, update
from sqlmodel import col, select

from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import (
    DeliveryRow,
    EventRow,
    IntentRow,
    LinkRow,
    MeetingRow,
    QuarantineRow,
    ReceiptRow,
)
from bookingsync.worker import retention
from bookingsync.worker.actors import declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import Config, parse_config
from bookingsync.worker.db import make_engine, transaction, upgrade
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.scheduler import Scheduler
from tests.store.test_store_and_relay import apply, record

BODY = '{"payload": "' + "x" * 1000 + '"}'


def config(**retention_cfg: float) -> Config:
    return parse_config({"retention": {"batch_size": 2, **retention_cfg}}, environ={})


def meeting_with_history(
    engine: Engine, clock: ManualClock, external_id: str, *, start_min: float, deliveries: dict[str, str]
) -> str:
    """A meeting whose events are all published, each with a delivery in the status given per type."""
    meeting_id = apply(engine, clock, record(clock, external_id, start_min=start_min)).meeting_id
    with transaction(engine) as session:
        for event in session.exec(select(EventRow).where(EventRow.meeting_id == meeting_id)):
            status = deliveries.get(event.type)
            if status is None:
                continue  # left pending
            event.status, event.published_at = "published", event.due_at
            session.add(
                DeliveryRow(
                    event_id=event.event_id,
                    subscription_id="crm",
                    status=status,
                    due_at=event.due_at,
                    created_at=event.due_at,
                    attempts=1,
                    finished_at=None if status in ("pending", "dead") else event.due_at,
                )
            )
    return meeting_id


def receipt(engine: Engine, clock: ManualClock, delivery_id: str, status: str, days_ago: float) -> int:
    when = clock.now() - timedelta(days=days_ago)
    with transaction(engine) as session:
        row = ReceiptRow(
            connection="leezy-main",
            delivery_id=delivery_id,
            event_type="meeting.scheduled",
            body=BODY,
            records=[{"payload": {"id": delivery_id}}],
            status=status,
            due_at=when,
            received_at=when,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def quarantined(engine: Engine, clock: ManualClock, status: str, resolved_days_ago: float | None) -> int:
    now = clock.now()
    with transaction(engine) as session:
        row = QuarantineRow(
            connection="leezy-main",
            source="poll",
            raw={"id": status},
            raw_hash=f"h-{status}-{now}",
            reason="bad start",
            status=status,
            created_at=now - timedelta(days=400),
            last_seen_at=now - timedelta(days=400),
            resolved_at=None if resolved_days_ago is None else now - timedelta(days=resolved_days_ago),
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


ALL_SUCCEEDED = {
    "meeting.booked": "succeeded",
    "meeting.hasStarted": "succeeded",
    "meeting.hasEnded": "succeeded",
}


def test_prune_removes_what_is_finished_and_keeps_what_is_needed(engine: Engine, clock: ManualClock) -> None:
    done = meeting_with_history(engine, clock, "done", start_min=10, deliveries=ALL_SUCCEEDED)
    dead = meeting_with_history(
        engine, clock, "dead-letter", start_min=10, deliveries=ALL_SUCCEEDED | {"meeting.hasEnded": "dead"}
    )
    waiting = meeting_with_history(
        engine,
        clock,
        "timer-left",
        start_min=10,
        deliveries={"meeting.booked": "succeeded", "meeting.hasStarted": "skipped"},
    )
    upcoming = meeting_with_history(
        engine, clock, "next-year", start_min=365 * 24 * 60, deliveries={"meeting.booked": "succeeded"}
    )
    clock.advance(days=200)
    receipts = {
        name: receipt(engine, clock, name, status, days)
        for name, status, days in (
            ("old-done", "done", 200),
            ("mid-done", "done", 10),
            ("new-done", "done", 1),
            ("old-waiting", "received", 200),
            ("old-failed", "failed", 200),
            ("old-ignored", "ignored", 40),
        )
    }
    items = {
        status: quarantined(engine, clock, status, days)
        for status, days in (("open", None), ("superseded", 40), ("replayed", 5))
    }

    result = retention.prune(engine, config(receipts_days=30), clock.now())

    with transaction(engine) as session:
        meetings = set(session.exec(select(MeetingRow.id)))
        assert meetings == {dead, waiting, upcoming}, "only the finished meeting goes"
        assert not list(session.exec(select(LinkRow).where(LinkRow.meeting_id == done)))
        assert not list(session.exec(select(EventRow).where(EventRow.meeting_id == done)))
        # The dead letter and its event stay for replay; the rest of that meeting's history goes.
        [dead_delivery] = session.exec(select(DeliveryRow).where(DeliveryRow.status == "dead")).all()
        assert (
            session.exec(select(EventRow).where(EventRow.event_id == dead_delivery.event_id)).one().status
            == "published"
        )
        # A meeting with a pending timer keeps it (and so itself).
        assert [
            e.type
            for e in session.exec(
                select(EventRow).where(EventRow.meeting_id == waiting, EventRow.status == "pending")
            )
        ] == ["meeting.hasEnded"]
        # The upcoming meeting loses its old, delivered `booked`, keeps its timers.
        kept = {
            e.type: e.status for e in session.exec(select(EventRow).where(EventRow.meeting_id == upcoming))
        }
        assert kept == {"meeting.hasStarted": "pending", "meeting.hasEnded": "pending"}
        assert session.exec(select(MeetingRow).where(MeetingRow.id == upcoming)).one().booked

        rows = {r.delivery_id: r for r in session.exec(select(ReceiptRow))}
        assert set(rows) == {"mid-done", "new-done", "old-waiting", "old-failed"}
        assert rows["mid-done"].body == "" and not rows["mid-done"].records
        assert (
            rows["new-done"].body == BODY
            and rows["old-waiting"].body == BODY
            and rows["old-failed"].body == BODY
        )
        assert rows["old-waiting"].records

        statuses = {q.id: q.status for q in session.exec(select(QuarantineRow))}
        assert statuses == {items["open"]: "open", items["replayed"]: "replayed"}
    assert result.removed["meetings"] == 1 and result.removed["quarantine"] == 1
    assert result.removed["receipts"] == 2 and result.removed["receipt_bodies"] >= 1
    assert receipts  # ids used above through their names

    again = retention.prune(engine, config(receipts_days=30), clock.now())
    assert sum(again.removed.values()) == 0, "a second run finds nothing more"


def test_windows_are_per_table_and_a_young_row_is_kept(engine: Engine, clock: ManualClock) -> None:
    meeting = meeting_with_history(engine, clock, "recent", start_min=10, deliveries=ALL_SUCCEEDED)
    clock.advance(days=20)
    receipt(engine, clock, "r", "done", 20)
    result = retention.prune(
        engine, config(events_days=60, receipts_days=60, receipt_bodies_days=30), clock.now()
    )
    assert sum(result.removed.values()) == 0
    result = retention.prune(
        engine, config(events_days=10, receipts_days=60, receipt_bodies_days=30), clock.now()
    )
    assert result.removed == {
        "receipt_bodies": 0,
        "receipts": 0,
        "events": 3,
        "cancelled_events": 0,
        "meetings": 0,
        "quarantine": 0,
    }
    with transaction(engine) as session:
        assert session.get(MeetingRow, meeting) is not None  # ended 20 days ago: within meetings_days
        assert not list(session.exec(select(DeliveryRow)))


def test_a_cancelled_timer_goes_its_window_after_cancellation_and_a_pending_one_never(
    engine: Engine, clock: ManualClock
) -> None:
    # Both meetings a month ahead: their timers are due long after every window below.
    cancelled = apply(engine, clock, record(clock, "called-off", start_min=30 * 24 * 60)).meeting_id
    kept = apply(engine, clock, record(clock, "going-ahead", start_min=30 * 24 * 60)).meeting_id
    with transaction(engine) as session:
        session.execute(
            update(EventRow)
            .where(col(EventRow.meeting_id) == kept, col(EventRow.type) == "meeting.hasEnded")
            .values(status="leased", lease_until=clock.now() + timedelta(days=400))
        )
    clock.advance(days=2)
    apply(engine, clock, record(clock, "called-off", status="cancelled", start_min=28 * 24 * 60))
    cfg = config(events_days=1, cancelled_days=1)

    def timers(meeting_id: str) -> dict[str, str]:
        with transaction(engine) as session:
            rows = session.exec(select(EventRow).where(EventRow.meeting_id == meeting_id))
            return {e.type: e.status for e in rows if e.set_for is not None}

    assert timers(cancelled) == {"meeting.hasStarted": "cancelled", "meeting.hasEnded": "cancelled"}
    first = retention.prune(engine, cfg, clock.now())  # sees them cancelled: their window starts
    assert first.removed["cancelled_events"] == 0
    clock.advance(hours=20)
    assert retention.prune(engine, cfg, clock.now()).removed["cancelled_events"] == 0, "within the window"
    assert len(timers(cancelled)) == 2
    clock.advance(hours=5)
    assert retention.prune(engine, cfg, clock.now()).removed["cancelled_events"] == 2
    assert timers(cancelled) == {}, "a cancelled timer goes a window after its cancellation, not its due time"
    # Pending and leased timers never go, whatever the windows.
    clock.advance(days=10)
    retention.prune(engine, cfg, clock.now())
    assert timers(kept) == {"meeting.hasStarted": "pending", "meeting.hasEnded": "leased"}


def test_a_published_event_gets_its_window_from_its_publishing(engine: Engine, clock: ManualClock) -> None:
    """One due long ago but published late (a backlog) stays in the feed for the whole window."""
    meeting = meeting_with_history(engine, clock, "late", start_min=10, deliveries=ALL_SUCCEEDED)
    clock.advance(days=20)
    with transaction(engine) as session:
        session.execute(
            update(EventRow)
            .where(col(EventRow.meeting_id) == meeting, col(EventRow.type) == "meeting.hasEnded")
            .values(published_at=clock.now() - timedelta(days=1))
        )
    result = retention.prune(engine, config(events_days=7), clock.now())
    assert result.removed["events"] == 2
    with transaction(engine) as session:
        assert [e.type for e in session.exec(select(EventRow).where(EventRow.meeting_id == meeting))] == [
            "meeting.hasEnded"
        ]
    clock.advance(days=6, hours=1)
    assert retention.prune(engine, config(events_days=7), clock.now()).removed["events"] == 1


def test_a_large_backlog_goes_in_batches(engine: Engine, clock: ManualClock) -> None:
    for i in range(7):
        receipt(engine, clock, f"r{i}", "done", 100)
    result = retention.prune(engine, config(batch_size=3), clock.now())
    assert result.removed["receipts"] == 7
    with transaction(engine) as session:
        assert not list(session.exec(select(ReceiptRow)))


def test_the_scheduler_prunes_on_its_own_while_it_leads(tmp_path: Path, clock: ManualClock) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sched.db'}")
    upgrade(engine)
    old = receipt(engine, clock, "old", "done", 100)
    cfg = parse_config(
        {"retention": {"interval_seconds": 0.2}, "scheduler": {"relay_interval_seconds": 0.2}}, environ={}
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock, actors=declare(StubBroker()))
    scheduler = Scheduler(rt)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with transaction(engine) as session:
                if session.get(ReceiptRow, old) is None:
                    break
            time.sleep(0.1)
        with transaction(engine) as session:
            assert session.get(ReceiptRow, old) is None, "the scheduled retention job did not run"
    finally:
        scheduler.stop()
        engine.dispose()


def test_a_follower_scheduler_does_not_prune(tmp_path: Path, clock: ManualClock) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'follower.db'}")
    upgrade(engine)
    old = receipt(engine, clock, "old", "done", 100)
    rt = Runtime(
        config=parse_config({}, environ={}), engine=engine, clock=clock, actors=declare(StubBroker())
    )
    Scheduler(rt).prune()  # never took the lead
    with transaction(engine) as session:
        assert session.get(ReceiptRow, old) is not None
    engine.dispose()


def _file_size(engine: Engine, path: Path) -> int:
    with engine.connect() as conn:  # outside a transaction: a checkpoint cannot run inside one
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    return os.path.getsize(path)


def test_a_sqlite_file_stops_growing_at_steady_state(tmp_path: Path, clock: ManualClock) -> None:
    """Each round adds a day of receipts and meetings; retention keeps three days of them."""
    path = tmp_path / "steady.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental, from creation
    cfg = parse_config(
        {
            "retention": {
                "receipt_bodies_days": 1,
                "receipts_days": 3,
                "events_days": 3,
                "meetings_days": 3,
                "batch_size": 500,
            }
        },
        environ={},
    )
    sizes = []
    for day in range(7):
        for i in range(40):
            meeting_with_history(engine, clock, f"d{day}-{i}", start_min=10, deliveries=ALL_SUCCEEDED)
            receipt(engine, clock, f"d{day}-{i}", "done", 0)
        clock.advance(days=1)
        result = retention.prune(engine, cfg, clock.now())
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0, "freed pages went back"
        sizes.append(_file_size(engine, path))
        if day >= 4:
            assert result.removed["meetings"] == 40 and result.removed["receipts"] == 40
    # After the window fills (day 3), the file holds steady: it does not grow by a day's worth.
    assert max(sizes[4:]) <= sizes[3] * 1.1, sizes
    with transaction(engine) as session:
        assert len(session.exec(select(MeetingRow.id)).all()) <= 4 * 40
    engine.dispose()


def test_sqlite_file_made_without_auto_vacuum_is_converted_once(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:  # what a file made before this release looks like
        conn.connection.driver_connection.executescript("PRAGMA auto_vacuum=NONE; VACUUM;")  # type: ignore[union-attr]
    upgrade(engine)
    with engine.connect() as conn:
        conn.connection.driver_connection.executescript("PRAGMA auto_vacuum=NONE; VACUUM;")  # type: ignore[union-attr]
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 0
    freed, note = retention.sqlite_vacuum(engine)
    assert freed == 0 and note is not None and "prune --vacuum" in note
    _, note = retention.sqlite_vacuum(engine, convert=True)
    assert note is not None and "converted" in note
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
    engine.dispose()


def test_prune_does_not_touch_rows_of_a_live_meeting_being_changed(
    engine: Engine, clock: ManualClock
) -> None:
    """An old meeting read again (a lookback) after its window: it is re-linked, not half-deleted."""
    meeting = meeting_with_history(engine, clock, "again", start_min=10, deliveries=ALL_SUCCEEDED)
    clock.advance(days=200)
    with transaction(engine) as session:  # a new event for it is pending: the meeting is needed again
        session.execute(
            update(EventRow)
            .where(col(EventRow.meeting_id) == meeting, col(EventRow.type) == "meeting.hasEnded")
            .values(status="pending")
        )
    retention.prune(engine, config(), clock.now())
    with transaction(engine) as session:
        assert session.get(MeetingRow, meeting) is not None
        assert (
            session.execute(text("SELECT count(*) FROM links WHERE meeting_id = :m"), {"m": meeting}).scalar()
            == 1
        )


def test_a_meeting_goes_with_its_writes_but_an_unsettled_write_keeps_it(
    engine: Engine, clock: ManualClock
) -> None:
    """Issue 15: write intents live as long as their meeting; one not settled keeps the meeting."""
    settled = meeting_with_history(engine, clock, "mirrored", start_min=10, deliveries=ALL_SUCCEEDED)
    held = meeting_with_history(engine, clock, "held", start_min=10, deliveries=ALL_SUCCEEDED)
    now = clock.now()
    with transaction(engine) as session:
        for meeting_id, state, ref in ((settled, "done", "bsw_settled"), (held, "unknown", "bsw_held")):
            session.add(
                IntentRow(
                    reference=ref,
                    meeting_id=meeting_id,
                    connection="rocketlead",
                    action="create",
                    state=state,
                    start=now,
                    end=now + timedelta(minutes=30),
                    created_at=now,
                    updated_at=now,
                )
            )
    clock.advance(days=200)
    result = retention.prune(engine, config(), clock.now())
    with transaction(engine) as session:
        assert set(session.exec(select(MeetingRow.id))) == {held}
        assert [i.reference for i in session.exec(select(IntentRow))] == ["bsw_held"]
    assert result.removed["meetings"] == 1


def test_migration_0014_dates_the_cancelled_rows_it_finds(tmp_path: Path) -> None:
    """Their cancellation time is unknown: no later than their due time, nor than the upgrade."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0013")
    now = datetime.now(UTC)
    past, future = now - timedelta(days=5), now + timedelta(days=50)
    with transaction(engine) as session:
        session.add(
            MeetingRow(
                id="m",
                status="scheduled",
                start=now,
                end=now,
                content_hash="h",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        for name, status, due in (
            ("past", "cancelled", past),
            ("ahead", "cancelled", future),
            ("live", "pending", future),
        ):
            session.execute(
                text(
                    "INSERT INTO events (event_id, meeting_id, type, dedupe_key, generation, occurred_at, due_at, "
                    "status, attempts, created_at) VALUES (:n, 'm', 'meeting.hasEnded', :n, 0, :t, :due, :s, 0, :t)"
                ).bindparams(bindparam("t", type_=UTCDateTime()), bindparam("due", type_=UTCDateTime())),
                {"n": name, "t": now, "due": due, "s": status},
            )
    upgrade(engine)
    with transaction(engine) as session:
        stamped = {e.event_id: e.cancelled_at for e in session.exec(select(EventRow))}
    engine.dispose()
    assert stamped["past"] == past and stamped["live"] is None
    assert stamped["ahead"] is not None and now <= stamped["ahead"] < future
