"""Safe writes, finding by finding, on SQLite and PostgreSQL (the `engine` fixture).

The target is the scripted `FakeTarget` of the property tests; the adapters' own HTTP behaviour
(AnswerLost, lookups) has its tests against their fakes and simulators.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.adapters.base import Capability
from bookingsync.models.tables import DeliveryRow, EventRow, IntentRow, LinkRow, MeetingRow
from bookingsync.worker import mirrors, store
from bookingsync.worker.metrics import exposition
from bookingsync.worker.db import transaction
from tests.store.test_safe_writes_properties import LEASE, T0, TIMERS, FakeTarget, Harness

MOVABLE = frozenset({Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL, Capability.FIND_BOOKING})
FINDABLE = frozenset({Capability.CREATE, Capability.CANCEL, Capability.FIND_BOOKING})
BLIND = frozenset({Capability.CREATE, Capability.CANCEL})  # RocketLead: no way to ask
START = T0 + timedelta(days=2)


def harness(engine: Engine, caps: frozenset[Capability], outcomes: list[str] | None = None, **kw) -> Harness:
    return Harness(FakeTarget(capabilities=caps, outcomes=list(outcomes or [])), engine, **kw)


def non_timer_events(h: Harness) -> list[str]:
    return [e.type for e in h.rows(EventRow) if e.type not in TIMERS]


def deliveries(h: Harness) -> list[DeliveryRow]:
    return [d for d in h.rows(DeliveryRow) if d.subscription_id == "route:tgt"]


def test_an_echo_before_the_answer_is_linked_and_never_a_meeting(engine: Engine) -> None:
    h = harness(engine, MOVABLE, ["echo_then_ok"])
    h.source(START)
    h.run()
    h.deliver_echoes(duplicate=True)
    h.poll()
    assert len(h.target.bookings) == 1 and len(h.rows(MeetingRow)) == 1
    [mirror] = [link for link in h.rows(LinkRow) if link.connection == "tgt"]
    assert mirror.mirrored and mirror.external_id == "b1"
    assert non_timer_events(h) == ["meeting.booked"]
    assert [d.status for d in deliveries(h)] == ["succeeded"]


def test_echoes_of_our_move_and_cancel_change_nothing_and_write_nothing(engine: Engine) -> None:
    h = harness(engine, BLIND)
    h.source(START)
    h.run()
    h.source(START + timedelta(hours=1))  # a target that cannot move: book new, cancel old
    h.run()
    h.deliver_echoes(duplicate=True)
    h.poll()  # the old, cancelled booking is read back too
    h.source(START + timedelta(hours=1), cancelled=True)
    h.run()
    h.deliver_echoes()
    h.poll()
    h.run()
    assert [(b.id, b.cancelled) for b in h.target.bookings.values()] == [("b1", True), ("b2", True)]
    assert len(h.rows(MeetingRow)) == 1
    assert non_timer_events(h) == ["meeting.booked", "meeting.rescheduled", "meeting.deleted"]
    assert [i.action for i in h.rows(IntentRow)] == ["create", "create", "cancel", "cancel"]


def test_a_lost_answer_is_found_by_lookup_not_booked_twice(engine: Engine) -> None:
    h = harness(engine, FINDABLE, ["lost_after_store"])
    h.source(START)
    h.run()
    assert len(h.target.bookings) == 1
    [create] = h.rows(IntentRow)
    assert (create.state, create.external_id, create.attempts) == ("done", "b1", 1)
    assert "found by lookup" in (create.reason or "")


def test_a_lost_answer_that_made_nothing_is_sent_again_under_the_same_reference(engine: Engine) -> None:
    h = harness(engine, FINDABLE, ["lost_before_store"])
    h.source(START)
    h.run()
    [create] = h.rows(IntentRow)
    assert (create.state, create.attempts) == ("done", 2)
    assert [b.reference for b in h.target.bookings.values()] == [create.reference]


def test_a_lost_answer_the_provider_cannot_be_asked_about_is_held_visibly(engine: Engine, caplog) -> None:
    h = harness(engine, BLIND, ["lost_after_store"])
    h.source(START)
    h.run()
    [create] = h.rows(IntentRow)
    assert create.state == "unknown"
    meeting_id = create.meeting_id
    assert f"meeting {meeting_id}" in caplog.text and "WARNING" in caplog.text
    [dead] = deliveries(h)
    assert dead.status == "dead" and "mirrors resolve" in (dead.last_error or "")
    with transaction(engine) as session:
        assert [r.reference for r in mirrors.unresolved_rows(session, 10)] == [create.reference]
    assert 'bookingsync_mirror_writes{state="unknown"} 1.0' in exposition(engine, h.clock).decode()
    # Replayed, moved or cancelled: never a second booking, and the cancel says it cannot reach it.
    h.source(START, cancelled=True)
    h.clock.advance(seconds=LEASE)
    h.run()
    assert len(h.target.bookings) == 1 and h.target.live()
    assert "cannot reach" in (deliveries(h)[-1].last_error or "")
    # A person finds it by hand and says so: it is linked, then cancelled like any mirror.
    with transaction(engine) as session:
        message = mirrors.resolve(
            session, create.reference, h.clock.now(), booking_id="b1", provider="leandata"
        )
    assert "now linked" in message
    h.run()
    assert h.target.live() == []


def test_a_worker_killed_between_the_answer_and_our_commit_resumes_by_lookup(engine: Engine) -> None:
    h = harness(engine, FINDABLE, ["crash_after_store"])
    h.source(START)
    h.run()
    assert h.crashes == 1
    [create] = h.rows(IntentRow)
    assert (create.state, create.step) == ("pending", "calling")
    h.run()  # another worker, before the dead one's lease ran out: it waits
    assert len(h.target.bookings) == 1 and h.rows(IntentRow)[0].step == "calling"
    h.clock.advance(seconds=LEASE + 31)
    h.run()
    assert len(h.target.bookings) == 1
    assert [(i.state, i.external_id) for i in h.rows(IntentRow)] == [("done", "b1")]
    assert [link.external_id for link in h.rows(LinkRow) if link.connection == "tgt"] == ["b1"]


def test_a_move_whose_cancel_is_refused_keeps_the_new_booking_and_never_books_a_third(engine: Engine) -> None:
    h = harness(engine, BLIND, ["ok", "ok", "forbidden", "forbidden"])
    h.source(START)
    h.run()
    h.source(START + timedelta(hours=1))
    h.run()
    [dead] = [d for d in deliveries(h) if d.status == "dead"]
    assert "create b2 done; then cancel at tgt" in (dead.last_error or "") and "admin scope" in (
        dead.last_error or ""
    )
    mirror = store_link(engine, "tgt")
    assert mirror.external_id == "b2" and mirror.start == START + timedelta(hours=1)
    with transaction(engine) as session:
        assert delivery_replay(session, h) == 1
    h.run()  # replayed: the cancel is tried again (refused again); no third booking
    assert len(h.target.bookings) == 2
    h.run()
    with transaction(engine) as session:
        delivery_replay(session, h)
    h.run()  # the scope was fixed: the old booking goes
    assert [(b.id, b.cancelled) for b in h.target.bookings.values()] == [("b1", True), ("b2", False)]


def store_link(engine: Engine, connection: str) -> LinkRow:
    with transaction(engine) as session:
        meeting = session.exec(select(MeetingRow)).one()
        link = store.link_for(session, meeting.id, connection)
        assert link is not None
        return link


def delivery_replay(session, h: Harness) -> int:
    from bookingsync.worker.delivery import replay

    return replay(session, h.clock.now(), all_dead=True)


def test_the_breaker_halts_a_mirror_that_keeps_writing_and_a_person_lifts_it(engine: Engine) -> None:
    h = harness(engine, MOVABLE, max_writes=3)
    h.source(START)
    h.run()
    for minutes in (60, 120, 180):
        h.source(START + timedelta(minutes=minutes))
        h.run()
    assert [i.state for i in h.rows(IntentRow)] == ["done", "done", "done", "halted"]
    halted = h.rows(IntentRow)[-1]
    assert "3 creates or moves" in (halted.reason or "")
    assert "halted" in (deliveries(h)[-1].last_error or "")
    with transaction(engine) as session:
        assert [r.reference for r in mirrors.unresolved_rows(session, 10)] == [halted.reference]
        message = mirrors.resume(session, halted.meeting_id, "tgt", h.clock.now())
    assert "lifted 1 halt" in message
    h.run()
    [booking] = h.target.bookings.values()
    assert booking.start == START + timedelta(minutes=180)


def test_a_mirror_gone_from_a_complete_read_of_the_target_does_not_cancel_the_meeting(engine: Engine) -> None:
    h = harness(engine, MOVABLE)
    h.source(START)
    h.run()
    with transaction(engine) as session:
        link = session.exec(select(LinkRow).where(LinkRow.connection == "tgt")).one()
        applied = store.mark_missing(session, link, h.clock.now(), timedelta(minutes=5))
    assert not applied.changed and applied.events == ()
    assert h.rows(MeetingRow)[0].status == "scheduled"
    assert non_timer_events(h) == ["meeting.booked"]


def test_mirrors_show_accounts_for_every_write(engine: Engine) -> None:
    h = harness(engine, BLIND)
    h.source(START)
    h.run()
    h.source(START + timedelta(hours=1))
    h.run()
    meeting_id = h.rows(MeetingRow)[0].id
    with transaction(engine) as session:
        rows = mirrors.for_meeting(session, meeting_id)
    assert [(r["action"], r["state"], r["provider id"], r["attempts"]) for r in rows] == [
        ("create", "done", "b1", 1),
        ("create", "done", "b2", 1),
        ("cancel", "done", "b1", 1),
    ]
    assert rows[1]["on"] == "b1" and all(r["target"] == "tgt" and r["created"] for r in rows)
