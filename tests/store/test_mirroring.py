"""Routes: a meeting first seen at a source is booked, moved and cancelled at the target.

The target here is an in-memory writer (the provider adapters have their own tests against
their simulators); what is under test is the outbox path: publish → route delivery →
converge → mirror link, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.adapters.base import BookingRequest, Capability
from bookingsync.models.errors import SlotUnavailable
from bookingsync.models.meeting import SourceRecord
from bookingsync.models.tables import DeliveryRow, LinkRow
from bookingsync.worker import delivery
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_store_and_relay import apply, record


class MemoryWriter:
    provider: ClassVar[str] = "leandata"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL}
    )

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.bookings: dict[str, BookingRequest] = {}
        self.refuse_next = False

    def create(self, request: BookingRequest) -> SourceRecord:
        if self.refuse_next:
            raise SlotUnavailable("leandata", "The selected time is no longer available.", status=400)
        external_id = f"ld-{len(self.bookings) + 1}"
        self.bookings[external_id] = request
        self.calls.append(("create", request.reference))
        return SourceRecord(external_id=external_id, meeting=request.meeting)

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        self.bookings[external_id] = request
        self.calls.append(("reschedule", external_id))
        return SourceRecord(external_id=external_id, meeting=request.meeting)

    def cancel(self, external_id: str) -> None:
        self.bookings.pop(external_id)
        self.calls.append(("cancel", external_id))

    def close(self) -> None:
        pass


def runtime(engine: Engine, clock: ManualClock) -> tuple[Runtime, MemoryWriter]:
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "connections": [
                {"id": "leezy-main", "provider": "leezy", "base_url": "http://127.0.0.1:9", "token": "t1"},
                {
                    "id": "ld",
                    "provider": "leandata",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "k1",
                    "options": {"link_id": "L1"},
                },
            ],
            "routes": [{"sources": ["leezy-main"], "targets": ["ld"]}],
            "events": {"console": False},
        },
        environ={},
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    writer = MemoryWriter()
    rt._adapters["ld"] = writer  # type: ignore[assignment]
    return rt, writer


def run_outbox(rt: Runtime, clock: ManualClock, reverse: bool = False) -> list[str | None]:
    """Publish what is due and attempt every route delivery, like the relay and workers would."""
    deliveries: list[int] = []
    for event_id in claim(rt.engine, clock.now(), lease_seconds=30, limit=100).events:
        published = publish(rt, event_id)
        assert published is not None
        deliveries += published.deliveries
    return [delivery.deliver(rt, d) for d in (reversed(deliveries) if reverse else deliveries)]


def mirror_link(engine: Engine) -> LinkRow | None:
    with transaction(engine) as session:
        return session.exec(select(LinkRow).where(LinkRow.connection == "ld")).first()


def test_booked_moved_and_cancelled_follow_to_the_target(engine: Engine) -> None:
    clock = ManualClock(datetime.now(UTC))
    rt, writer = runtime(engine, clock)
    applied = apply(engine, clock, record(clock, "m1", start_min=60))
    assert run_outbox(rt, clock) == ["succeeded"]
    assert [call[0] for call in writer.calls] == ["create"]
    assert writer.calls[0][1].startswith("bsw_")  # the write's own reference, planted at the provider
    link = mirror_link(engine)
    assert link is not None and link.mirrored and link.meeting_id == applied.meeting_id
    assert link.start == writer.bookings["ld-1"].meeting.start

    apply(engine, clock, record(clock, "m1", start_min=90))
    assert run_outbox(rt, clock) == ["succeeded"]
    assert writer.calls[-1] == ("reschedule", "ld-1")
    assert mirror_link(engine).start == clock.now() + timedelta(minutes=90)

    apply(engine, clock, record(clock, "m1", start_min=90, status="cancelled"))
    assert run_outbox(rt, clock) == ["succeeded"]
    assert writer.calls[-1] == ("cancel", "ld-1") and writer.bookings == {}
    assert mirror_link(engine).missing


def test_out_of_order_and_repeated_deliveries_converge_once(engine: Engine) -> None:
    clock = ManualClock(datetime.now(UTC))
    rt, writer = runtime(engine, clock)
    apply(engine, clock, record(clock, "m2", start_min=60))
    apply(engine, clock, record(clock, "m2", start_min=120))  # booked and rescheduled before any publish
    outcomes = run_outbox(rt, clock, reverse=True)
    assert outcomes == ["succeeded", "succeeded"]
    assert [call[0] for call in writer.calls] == ["create"]  # the second delivery found it in step
    assert writer.bookings["ld-1"].meeting.start == clock.now() + timedelta(minutes=120)


def test_a_refused_booking_is_a_dead_letter_that_replays(engine: Engine) -> None:
    clock = ManualClock(datetime.now(UTC))
    rt, writer = runtime(engine, clock)
    writer.refuse_next = True
    apply(engine, clock, record(clock, "m3", start_min=60))
    assert run_outbox(rt, clock) == ["dead"]
    with transaction(engine) as session:
        dead = session.exec(select(DeliveryRow).where(DeliveryRow.status == "dead")).one()
        assert "no longer available" in (dead.last_error or "")
        assert delivery.replay(session, clock.now(), all_dead=True) == 1
    writer.refuse_next = False
    retried = claim(engine, clock.now(), lease_seconds=30, limit=10).deliveries
    assert [delivery.deliver(rt, d) for d in retried] == ["succeeded"]
    assert [call[0] for call in writer.calls] == ["create"]
