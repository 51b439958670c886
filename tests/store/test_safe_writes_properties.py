"""Property tests of safe writes, through the real store, ingest, outbox and reconcile (SQLite).

A meeting booked at a source is moved and cancelled there in random ways while a route mirrors
it into a target that misbehaves as real providers do: answers lost after the booking was
stored (or before), the worker crashing between the provider's answer and our commit, 429s,
echoes of our own bookings (by webhook, before and after the answer, duplicated, with or without
our reference; and by complete reads), deliveries repeated. Whatever the interleaving, at the end:

* at most one live booking at the target for the meeting, and exactly the right one when no
  outcome is unknown (none live once the meeting is cancelled);
* one canonical meeting, with the source's content: no echo changed it;
* the events are exactly those the source's changes make: no echo made an event, so no echo
  caused a write;
* no booking made twice for one write (a lost answer is looked up or held, never re-sent blindly).

70 examples by default (about 30 s); `BOOKINGSYNC_PROPERTY_EXAMPLES=1500` (with `-o timeout=1800`)
searches deeper.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import col, select

from bookingsync.adapters.base import BookingRequest, Capability, RawRecord
from bookingsync.models.errors import AnswerLost, ProviderAuthError, RateLimited
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import EventRow, IntentRow, LinkRow, MeetingRow
from bookingsync.worker import delivery, ingest, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, transaction, upgrade
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)
LEASE = 60.0  # mirroring.lease_seconds in the test config
TIMERS = {"meeting.hasStarted", "meeting.hasEnded"}
OUTCOMES = (
    "ok",
    "ok",
    "ok",
    "lost_after_store",
    "lost_before_store",
    "crash_after_store",
    "crash_before_store",
    "rate_limited",
    "echo_then_ok",
    "echo_then_lost",
)


class Crash(BaseException):
    """The worker process dies here (not an Exception: nothing of ours may catch it)."""


@dataclass
class Booking:
    id: str
    reference: str
    start: datetime
    end: datetime
    email: str | None
    replaces: str | None
    cancelled: bool = False


@dataclass
class FakeTarget:
    """A target provider with a scripted fault per call, sending echoes of what it stores."""

    provider: ClassVar[str] = "leandata"
    capabilities: frozenset[Capability] = frozenset()
    outcomes: list[str] = field(default_factory=list)
    shows_reference: bool = True
    bookings: dict[str, Booking] = field(default_factory=dict)
    echoes: list[dict[str, Any]] = field(default_factory=list)
    ingest_now: Any = None  # set by the harness: ingests echoes synchronously (an echo before the answer)

    def _outcome(self) -> str:
        return self.outcomes.pop(0) if self.outcomes else "ok"

    def payload(self, booking: Booking) -> dict[str, Any]:
        return {
            "id": booking.id,
            "start": booking.start.isoformat(),
            "end": booking.end.isoformat(),
            "email": booking.email,
            "cancelled": booking.cancelled,
            "replaces": booking.replaces,
            "reference": booking.reference if self.shows_reference else None,
        }

    def _echo(self, booking: Booking) -> None:
        self.echoes.append(self.payload(booking))

    def normalise(self, record: RawRecord) -> SourceRecord:
        p = record.payload
        start, end = datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"])
        meeting = Meeting(
            status="cancelled" if p["cancelled"] else "scheduled",
            title="Target's own title",
            start=start,
            end=end,
            attendee={"email": p["email"]},
        )
        return SourceRecord(
            external_id=p["id"], meeting=meeting, reference=p["reference"], supersedes=p["replaces"]
        )

    def _made(self, booking: Booking, outcome: str) -> SourceRecord:
        self._echo(booking)
        if outcome.startswith("echo_then") and self.ingest_now is not None:
            self.ingest_now()  # the provider's webhook is ingested before our call returns
        if outcome in ("lost_after_store", "echo_then_lost"):
            raise AnswerLost("leandata", "connection closed before the answer")
        if outcome == "crash_after_store":
            raise Crash
        return self.normalise(RawRecord(payload=self.payload(booking)))

    def _before(self, outcome: str) -> None:
        if outcome == "lost_before_store":
            raise AnswerLost("leandata", "504 from a proxy that never reached the provider")
        if outcome == "crash_before_store":
            raise Crash
        if outcome == "rate_limited":
            raise RateLimited("leandata", "slow down", retry_after=1)
        if outcome == "forbidden":
            raise ProviderAuthError("leandata", "the token lacks the admin scope", status=403)

    def create(self, request: BookingRequest) -> SourceRecord:
        outcome = self._outcome()
        self._before(outcome)
        m = request.meeting
        booking = Booking(
            f"b{len(self.bookings) + 1}",
            request.reference,
            m.start,
            m.end,
            m.attendee.email,
            request.replaces,
        )
        self.bookings[booking.id] = booking
        return self._made(booking, outcome)

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        outcome = self._outcome()
        self._before(outcome)
        booking = self.bookings[external_id]
        booking.start, booking.end = request.meeting.start, request.meeting.end
        return self._made(booking, outcome)

    def cancel(self, external_id: str) -> None:
        outcome = self._outcome()
        self._before(outcome)
        self.bookings[external_id].cancelled = True
        self._echo(self.bookings[external_id])
        if outcome in ("lost_after_store", "echo_then_lost"):
            raise AnswerLost("leandata", "timeout")
        if outcome == "crash_after_store":
            raise Crash

    def find_booking(self, request: BookingRequest) -> SourceRecord | None:
        for booking in self.bookings.values():
            if booking.reference == request.reference:
                return self.normalise(RawRecord(payload=self.payload(booking)))
        return None

    def close(self) -> None:
        pass

    def live(self) -> list[Booking]:
        return [b for b in self.bookings.values() if not b.cancelled]


_ENGINE: Engine | None = None


def fresh_engine() -> Engine:
    """One migrated SQLite file for the whole module, emptied between examples (migrating per
    example would dominate the run)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = make_engine(f"sqlite:///{Path(tempfile.mkdtemp()) / 'props.db'}")
        upgrade(_ENGINE)
    with _ENGINE.begin() as conn:
        for table in (
            "deliveries",
            "write_intents",
            "events",
            "links",
            "leases",
            "webhook_receipts",
            "quarantine",
            "cursors",
            "meetings",
        ):
            conn.execute(text(f"DELETE FROM {table}"))
    return _ENGINE


