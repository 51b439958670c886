"""A target that keeps whole minutes and a few lengths: in step after one write, or refused visibly.

The writer here keeps what Meetergo keeps (whole minutes, the meeting type's lengths); the
outbox path, the planner and `mirrors list` are the real ones, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from bookingsync.adapters.base import BookingRequest, BookingShape
from bookingsync.models.errors import ProviderRejected
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.worker import mirrors, reconcile
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import transaction
from tests.store.test_mirroring import MemoryWriter, mirror_link, run_outbox, runtime
from tests.store.test_store_and_relay import apply

SHAPE = BookingShape(
    resolution=timedelta(minutes=1),
    zero_length=False,
    durations=frozenset({timedelta(minutes=30), timedelta(minutes=60)}),
)


class MinuteWriter(MemoryWriter):
    """Books whole minutes, like meetergo; refuses what it cannot hold, like its booking_body."""

    shape = SHAPE

    def create(self, request: BookingRequest) -> SourceRecord:
        why = self.shape.cannot_hold(request.meeting.start, request.meeting.end)
        if why:
            raise ProviderRejected("meetergo", why)
        record = super().create(request)
        start, end = self.shape.held(request.meeting.start, request.meeting.end)
        return SourceRecord(
            external_id=record.external_id,
            meeting=request.meeting.model_copy(update={"start": start, "end": end}),
        )


def source(start: datetime, length: timedelta, external_id: str = "m1") -> SourceRecord:
    return SourceRecord(
        external_id=external_id,
        meeting=Meeting(
            status="scheduled",
            title="Demo",
            start=start,
            end=start + length,
            attendee={"email": "ann@buyer.com"},
        ),
    )


def setup(engine: Engine) -> tuple:
    clock = ManualClock(datetime.now(UTC).replace(second=0, microsecond=0))
    rt, _ = runtime(engine, clock)
    writer = MinuteWriter()
    rt._adapters["ld"] = writer  # type: ignore[assignment]
    return clock, rt, writer


def test_a_meeting_between_minutes_is_booked_once_and_then_in_step(engine: Engine) -> None:
    clock, rt, writer = setup(engine)
    start = clock.now() + timedelta(hours=2, milliseconds=250)
    applied = apply(engine, clock, source(start, timedelta(minutes=30, seconds=30)))
    assert run_outbox(rt, clock) == ["succeeded"]
    link = mirror_link(engine)
    assert link is not None and link.start == start.replace(microsecond=0, second=0) != start
    # Every later converge of the same meeting plans nothing: no cancel, no second booking.
    for _ in range(3):
        assert reconcile.converge(rt, applied.meeting_id, "ld").detail == "already in step"
    assert [call[0] for call in writer.calls] == ["create"]


def test_a_length_the_target_cannot_hold_is_refused_visibly_once(engine: Engine) -> None:
    clock, rt, writer = setup(engine)
    applied = apply(engine, clock, source(clock.now() + timedelta(hours=2), timedelta(minutes=45)))
    assert run_outbox(rt, clock) == ["dead"]
    again = reconcile.converge(rt, applied.meeting_id, "ld")
    assert again.status == "dead" and "may only last 30 min, 60 min" in again.detail
    assert writer.calls == [] and mirror_link(engine) is None  # never approximated
    with transaction(rt.engine) as session:
        rows = mirrors.listing(session, 10, unresolved=False)
    assert len(rows) == 1  # one visible refusal, not one per converge
    assert rows[0]["state"] == "failed" and rows[0]["reason"].startswith(
        "ld cannot hold this meeting: the meeting lasts 45 min"
    )
    # Moved to a length the meeting type allows, it is booked: the refusal blocks nothing later.
    apply(engine, clock, source(clock.now() + timedelta(hours=2), timedelta(minutes=60)))
    assert run_outbox(rt, clock) == ["succeeded"]
    assert [call[0] for call in writer.calls] == ["create"] and mirror_link(engine) is not None


def test_a_zero_length_meeting_is_refused_where_a_booking_needs_a_length(engine: Engine) -> None:
    clock, rt, writer = setup(engine)
    apply(engine, clock, source(clock.now() + timedelta(hours=2), timedelta(0)))
    assert run_outbox(rt, clock) == ["dead"]
    with transaction(rt.engine) as session:
        (row,) = mirrors.listing(session, 10, unresolved=False)
    assert "starts and ends at the same instant" in row["reason"] and writer.calls == []
