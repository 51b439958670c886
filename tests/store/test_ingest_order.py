"""Issue 13's store guarantees through the real ingest path, on SQLite and PostgreSQL (`engine`):

* concurrent first sight is an upsert: a webhook and a poll racing on one new booking give one
  meeting, one link, one `booked`, and neither page fails;
* never backwards: an older snapshot than the one applied is counted on its link and ignored,
  whichever of webhook and poll comes first;
* causal sequence: a meeting's events are numbered in commit order, not by when their ingest
  read the clock; timers get theirs when they fire.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func
from sqlmodel import col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker import ingest_store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import make_engine, transaction, upgrade
from bookingsync.worker.ingest import IngestResult, ingest_records
from bookingsync.worker.relay import claim

GRACE = timedelta(minutes=5)
CONNECTION = "leezy-main"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def leezy(
    clock: ManualClock,
    *,
    start_min: float = 60,
    updated_min: float | None = 0,
    title: str = "Demo",
    external_id: str = "lz_1",
) -> RawRecord:
    """A meeting in Leezy's documented resource shape (GET /api/v1/meetings `data[]`)."""
    start = clock.now() + timedelta(minutes=start_min)
    attributes: dict[str, Any] = {
        "start_time": iso(start),
        "end_time": iso(start + timedelta(minutes=30)),
        "attendee": {"email": "lisa@acme.com", "name": "Lisa"},
        "status": "scheduled",
        "title": title,
        "timezone": "Europe/Berlin",
    }
    if updated_min is not None:
        attributes["updated_at"] = iso(clock.now() + timedelta(minutes=updated_min))
    return RawRecord(
        payload={"id": external_id, "type": "meeting", "attributes": attributes}, external_id=external_id
    )


@pytest.fixture
def adapter() -> Any:
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    yield adapter
    adapter.close()


def ingest(
    engine: Engine,
    adapter: LeezyAdapter,
    raws: list[RawRecord],
    *,
    now: datetime,
    source: str = "poll",
    delivered_at: datetime | None = None,
) -> IngestResult:
    result = IngestResult()
    with transaction(engine) as session:
        ingest_records(
            session,
            adapter,
            CONNECTION,
            raws,
            source=source,
            now=now,
            grace=GRACE,
            result=result,
            delivered_at=delivered_at,
        )
    return result


def counts(engine: Engine) -> tuple[int, int, list[str]]:
    with transaction(engine) as session:
        meetings = session.exec(select(func.count()).select_from(MeetingRow)).one()
        links = session.exec(select(func.count()).select_from(LinkRow)).one()
        types = list(session.exec(select(EventRow.type).order_by(col(EventRow.id))))
    return meetings, links, types