class Harness:
    def __init__(self, target: FakeTarget, engine: Engine | None = None, *, max_writes: int = 1000) -> None:
        self.engine = engine or fresh_engine()
        self.clock = ManualClock(T0)
        cfg = parse_config(
            {
                "allow_private_targets": True,
                "connections": [
                    {"id": "src", "provider": "leezy", "base_url": "http://127.0.0.1:9", "token": "t1"},
                    {
                        "id": "tgt",
                        "provider": "leandata",
                        "base_url": "http://127.0.0.1:9",
                        "api_key": "k1",
                        "options": {"link_id": "L1"},
                    },
                ],
                "routes": [{"sources": ["src"], "targets": ["tgt"]}],
                "events": {"console": False},
                "delivery": {"max_attempts": 1000, "min_backoff_seconds": 1, "max_backoff_seconds": 5},
                "mirroring": {"max_writes_per_hour": max_writes, "lease_seconds": LEASE},
            },
            environ={},
        )
        self.rt = Runtime(config=cfg, engine=self.engine, clock=self.clock)
        self.target = target
        self.rt._adapters["tgt"] = target  # type: ignore[assignment]
        target.ingest_now = self.deliver_echoes
        self.crashes = 0

    # -- the source ------------------------------------------------------------------------------

    def source(self, start: datetime, *, cancelled: bool = False) -> None:
        rec = SourceRecord(
            external_id="s1",
            meeting=Meeting(
                status="cancelled" if cancelled else "scheduled",
                title="Demo from the source",
                start=start,
                end=start + timedelta(minutes=30),
                attendee={"email": "lisa@acme.com"},
            ),
        )
        with transaction(self.engine) as session:
            store.apply_record(
                session,
                connection="src",
                provider="leezy",
                record=rec,
                raw={"id": "s1"},
                now=self.clock.now(),
                grace=GRACE,
            )

    # -- the target's echoes -----------------------------------------------------------------------

    def _ingest(self, payloads: list[dict[str, Any]]) -> None:
        if not payloads:
            return
        raws = [RawRecord(payload=p, external_id=p["id"]) for p in payloads]
        with transaction(self.engine) as session:
            ingest.ingest_records(
                session,
                self.target,
                "tgt",
                raws,
                source="webhook",
                now=self.clock.now(),
                grace=GRACE,
                result=ingest.IngestResult(),
            )

    def deliver_echoes(self, duplicate: bool = False) -> None:
        pending, self.target.echoes = self.target.echoes, []
        for payload in pending:
            self._ingest([payload])
            if duplicate:
                self._ingest([payload])

    def poll(self) -> None:
        self._ingest([self.target.payload(b) for b in self.target.bookings.values()])

    # -- the outbox ---------------------------------------------------------------------------------

    def run(self, *, repeat: bool = False) -> None:
        """What relay and workers do once: publish what is due, attempt every due delivery."""
        claimed = claim(self.engine, self.clock.now(), lease_seconds=30, limit=100)
        deliveries = list(claimed.deliveries)
        for event_id in claimed.events:
            published = publish(self.rt, event_id)
            if published is not None:
                deliveries += published.deliveries
        for delivery_id in deliveries:
            for _ in range(2 if repeat else 1):
                try:
                    delivery.deliver(self.rt, delivery_id)
                except Crash:
                    self.crashes += 1  # the process died mid-call; its leases run out

    def drain(self) -> None:
        """Everything settles: faults stop, echoes arrive, time passes beyond every lease."""
        self.target.outcomes.clear()
        for _ in range(40):
            self.deliver_echoes()
            self.clock.advance(seconds=LEASE + 31)
            self.run()
        self.poll()
        self.run()

    # -- what is stored -----------------------------------------------------------------------------

    def rows(self, model: Any) -> list[Any]:
        with transaction(self.engine) as session:
            return list(session.exec(select(model).order_by(col(model.id) if hasattr(model, "id") else None)))


