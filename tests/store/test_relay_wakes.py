"""The relay wakes when work falls due, not only at its interval: a burst of events due at one
instant, or dead letters replayed between two ticks, go out then (issue 6), on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine, update
from sqlmodel import select

from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker import broker as brokers
from bookingsync.worker.actors import QUEUE, declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.relay import claim, soonest_due
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.scheduler import Scheduler
from tests.store.test_store_and_relay import apply, record

LONG_INTERVAL = {"scheduler": {"relay_interval_seconds": 600}, "events": {"console": False}}


def _due_at(engine: Engine, when: datetime) -> None:
    with transaction(engine) as session:
        session.execute(update(EventRow).values(due_at=when).execution_options(synchronize_session=False))


def test_soonest_due_is_the_next_pending_event_or_delivery_after_an_instant(
    engine: Engine, clock: ManualClock
) -> None:
    assert soonest_due(engine, clock.now()) is None
    apply(engine, clock, record(clock, "m1"))
    apply(engine, clock, record(clock, "m2"))
    first = clock.now() + timedelta(seconds=5)
    _due_at(engine, first)
    assert soonest_due(engine, clock.now()) == first
    assert soonest_due(engine, first) is None  # strictly after
    claim(engine, first, lease_seconds=30, limit=10)  # leased: no longer waiting to fall due
    assert soonest_due(engine, clock.now()) is None
    with transaction(engine) as session:
        session.add(
            DeliveryRow(
                event_id=session.exec(select(EventRow.event_id)).first(),
                subscription_id="crm",
                status="pending",
                due_at=first + timedelta(seconds=1),
                attempts=0,
                created_at=clock.now(),
            )
        )
    assert soonest_due(engine, clock.now()) == first + timedelta(seconds=1)


def _waiting(stub: StubBroker) -> int:
    return brokers.waiting_messages(stub, QUEUE) or 0


def _started(engine: Engine) -> tuple[StubBroker, Scheduler]:
    stub = StubBroker()
    rt = Runtime(config=parse_config(LONG_INTERVAL, environ={}), engine=engine, actors=declare(stub))
    scheduler = Scheduler(rt)
    scheduler.start()
    return stub, scheduler


def _until(check: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_an_event_falling_due_between_ticks_is_relayed_when_due(engine: Engine) -> None:
    clock = ManualClock(datetime.now(UTC))
    apply(engine, clock, record(clock, "m1"))
    _due_at(engine, datetime.now(UTC) + timedelta(seconds=1))
    stub, scheduler = _started(engine)
    try:
        # The first tick ran at start, before the event was due; the next is 600 s away.
        assert _until(lambda: _waiting(stub) == 1), "the event was not relayed when it fell due"
    finally:
        scheduler.stop()


def test_work_queued_between_ticks_is_relayed_at_once(engine: Engine) -> None:
    """As `deliveries replay` queues dead letters: pending, due at the command's `now`."""
    clock = ManualClock(datetime.now(UTC))
    apply(engine, clock, record(clock, "m1"))
    _due_at(engine, datetime.now(UTC) + timedelta(days=1))
    stub, scheduler = _started(engine)
    try:
        time.sleep(0.3)  # past the first tick
        assert _waiting(stub) == 0
        _due_at(engine, datetime.now(UTC))
        assert _until(lambda: _waiting(stub) == 1), "queued work waited for the next tick"
    finally:
        scheduler.stop()
