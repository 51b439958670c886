"""Issue 16: Meetergo's double opt-in, confirmed as an appointment that still carries the reference
we planted (meetergo keeps the attendee notes): the appointment is our echo *and* the provisional
booking's successor. One meeting, one `booked`, the provisional link superseded, our write naming
the appointment, so a later cancel reaches the booking that exists. Real store, ingest, outbox
and reconcile, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from bookingsync.models.errors import ProviderRejected
from bookingsync.models.tables import DeliveryRow, IntentRow, LinkRow, MeetingRow
from tests.store.test_identity import MOVABLE, DoubleOptInTarget, World, record


def test_a_confirmed_appointment_that_keeps_our_reference_continues_the_provisional_booking(
    engine: Engine,
) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    w.target = DoubleOptInTarget(capabilities=MOVABLE)
    w.rt._adapters["tgt"] = w.target  # type: ignore[assignment]
    w.read("lz", record("L1"))
    w.run()
    [provisional] = list(w.target.bookings)
    appointment = w.target.confirm(provisional) | {
        "reference": w.target.bookings[f"appt-{provisional}"].reference
    }
    w.read("tgt", appointment, adapter=w.target)
    assert len(w.rows(MeetingRow)) == 1 and [e.type for e in w.events()] == ["meeting.booked"]
    by_id = {link.external_id: link for link in w.rows(LinkRow)}
    assert by_id[f"appt-{provisional}"].rule == "reference"
    assert by_id[provisional].content_hash == "superseded"
    [create] = w.rows(IntentRow)
    assert (create.external_id, create.alias) == (f"appt-{provisional}", provisional)
    w.read("tgt", appointment, adapter=w.target)  # read again (the poll after the webhook): nothing changes
    assert len(w.rows(LinkRow)) == 3 and len(w.rows(IntentRow)) == 1
    w.read("lz", record("L1", status="cancelled"))
    w.run()
    assert w.target.live() == [] and [i.action for i in w.rows(IntentRow)] == ["create", "cancel"]
    assert [i.subject for i in w.rows(IntentRow)][-1] == f"appt-{provisional}"


class NoProvisionalCancel(DoubleOptInTarget):
    """Meetergo: a provisional booking cannot be cancelled (no documented call); an appointment can."""

    def cancel(self, external_id: str) -> None:
        if external_id.startswith("provisional:"):
            raise ProviderRejected(
                "meetergo", f"{external_id} is a provisional booking; no way to cancel one"
            )
        super().cancel(external_id)


def test_a_cancel_that_could_not_reach_the_provisional_booking_reaches_its_appointment(
    engine: Engine,
) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    w.target = NoProvisionalCancel(capabilities=MOVABLE)
    w.rt._adapters["tgt"] = w.target  # type: ignore[assignment]
    w.read("lz", record("L1"))
    w.run()
    [provisional] = list(w.target.bookings)
    w.read("lz", record("L1", status="cancelled"))
    w.run()
    [create, cancel] = w.rows(IntentRow)
    assert (cancel.action, cancel.state) == ("cancel", "failed") and "provisional" in (cancel.reason or "")
    assert [d.status for d in w.rows(DeliveryRow) if d.subscription_id == "route:tgt"].count("dead") == 1
    # The attendee confirms anyway: the appointment is ours, and the meeting is cancelled.
    appointment = w.target.confirm(provisional) | {
        "reference": w.target.bookings[f"appt-{provisional}"].reference
    }
    w.read("tgt", appointment, adapter=w.target)
    w.run()
    assert w.target.live() == []
    assert [(i.action, i.state, i.subject) for i in w.rows(IntentRow)][-1] == (
        "cancel",
        "done",
        f"appt-{provisional}",
    )
    assert len(w.rows(MeetingRow)) == 1
