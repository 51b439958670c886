"""Issue 16: a title change reaches a target whose move can write it (HubSpot's CRM PATCH:
`pushes = {"title"}`), as a move to the same times with the title; a target whose documented
update takes only times gets no write for it. Real store, ingest, outbox and reconcile, on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import Engine

from bookingsync.adapters.base import BookingRequest, RawRecord
from bookingsync.models.meeting import SourceRecord
from bookingsync.models.tables import EventRow, IntentRow
from tests.store.test_identity import MOVABLE, World, record


class TitledTarget:
    """Wraps the store tests' FakeTarget: keeps the title each create or move sends, shows it."""

    pushes: ClassVar[frozenset[str]] = frozenset({"title"})

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.titles: dict[str, str | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _titled(self, made: SourceRecord, title: str | None) -> SourceRecord:
        self.titles[made.external_id] = title
        return made.model_copy(update={"meeting": made.meeting.model_copy(update={"title": title})})

    def create(self, request: BookingRequest) -> SourceRecord:
        return self._titled(self.inner.create(request), request.meeting.title)

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        return self._titled(self.inner.reschedule(external_id, request), request.meeting.title)

    def normalise(self, raw: RawRecord) -> SourceRecord:
        made = self.inner.normalise(raw)
        title = self.titles.get(made.external_id)
        return made.model_copy(update={"meeting": made.meeting.model_copy(update={"title": title})})


def test_a_title_change_is_pushed_where_the_target_can_take_it_and_nowhere_else(engine: Engine) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt", "ld"]}])
    titled = TitledTarget(w.target)
    w.rt._adapters["tgt"] = titled  # type: ignore[assignment]
    plain = type(w.target)(capabilities=MOVABLE)  # takes only times (LeanData's PATCH)
    w.rt._adapters["ld"] = plain  # type: ignore[assignment]
    w.read("lz", record("L1", title="Demo"))
    w.run()
    [booking] = w.target.live()
    assert titled.titles == {booking.id: "Demo"}
    w.read("tgt", w.target.payload(booking), adapter=titled)  # read back: in step, nothing to push
    w.run()
    assert [(i.connection, i.action) for i in w.rows(IntentRow)] == [("tgt", "create"), ("ld", "create")]

    w.read("lz", record("L1", title="Demo (moved to Zoom)"))
    w.run()
    assert "meeting.updated" in [e.type for e in w.rows(EventRow)]
    assert titled.titles == {booking.id: "Demo (moved to Zoom)"}
    assert [(b.start, b.cancelled) for b in w.target.bookings.values()] == [(booking.start, False)]
    assert [(i.connection, i.action) for i in w.rows(IntentRow)] == [
        ("tgt", "create"),
        ("ld", "create"),
        ("tgt", "reschedule"),  # the same times, with the title
    ]
    w.read("tgt", w.target.payload(booking), adapter=titled)
    w.run()
    assert len(w.rows(IntentRow)) == 3  # in step now: nothing more
