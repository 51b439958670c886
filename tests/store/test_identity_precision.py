"""Issue 16: a mirror at a target that keeps whole minutes, read back, is compared with the meeting
at that resolution (worker/conflicts.py): no `meeting.sync_conflict`, no audit entry and no write
for what the target cannot show, and a real move there is still a conflict. Through the real
ingest, store, outbox and reconcile, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from sqlalchemy import Engine

from bookingsync.adapters.base import BookingRequest, BookingShape
from bookingsync.models.meeting import SourceRecord
from bookingsync.models.tables import AuditRow, IntentRow
from bookingsync.worker import drift
from tests.store.test_identity import MOVABLE, START, ReadableTarget, World, record

MINUTE = BookingShape(resolution=timedelta(minutes=1), zero_length=False)


class MinuteTarget(ReadableTarget):
    """Keeps whole minutes (as Meetergo does), and answers a booking with the times it was asked for
    (as Meetergo's provisional answer does): the answer says 10:00:20, every read says 10:00."""

    shape = MINUTE

    def create(self, request: BookingRequest) -> SourceRecord:
        made = super().create(request)
        booking = self.bookings[made.external_id]
        booking.start, booking.end = MINUTE.held(booking.start, booking.end)
        return made

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        made = super().reschedule(external_id, request)
        booking = self.bookings[external_id]
        booking.start, booking.end = MINUTE.held(booking.start, booking.end)
        return made


def _world(engine: Engine) -> tuple[World, MinuteTarget]:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    target = MinuteTarget(capabilities=MOVABLE)
    target.gone = set()
    w.target = target
    w.rt._adapters["tgt"] = target  # type: ignore[assignment]
    return w, target


def _conflicts(w: World) -> int:
    return [e.type for e in w.events()].count("meeting.sync_conflict")


def test_a_minute_target_holding_the_meeting_floored_is_no_conflict(engine: Engine) -> None:
    w, target = _world(engine)
    at = START + timedelta(seconds=20)
    w.read("lz", record("L1", at))
    w.run()
    [booking] = target.live()
    assert booking.start == START  # what the target keeps
    w.clock.advance(seconds=300)  # past the settle window: a read now is taken as what is there
    w.poll_target()
    assert drift.sweep(w.rt) == {"in_step": 1}
    # A person moves it away and back to the same minute: read in between, it ends in step.
    w.clock.advance(seconds=300)
    booking.start, booking.end = START + timedelta(hours=1), START + timedelta(hours=1, minutes=30)
    w.poll_target()
    assert _conflicts(w) == 1  # a real move: reported
    booking.start, booking.end = START, START + timedelta(minutes=30)
    w.poll_target()
    w.run()
    assert _conflicts(w) == 1  # back at the minute the meeting is held as: not a second conflict
    assert [a.action for a in w.rows(AuditRow)] == ["sync_conflict"]
    assert [i.action for i in w.rows(IntentRow)] == ["create"]  # nothing re-pushed
    assert [(b.start, b.cancelled) for b in target.bookings.values()] == [(START, False)]


def test_a_move_of_a_minute_or_more_at_a_minute_target_is_still_converged_back(engine: Engine) -> None:
    w, target = _world(engine)
    w.read("lz", record("L1", START + timedelta(seconds=20)))
    w.run()
    [booking] = target.live()
    w.clock.advance(seconds=300)
    # 10:02 for a meeting at 10:00:20: 100 s away, more than the minute the target can show.
    booking.start, booking.end = START + timedelta(minutes=2), START + timedelta(minutes=32)
    assert drift.sweep(w.rt) == {"repaired": 1}
    assert _conflicts(w) == 1
    assert [(b.start, b.end) for b in target.live()] == [(START, START + timedelta(minutes=30))]
