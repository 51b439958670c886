"""Issue 16 through the real store, ingest, outbox and reconcile, on SQLite and PostgreSQL: one
meeting across providers (identity rules, ambiguity, links made and split by hand, Meetergo's
double opt-in) and the conflict policy (stale reads, target-side changes on one-way and
bidirectional routes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.adapters.base import Capability, RawRecord
from bookingsync.models.meeting import Meeting, MeetingStatus, SourceRecord
from bookingsync.models.tables import AuditRow, EventRow, IntentRow, LinkRow, MeetingRow
from bookingsync.worker import delivery, identity, ingest, links
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_safe_writes_properties import GRACE, T0, TIMERS, Booking, FakeTarget

START = T0 + timedelta(days=2)
MOVABLE = frozenset({Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL, Capability.FIND_BOOKING})


class Reader:
    """A source adapter whose raw records are already canonical (`record()` builds them)."""

    provider = "leezy"

    def normalise(self, raw: RawRecord) -> SourceRecord:
        return SourceRecord.model_validate(raw.payload)


def record(
    external_id: str,
    start: datetime = START,
    *,
    email: str | None = "Lisa@Acme.com",
    status: str = "scheduled",
    title: str = "Demo",
    hosts: tuple[str, ...] = (),
    stamp: datetime | None = None,
) -> dict[str, Any]:
    meeting = Meeting(
        status=status,
        title=title,
        start=start,
        end=start + timedelta(minutes=30),
        attendee={"email": email},
        hosts=hosts,
    )
    return SourceRecord(external_id=external_id, meeting=meeting, source_updated_at=stamp).model_dump(
        mode="json"
    )


class World:
    def __init__(self, engine: Engine, *, routes: list[dict[str, Any]] | None = None) -> None:
        self.engine = engine
        self.clock = ManualClock(T0)
        conn = {"base_url": "http://127.0.0.1:9", "token": "t"}
        lean = {
            "provider": "leandata",
            "base_url": "http://127.0.0.1:9",
            "api_key": "k",
            "options": {"link_id": "L1"},
        }
        cfg = parse_config(
            {
                "allow_private_targets": True,
                "connections": [
                    {"id": "lz", "provider": "leezy", **conn},
                    {"id": "hs", "provider": "leezy", **conn},
                    {"id": "mg", "provider": "leezy", **conn},
                    {"id": "ld", **lean},
                    {"id": "tgt", **lean},
                ],
                "routes": routes or [],
                "events": {"console": False},
                "delivery": {"max_attempts": 1000, "min_backoff_seconds": 1, "max_backoff_seconds": 5},
                "mirroring": {"max_writes_per_hour": 20, "lease_seconds": 60},
            },
            environ={},
        )
        self.rt = Runtime(config=cfg, engine=engine, clock=self.clock)
        self.target = FakeTarget(capabilities=MOVABLE)
        self.rt._adapters["tgt"] = self.target  # type: ignore[assignment]

    def read(self, connection: str, *payloads: dict[str, Any], adapter: Any = None) -> None:
        raws = [RawRecord(payload=p, external_id=p.get("external_id") or p.get("id")) for p in payloads]
        with transaction(self.engine) as session:
            ingest.ingest_records(
                session,
                adapter or Reader(),
                connection,
                raws,
                source="poll",
                now=self.clock.now(),
                grace=GRACE,
                result=ingest.IngestResult(),
            )

    def poll_target(self) -> None:
        self.read(
            "tgt", *[self.target.payload(b) for b in self.target.bookings.values()], adapter=self.target
        )

    def run(self) -> None:
        for _ in range(3):
            claimed = claim(self.engine, self.clock.now(), lease_seconds=30, limit=100)
            deliveries = list(claimed.deliveries)
            for event_id in claimed.events:
                published = publish(self.rt, event_id)
                deliveries += published.deliveries if published else []
            for delivery_id in deliveries:
                delivery.deliver(self.rt, delivery_id)
            self.clock.advance(seconds=6)

    def rows(self, model: Any) -> list[Any]:
        with transaction(self.engine) as session:
            return list(session.exec(select(model).order_by(col(model.id))))

    def events(self) -> list[EventRow]:
        return [e for e in self.rows(EventRow) if e.type not in TIMERS]


def test_the_same_demo_at_two_providers_is_one_meeting_and_its_next_event_lists_both(engine: Engine) -> None:
    w = World(engine)
    w.read("lz", record("L1", hosts=("rep@us.com",)))
    w.read(
        "ld",
        record("D1", title="LeanData's title", hosts=("rep@us.com", "boss@us.com")),
        record("D2", START + timedelta(hours=3)),
    )
    meetings = w.rows(MeetingRow)
    assert len(meetings) == 2  # D2 starts at another time: a meeting of its own
    demo = next(m for m in meetings if m.start == START)
    assert demo.title == "Demo"  # joining is not a change
    rules = {(link.connection, link.external_id): (link.meeting_id, link.rule) for link in w.rows(LinkRow)}
    assert rules[("lz", "L1")] == (demo.id, "origin") and rules[("ld", "D1")] == (demo.id, "attendee-start")
    assert [e.type for e in w.events() if e.meeting_id == demo.id] == ["meeting.booked"]
    w.run()
    w.read("lz", record("L1", START + timedelta(hours=1), hosts=("rep@us.com",)))
    moved = [e for e in w.events() if e.meeting_id == demo.id][-1]
    assert moved.type == "meeting.rescheduled"
    assert {(link["connection"], link["external_id"]) for link in moved.payload["meeting"]["links"]} == {
        ("lz", "L1"),
        ("ld", "D1"),
    }
    with transaction(engine) as session:
        shown = links.show(session, demo.id)
    assert [(row["connection"], row["linked by"]) for row in shown["links"]] == [
        ("lz", "origin"),
        ("ld", "attendee-start"),
    ]
    assert [a["action"] for a in shown["audit"]] == ["linked"]


def test_hosts_that_do_not_overlap_and_a_second_booking_at_one_provider_are_not_the_same_meeting(
    engine: Engine,
) -> None:
    w = World(engine)
    w.read("lz", record("L1", hosts=("rep@us.com",)))
    w.read("ld", record("D1", hosts=("other@us.com",)))
    w.read("lz", record("L2", hosts=("rep@us.com",)))  # L1 is its booking at lz; D1 has other hosts
    assert len(w.rows(MeetingRow)) == 3


def test_two_candidates_link_nothing_and_say_so(engine: Engine, caplog: Any) -> None:
    w = World(engine)
    w.read("lz", record("L1"))
    w.read("hs", record("H1", hosts=("rep@us.com",)))  # linked to L1's meeting
    w.read("mg", record("M1"))  # meetings: the L1+H1 one only; linked
    assert len(w.rows(MeetingRow)) == 1
    w2 = World(engine)
    with transaction(engine) as session:  # a second meeting at that slot, made by hand
        links.unlink(
            session, w.rows(MeetingRow)[0].id, "hs:H1", w2.clock.now(), actor="cli:test", grace=GRACE
        )
    with caplog.at_level("WARNING"):
        w2.read("ld", record("D1"))
    assert "matches 2 meetings" in caplog.text
    meetings = w2.rows(MeetingRow)
    assert len(meetings) == 3
    [alone] = [link for link in w2.rows(LinkRow) if link.connection == "ld"]
    assert alone.rule == "origin"
    with transaction(engine) as session:
        shown = links.show(session, alone.meeting_id)
    assert len(shown["ambiguous"]) == 2 and {a["meeting"] for a in shown["ambiguous"]} == {
        m.id for m in meetings if m.id != alone.meeting_id
    }


def test_link_and_unlink_by_hand_with_events_and_audit(engine: Engine) -> None:
    w = World(engine)
    w.read("lz", record("L1"))
    w.read("ld", record("D1"))
    [meeting] = w.rows(MeetingRow)
    with transaction(engine) as session:
        message = links.unlink(session, meeting.id, "ld:D1", w.clock.now(), actor="cli:ops", grace=GRACE)
    assert "split off" in message
    [split] = [m for m in w.rows(MeetingRow) if m.id != meeting.id]
    assert [(e.meeting_id, e.type) for e in w.events()][1:] == [
        (split.id, "meeting.booked"),
        (meeting.id, "meeting.unlinked"),
    ]
    w.clock.advance(seconds=1)
    with transaction(engine) as session:
        message = links.link(session, meeting.id, "ld:D1", w.clock.now(), actor="cli:ops", grace=GRACE)
    assert "retired" in message
    kinds = [(e.meeting_id, e.type) for e in w.events()][3:]
    assert kinds == [(split.id, "meeting.deleted"), (meeting.id, "meeting.linked")]
    linked = w.events()[-1]
    assert linked.payload["link"]["rule"] == "hand"
    assert {lk["external_id"] for lk in linked.payload["meeting"]["links"]} == {"L1", "D1"}
    actions = [(a.meeting_id, a.action, a.actor) for a in w.rows(AuditRow)]
    assert (meeting.id, "unlinked", "cli:ops") in actions and (meeting.id, "linked", "cli:ops") in actions


def test_meetergo_double_opt_in_confirmed_later_continues_the_provisional_meeting(engine: Engine) -> None:
    w = World(engine)
    w.read("mg", record("provisional:P1", status="pending"))
    assert [e.type for e in w.events()] == []  # provisional: not booked yet
    w.read("mg", record("A1", title="Intro (double opt-in)"))
    [meeting] = w.rows(MeetingRow)
    assert meeting.status == "scheduled"
    assert [e.type for e in w.events()] == ["meeting.booked"]
    by_id = {link.external_id: link for link in w.rows(LinkRow)}
    assert by_id["A1"].rule == "double-opt-in" and by_id["provisional:P1"].content_hash == "superseded"


def test_a_stale_record_never_brings_a_cancelled_meeting_back(engine: Engine) -> None:
    w = World(engine)
    w.read("lz", record("L1", stamp=T0))
    w.read("lz", record("L1", status="cancelled", stamp=T0 + timedelta(minutes=5)))
    w.read("lz", record("L1", stamp=T0 + timedelta(minutes=1)))  # a late page
    [meeting] = w.rows(MeetingRow)
    assert meeting.status == "cancelled"
    assert [e.type for e in w.events()] == ["meeting.booked", "meeting.deleted"]


def _mirrored(w: World) -> None:
    w.read("lz", record("L1", stamp=T0))
    w.run()
    assert len(w.target.live()) == 1


def test_a_change_at_a_one_way_target_is_reported_and_converged_back(engine: Engine) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    _mirrored(w)
    [booking] = w.target.live()
    w.clock.advance(seconds=120)  # a read right after our write may predate it: not a conflict then
    booking.start, booking.end = START + timedelta(hours=2), START + timedelta(hours=2, minutes=30)  # by hand
    w.poll_target()
    [meeting] = w.rows(MeetingRow)
    assert meeting.start == START  # the source is authoritative
    conflict = w.events()[-1]
    assert conflict.type == "meeting.sync_conflict"
    assert conflict.payload["conflict"]["connection"] == "tgt" and set(conflict.payload["changes"]) == {
        "start",
        "end",
    }
    w.run()
    assert [(b.start, b.cancelled) for b in w.target.bookings.values()] == [(START, False)]
    w.poll_target()  # the repair's echo is ours: no second conflict
    assert [e.type for e in w.events()].count("meeting.sync_conflict") == 1
    assert [a.action for a in w.rows(AuditRow)] == ["sync_conflict"]
    # Cancelled by hand at the target: booked again there, the meeting lives on.
    w.clock.advance(seconds=120)
    booking.cancelled = True
    w.poll_target()
    w.run()
    assert len(w.target.live()) == 1 and w.rows(MeetingRow)[0].status == "scheduled"
    # Our intents still counted the hand-cancelled booking live: it is cancelled (a no-op) before the new one.
    assert [i.action for i in w.rows(IntentRow)] == ["create", "reschedule", "cancel", "create"]


def test_a_target_page_read_before_our_cancel_or_move_landed_undoes_nothing(engine: Engine) -> None:
    """A poll page of the target taken before our write, read after it (within the settle window),
    must not mark the mirror as it was: that made the next converge cancel (or move) twice."""
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    _mirrored(w)
    [booking] = w.target.live()
    w.clock.advance(seconds=300)
    before_move = w.target.payload(booking)
    w.read("lz", record("L1", START + timedelta(hours=1), stamp=T0 + timedelta(minutes=5)))
    w.run()
    before_cancel = w.target.payload(booking)
    w.read(
        "lz", record("L1", START + timedelta(hours=1), status="cancelled", stamp=T0 + timedelta(minutes=6))
    )
    w.run()
    assert w.target.live() == []
    w.read(
        "tgt", before_move, before_cancel, adapter=w.target
    )  # late pages, stamped like the ones we wrote over
    w.run()
    [link] = [k for k in w.rows(LinkRow) if k.connection == "tgt"]
    assert link.missing and link.start == START + timedelta(hours=1)
    assert [i.action for i in w.rows(IntentRow)] == ["create", "reschedule", "cancel"]
    assert "meeting.sync_conflict" not in [e.type for e in w.events()]


def test_bidirectional_the_newer_end_wins_and_reaches_the_other(engine: Engine) -> None:
    w = World(engine, routes=[{"sources": ["ld"], "targets": ["tgt"], "bidirectional": True}])
    source = FakeTarget(capabilities=MOVABLE)
    w.rt._adapters["ld"] = source  # type: ignore[assignment]
    source.bookings["D1"] = Booking("D1", "", START, START + timedelta(minutes=30), "lisa@acme.com", None)
    w.read("ld", record("D1", stamp=T0))
    w.run()
    [booking] = w.target.live()
    w.clock.advance(seconds=120)
    # The target's own stamp comes with its records (FakeTarget has none: stamp them here).
    later = START + timedelta(hours=4)
    payload = w.target.payload(booking) | {
        "start": later.isoformat(),
        "end": (later + timedelta(minutes=30)).isoformat(),
    }
    booking.start, booking.end = later, later + timedelta(minutes=30)

    class Stamped(FakeTarget):
        def normalise(self, raw: RawRecord) -> SourceRecord:
            return super().normalise(raw).model_copy(update={"source_updated_at": T0 + timedelta(hours=1)})

    w.read("tgt", payload, adapter=Stamped(capabilities=MOVABLE))
    [meeting] = w.rows(MeetingRow)
    assert meeting.start == later  # newer than the source's T0
    assert [e.type for e in w.events()] == ["meeting.booked", "meeting.rescheduled"]
    w.run()
    [ours] = [i for i in w.rows(IntentRow) if i.connection == "ld"]
    assert (ours.action, ours.subject, ours.start) == ("reschedule", "D1", later)
    assert source.bookings["D1"].start == later
    # An older change at the source loses: reported, the source converged to the newer content.
    w.read("ld", record("D1", START + timedelta(hours=6), stamp=T0 + timedelta(minutes=30)))
    assert w.rows(MeetingRow)[0].start == later
    assert w.events()[-1].type == "meeting.sync_conflict"


def test_identity_rules_can_be_turned_off(engine: Engine) -> None:
    w = World(engine)
    identity._rules = identity.Rules(attendee_start=False)
    try:
        w.read("lz", record("L1"))
        w.read("ld", record("D1"))
        assert len(w.rows(MeetingRow)) == 2
    finally:
        identity._rules = identity.Rules()


def test_a_route_added_over_500_meetings_backfills_each_once_and_resumes(engine: Engine) -> None:
    from bookingsync.worker import backfill

    if engine.dialect.name != "sqlite":
        return  # the walk is the same SQL on both; once is enough for 500 meetings
    w = World(engine)
    w.read(
        "lz",
        *[record(f"L{n}", START + timedelta(minutes=30 * n), email=f"p{n}@acme.com") for n in range(500)],
    )
    w.read("lz", record("gone", START, email="x@acme.com", status="cancelled"))  # never booked: not mirrored
    routed = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    first = backfill.sync_target(routed.rt, "tgt", ("lz",), limit=120)
    assert (first.done, first.total, first.finished) == (120, 500, False)
    rest = backfill.sync_target(routed.rt, "tgt", ("lz",))
    assert (rest.done, rest.converged, rest.finished) == (500, 380, True)
    assert len(routed.target.live()) == 500
    assert len({(b.start, b.email) for b in routed.target.bookings.values()}) == 500
    again = backfill.sync_target(routed.rt, "tgt", ("lz",), restart=True, limit=40)
    assert again.converged == 40 and len(routed.target.bookings) == 500  # in step: nothing written twice


class ReadableTarget(FakeTarget):
    """A target that reads one booking by id (as LeanData and Meetergo do); a hand deletion is a 404."""

    gone: set[str]

    def _missing(self, external_id: str) -> None:
        from bookingsync.models.errors import ProviderNotFound

        if external_id in self.gone:
            raise ProviderNotFound("leandata", f"no meeting {external_id}", status=404)

    def get_meeting(self, external_id: str) -> RawRecord:
        self._missing(external_id)
        return RawRecord(payload=self.payload(self.bookings[external_id]), external_id=external_id)

    def cancel(self, external_id: str) -> None:
        self._missing(external_id)
        super().cancel(external_id)

    def live(self) -> list[Booking]:
        return [b for b in super().live() if b.id not in self.gone]


def test_the_drift_sweep_repairs_a_booking_deleted_and_one_moved_by_hand(engine: Engine) -> None:
    from bookingsync.worker import drift

    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    w.target = ReadableTarget(capabilities=MOVABLE)
    w.target.gone = set()
    w.rt._adapters["tgt"] = w.target  # type: ignore[assignment]
    w.read("lz", record("L1"), record("L2", START + timedelta(hours=5), email="bob@acme.com"))
    w.run()
    assert sorted(b.id for b in w.target.live()) == ["b1", "b2"]
    w.clock.advance(seconds=120)
    w.target.gone.add("b1")  # deleted by hand, no webhook
    w.target.bookings["b2"].start += timedelta(hours=1)  # moved by hand
    w.target.bookings["b2"].end += timedelta(hours=1)
    assert drift.sweep(w.rt) == {"repaired": 2}
    live = sorted((b.start, b.email) for b in w.target.live())
    assert live == [(START, "lisa@acme.com"), (START + timedelta(hours=5), "bob@acme.com")]
    assert [e.type for e in w.events()].count("meeting.sync_conflict") == 2
    assert drift.sweep(w.rt) == {"in_step": 2}  # the new booking (b3) and the moved-back b2
    assert len(w.rows(MeetingRow)) == 2


class DoubleOptInTarget(FakeTarget):
    """Books provisionally (Meetergo's double opt-in answer) until the attendee confirms."""

    def create(self, request: Any) -> SourceRecord:
        made = super().create(request)
        booking = self.bookings.pop(made.external_id)
        booking.id = f"provisional:{booking.id}"
        self.bookings[booking.id] = booking
        return made.model_copy(
            update={
                "external_id": booking.id,
                "meeting": made.meeting.model_copy(update={"status": MeetingStatus.PENDING}),
            }
        )

    def confirm(self, provisional: str) -> dict[str, Any]:
        """The appointment the confirmation makes: a new id, no reference of ours (a webhook)."""
        old = self.bookings.pop(provisional)
        appointment = Booking(f"appt-{provisional}", old.reference, old.start, old.end, old.email, None)
        self.bookings[appointment.id] = appointment
        return self.payload(appointment) | {"reference": None}


def test_a_mirror_booked_by_double_opt_in_follows_its_confirmed_appointment(engine: Engine) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    w.target = DoubleOptInTarget(capabilities=MOVABLE)
    w.rt._adapters["tgt"] = w.target  # type: ignore[assignment]
    w.read("lz", record("L1"))
    w.run()
    [provisional] = list(w.target.bookings)
    assert provisional.startswith("provisional:")
    w.read("tgt", w.target.confirm(provisional), adapter=w.target)
    assert len(w.rows(MeetingRow)) == 1 and [e.type for e in w.events()] == ["meeting.booked"]
    by_id = {link.external_id: link for link in w.rows(LinkRow)}
    assert (
        by_id[f"appt-{provisional}"].rule == "double-opt-in"
        and by_id[provisional].content_hash == "superseded"
    )
    [create] = w.rows(IntentRow)
    assert (create.external_id, create.alias) == (f"appt-{provisional}", provisional)
    w.read("lz", record("L1", status="cancelled"))
    w.run()
    assert w.target.live() == [] and [i.action for i in w.rows(IntentRow)] == ["create", "cancel"]