def test_a_webhook_and_a_poll_seeing_a_new_booking_at_once_make_one_meeting(
    engine: Engine, clock: ManualClock, adapter: LeezyAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both transactions read the page's links (none) before either writes: the race itself. On
    # SQLite the second writer waits for the first at BEGIN, so the rendezvous times out there.
    rendezvous = threading.Barrier(2, timeout=3)
    load_meetings = ingest_store.load_meetings
    waited: set[int] = set()

    def meet_then_load(session: Any, meeting_ids: set[str]) -> Any:
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            try:
                rendezvous.wait()
            except threading.BrokenBarrierError:
                pass
        return load_meetings(session, meeting_ids)

    monkeypatch.setattr(ingest_store, "load_meetings", meet_then_load)
    results: dict[str, IngestResult] = {}
    errors: list[BaseException] = []

    def run(source: str) -> None:
        try:
            results[source] = ingest(
                engine,
                adapter,
                [leezy(clock)],
                now=clock.now(),
                source=source,
                delivered_at=clock.now() if source == "webhook" else None,
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(source,)) for source in ("webhook", "poll")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    meetings, links, types = counts(engine)
    assert (meetings, links) == (1, 1)
    assert types.count("meeting.booked") == 1 and len(types) == 3
    assert sorted(len(r.events) for r in results.values()) == [0, 3]


def test_an_older_snapshot_is_recorded_and_ignored_in_either_order(
    engine: Engine, clock: ManualClock, adapter: LeezyAdapter
) -> None:
    booked = leezy(clock, start_min=60, updated_min=0)
    moved = leezy(clock, start_min=90, updated_min=2)
    # The webhook (the move) is handled first, then a poll page read before it arrives.
    ingest(engine, adapter, [booked], now=clock.now())
    clock.advance(minutes=3)
    assert (
        ingest(engine, adapter, [moved], now=clock.now(), source="webhook").events[0] == "meeting.rescheduled"
    )
    stale = ingest(engine, adapter, [booked], now=clock.now())
    assert stale.stale == 1 and stale.changed == 0 and stale.events == []
    with transaction(engine) as session:
        link = session.exec(select(LinkRow)).one()
        meeting = session.exec(select(MeetingRow)).one()
    assert link.stale_count == 1 and link.source_updated_at == clock.now() - timedelta(minutes=1)
    assert meeting.start == clock.now() + timedelta(minutes=87)
    # In the other order the move simply applies: the consumer sees booked then rescheduled, once.
    assert ingest(engine, adapter, [moved], now=clock.now()).events == []
    assert counts(engine)[2] == [
        "meeting.booked",
        "meeting.hasStarted",
        "meeting.hasEnded",
        "meeting.rescheduled",
        "meeting.hasStarted",
        "meeting.hasEnded",
    ]


def test_webhooks_without_updated_at_are_ordered_by_their_receipt(
    engine: Engine, clock: ManualClock, adapter: LeezyAdapter
) -> None:
    first = leezy(clock, start_min=60, updated_min=None)
    second = leezy(clock, start_min=90, updated_min=None)
    ingest(engine, adapter, [second], now=clock.now(), source="webhook", delivered_at=clock.now())
    # The earlier delivery, handed out again after a lease ran out, comes after the later one.
    again = ingest(
        engine,
        adapter,
        [first],
        now=clock.now(),
        source="webhook",
        delivered_at=clock.now() - timedelta(seconds=5),
    )
    assert again.stale == 1 and again.events == []


def test_sequence_follows_commit_order_not_the_clock_an_ingest_read(
    engine: Engine, clock: ManualClock, adapter: LeezyAdapter
) -> None:
    # The second ingest read its clock before the first committed (it waited behind it), so its
    # event is "earlier" by due time; it is still numbered after, as it was committed after.
    ingest(
        engine, adapter, [leezy(clock, start_min=1, title="Demo")], now=clock.now() + timedelta(seconds=10)
    )
    ingest(
        engine, adapter, [leezy(clock, start_min=1, title="Demo, renamed", updated_min=1)], now=clock.now()
    )
    clock.advance(seconds=30)
    claimed = claim(engine, clock.now(), lease_seconds=3600, limit=100).events
    clock.advance(minutes=1)
    claimed += claim(engine, clock.now(), lease_seconds=3600, limit=100).events
    with transaction(engine) as session:
        rows = {e.event_id: e for e in session.exec(select(EventRow))}
    numbered = sorted((rows[i].sequence, rows[i].type) for i in claimed)
    assert numbered == [(1, "meeting.booked"), (2, "meeting.updated"), (3, "meeting.hasStarted")]
    assert all(rows[i].payload["data"]["sequence"] == rows[i].sequence for i in claimed)


# -- property: sequence is causal over any interleaving of ingests and relay claims (SQLite) --------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.integers(0, 3), st.integers(-20, 20)),  # version, clock skew (s)
        st.tuples(st.just("claim"), st.integers(0, 90), st.just(0)),
    ),  # seconds to advance first
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=int(os.environ.get("BOOKINGSYNC_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=steps)
def test_sequence_is_causal_over_any_interleaving(
    tmp_path_factory: pytest.TempPathFactory, plan: list
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('seq') / 'store.db'}")
    upgrade(engine)
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    clock = ManualClock(T0)
    numbered_at: dict[str, tuple[int, int]] = {}  # event id -> (step it got its number, sequence)
    try:
        for step_no, (kind, value, skew) in enumerate(plan):
            if kind == "ingest":
                # Version v moves the meeting to start at T0 + (1 + v) minutes; `now` may lag the
                # clock (an ingest that read it before waiting for the write lock).
                raw = leezy(ManualClock(T0), start_min=1 + value, updated_min=value, title=f"Demo v{value}")
                ingest(engine, adapter, [raw], now=clock.now() + timedelta(seconds=skew))
            else:
                clock.advance(seconds=value)
                claim(engine, clock.now(), lease_seconds=3600, limit=100)
            with transaction(engine) as session:
                for event in session.exec(select(EventRow).where(col(EventRow.sequence).is_not(None))):
                    numbered_at.setdefault(event.event_id, (step_no, event.sequence, event.id))
        by_step = sorted(numbered_at.values())
        sequences = [sequence for _, sequence, _ in by_step]
        # Numbers are handed out in the order events were committed (or fired): 1, 2, 3, ...
        assert sequences == list(range(1, len(sequences) + 1))
        with transaction(engine) as session:
            first = session.exec(select(EventRow.type).where(EventRow.sequence == 1)).first()
        assert first in (None, "meeting.booked")
    finally:
        adapter.close()
        engine.dispose()
