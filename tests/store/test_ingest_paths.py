"""The two ingest paths store the same thing (SQLite and PostgreSQL).

A page goes through the bulk path (worker/ingest_store.py); a record issue 16's conflict policy
speaks for (here: an origin on a bidirectional route) goes through `store.apply_one`. Whichever
path a record takes, its link gets the same rule, last read (`observed`) and ordering key, its
meeting the same `source_updated_at`, a late first sight the same `late_by` on its timers, and an
older snapshot is ignored by both (the conflict policy's stale check and the ordering key agree).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.adapters.leezy import LeezyAdapter
from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker import conflicts
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import IngestResult, ingest_records

GRACE = timedelta(minutes=5)
CONNECTION = "leezy-main"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def leezy(now: datetime, *, start_min: float, updated_min: float, title: str = "Demo") -> RawRecord:
    """A meeting in Leezy's documented resource shape (GET /api/v1/meetings `data[]`)."""
    start = now + timedelta(minutes=start_min)
    attributes = {
        "start_time": iso(start),
        "end_time": iso(start + timedelta(minutes=30)),
        "attendee": {"email": "lisa@acme.com", "name": "Lisa"},
        "status": "scheduled",
        "title": title,
        "timezone": "Europe/Berlin",
        "updated_at": iso(now + timedelta(minutes=updated_min)),
    }
    return RawRecord(payload={"id": "lz_1", "type": "meeting", "attributes": attributes}, external_id="lz_1")


def stored(engine: Engine) -> dict[str, Any]:
    with transaction(engine) as session:
        link = session.exec(select(LinkRow)).one()
        meeting = session.exec(select(MeetingRow)).one()
        events = session.exec(select(EventRow).order_by(col(EventRow.id))).all()
        return {
            "rule": link.rule,
            "observed": link.observed,
            "link_stamp": link.source_updated_at,
            "stale_count": link.stale_count,
            "meeting_stamp": meeting.source_updated_at,
            "title": meeting.title,
            "version": meeting.version,
            "events": [
                (e.type, e.status, e.sequence, None if e.set_for is None else e.payload) for e in events
            ],
        }


@pytest.mark.parametrize("both_ways", [False, True], ids=["bulk", "per-record"])
def test_both_paths_store_the_same_columns(
    engine: Engine, clock: ManualClock, both_ways: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if both_ways:
        monkeypatch.setattr(conflicts, "_both_ways", frozenset({frozenset({CONNECTION, "meetergo-main"})}))
    assert conflicts.on_bidirectional_route(CONNECTION) is both_ways
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    now = clock.now()

    def ingest(raw: RawRecord) -> IngestResult:
        result = IngestResult()
        with transaction(engine) as session:
            ingest_records(
                session, adapter, CONNECTION, [raw], source="poll", now=now, grace=GRACE, result=result
            )
        return result

    try:
        # First seen ten minutes after its start: hasStarted is due now, 600 s late.
        ingest(leezy(now, start_min=-10, updated_min=-20))
        renamed = leezy(now, start_min=-10, updated_min=-5, title="Renamed")
        ingest(renamed)
        stale = ingest(leezy(now, start_min=-10, updated_min=-15, title="Older"))
    finally:
        adapter.close()
    got = stored(engine)
    assert got["rule"] == "origin"
    assert got["observed"] == adapter.normalise(renamed).meeting.model_dump(mode="json")
    stamp = now - timedelta(minutes=5)
    assert got["link_stamp"] == stamp and got["meeting_stamp"] == stamp
    assert (got["title"], got["version"]) == ("Renamed", 2)
    assert stale.changed == 0 and got["stale_count"] == 1  # counted on its link and ignored, on either path
    events = got["events"]
    assert [(kind, sequence) for kind, _, sequence, _ in events if sequence is not None] == [
        ("meeting.booked", 1),
        ("meeting.updated", 2),
    ]
    timers = {kind: payload for kind, status, _, payload in events if kind == "meeting.hasStarted"}
    assert timers == {"meeting.hasStarted": {"late_by": 600.0}}


@pytest.mark.parametrize("both_ways", [False, True], ids=["bulk", "per-record"])
def test_both_paths_stamp_the_timers_they_cancel(
    engine: Engine, clock: ManualClock, both_ways: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window retention gives a cancelled timer starts at the cancellation (worker/retention.py)."""
    if both_ways:
        monkeypatch.setattr(conflicts, "_both_ways", frozenset({frozenset({CONNECTION, "meetergo-main"})}))
    adapter = LeezyAdapter(connection_id=CONNECTION, base_url="https://app.leezy.ai", token="test")
    start = clock.now() + timedelta(days=30)

    def ingest(status: str, updated_min: float) -> None:
        raw = leezy(start - timedelta(days=30), start_min=30 * 24 * 60, updated_min=updated_min)
        raw.payload["attributes"]["status"] = status
        with transaction(engine) as session:
            ingest_records(
                session,
                adapter,
                CONNECTION,
                [raw],
                source="poll",
                now=clock.now(),
                grace=GRACE,
                result=IngestResult(),
            )

    def timers() -> list[tuple[str, str, datetime | None]]:
        with transaction(engine) as session:
            rows = session.exec(select(EventRow).where(col(EventRow.set_for).is_not(None)))
            return sorted((e.type, e.status, e.cancelled_at) for e in rows)

    try:
        ingest("scheduled", updated_min=1)
        clock.advance(minutes=10)
        ingest("cancelled", updated_min=11)
        cancelled_at = clock.now()
        assert timers() == [
            ("meeting.hasEnded", "cancelled", cancelled_at),
            ("meeting.hasStarted", "cancelled", cancelled_at),
        ]
        clock.advance(minutes=10)
        ingest("scheduled", updated_min=21)  # booked again: new timers, the cancelled ones keep their stamp
    finally:
        adapter.close()
    assert timers() == [
        ("meeting.hasEnded", "cancelled", cancelled_at),
        ("meeting.hasEnded", "pending", None),
        ("meeting.hasStarted", "cancelled", cancelled_at),
        ("meeting.hasStarted", "pending", None),
    ]