STEP = st.one_of(
    st.tuples(st.just("move"), st.sampled_from([30, 60, 90, 120, 180])),
    st.tuples(st.just("cancel"), st.just(0)),
    st.tuples(st.just("echoes"), st.booleans()),
    st.tuples(st.just("poll"), st.just(0)),
    st.tuples(st.just("run"), st.booleans()),
    st.tuples(st.just("wait"), st.just(0)),
)


@settings(
    max_examples=int(os.environ.get("BOOKINGSYNC_PROPERTY_EXAMPLES", "70")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(STEP, max_size=12),
    outcomes=st.lists(st.sampled_from(OUTCOMES), max_size=14),
    can_find=st.booleans(),
    can_move=st.booleans(),
    shows_reference=st.booleans(),
)
def test_any_interleaving_keeps_one_booking_one_meeting_and_no_echo_writes(
    steps: list[tuple[str, Any]], outcomes: list[str], can_find: bool, can_move: bool, shows_reference: bool
) -> None:
    caps = {Capability.CREATE, Capability.CANCEL}
    caps |= {Capability.FIND_BOOKING} if can_find else set()
    caps |= {Capability.RESCHEDULE} if can_move else set()
    target = FakeTarget(
        capabilities=frozenset(caps), outcomes=list(outcomes), shows_reference=shows_reference
    )
    h = Harness(target)
    start = T0 + timedelta(days=2)
    h.source(start)
    moves, cancelled = 0, False
    h.run()
    for kind, arg in steps:
        if kind == "move" and not cancelled:
            new_start = T0 + timedelta(days=2, minutes=arg)
            moves += new_start != start
            start = new_start
            h.source(start)
        elif kind == "cancel" and not cancelled:
            cancelled = True
            h.source(start, cancelled=True)
        elif kind == "echoes":
            h.deliver_echoes(duplicate=arg)
        elif kind == "poll":
            h.poll()
        elif kind == "run":
            h.run(repeat=arg)
        elif kind == "wait":
            h.clock.advance(seconds=LEASE + 31)
    h.drain()

    intents = h.rows(IntentRow)
    unknown = [i for i in intents if i.state == "unknown"]
    assert not [i for i in intents if i.state == "halted"], [(i.action, i.reason) for i in intents]
    live = target.live()
    # At most one live booking; exactly the right one (or none) unless an outcome is unknown.
    assert len(live) <= 1, (live, [(i.action, i.state, i.external_id) for i in intents])
    if not unknown:
        if cancelled:
            assert live == []
        else:
            assert [(b.start, b.end) for b in live] == [(start, start + timedelta(minutes=30))]
    # One write, at most one booking: no reference was booked twice.
    references = [b.reference for b in target.bookings.values()]
    assert len(references) == len(set(references))
    assert len(target.bookings) <= 1 + (0 if can_move else moves)

    # One canonical meeting, holding what the source says.
    [meeting] = h.rows(MeetingRow)
    assert meeting.title == "Demo from the source"
    assert (meeting.start, meeting.status) == (start, "cancelled" if cancelled else "scheduled")
    links = h.rows(LinkRow)
    assert all(link.mirrored for link in links if link.connection == "tgt")
    assert {link.meeting_id for link in links} == {meeting.id}

    # The events are the source's alone.
    kinds = [e.type for e in h.rows(EventRow) if e.type not in TIMERS]
    assert kinds.count("meeting.booked") == 1
    assert kinds.count("meeting.rescheduled") == moves
    assert kinds.count("meeting.deleted") == int(cancelled)
    assert kinds.count("meeting.updated") == 0
