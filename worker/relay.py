"""The outbox relay: claims due work rows and hands them to the broker under a lease.

Three kinds of work wait in the database: events to publish, deliveries to send and webhook
receipts to ingest. Claiming takes rows that are due (or whose lease ran out, because the broker
lost the message or a worker died) with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the
transaction's write lock makes the claim exclusive. A claimed row is leased, so a second relay
skips it, and re-claimed only when the lease runs out before the row is marked done.

Events also get their per-meeting `sequence` here, in due order, and timers are re-checked:
one whose meeting moved, was deleted or came back in a new generation is dropped, not sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_
from sqlmodel import Session, and_, col, select

from bookingsync.models.tables import DeliveryRow, EventRow, MeetingRow, ReceiptRow
from bookingsync.worker.db import transaction
from bookingsync.worker.lifecycle import TIMER_TYPES, EventType, timer_is_current
from bookingsync.worker.payloads import event_body, meeting_json
from bookingsync.worker.store import links_of, state_of

WORK_STATUS = {EventRow: "pending", DeliveryRow: "pending", ReceiptRow: "received"}


@dataclass(frozen=True)
class Claimed:
    events: list[str]
    deliveries: list[int]
    receipts: list[int]


def _due(session: Session, model: Any, now: datetime, limit: int) -> list[Any]:
    ready = and_(col(model.status) == WORK_STATUS[model], col(model.due_at) <= now)
    expired = and_(col(model.status) == "leased", col(model.lease_until) < now)
    query = (select(model).where(or_(ready, expired)).order_by(col(model.due_at), col(model.id))
             .limit(limit).with_for_update(skip_locked=True))
    return list(session.exec(query).all())


def _lease(rows: list[Any], now: datetime, lease: timedelta) -> None:
    for row in rows:
        row.status = "leased"
        row.lease_until = now + lease
        row.attempts += 1


def _prepare_events(session: Session, rows: list[EventRow], now: datetime) -> list[EventRow]:
    """Drop stale timers, number the rest per meeting in due order, freeze their bodies."""
    meeting_ids = sorted({row.meeting_id for row in rows})
    meetings = {m.id: m for m in session.exec(select(MeetingRow).where(col(MeetingRow.id).in_(meeting_ids))
                                              .order_by(col(MeetingRow.id)).with_for_update())}
    links = links_of(session, meeting_ids)
    ready = []
    for row in rows:
        meeting = meetings[row.meeting_id]
        if row.payload is None or "data" not in row.payload:
            kind = EventType(row.type)
            if kind in TIMER_TYPES and not timer_is_current(state_of(meeting), kind, row.generation, row.set_for):
                row.status = "dropped"
                row.lease_until = None
                continue
            row.sequence = meeting.next_sequence
            meeting.next_sequence += 1
            snapshot = (row.payload or {}).get("meeting") or meeting_json(meeting, links[meeting.id])
            row.payload = event_body(row, snapshot)
        ready.append(row)
    return ready


def claim(engine: Engine, now: datetime, *, lease_seconds: float, limit: int) -> Claimed:
    lease = timedelta(seconds=lease_seconds)
    with transaction(engine) as session:
        events = _prepare_events(session, _due(session, EventRow, now, limit), now)
        _lease(events, now, lease)
        deliveries = _due(session, DeliveryRow, now, limit)
        _lease(deliveries, now, lease)
        receipts = _due(session, ReceiptRow, now, limit)
        _lease(receipts, now, lease)
        session.flush()
        return Claimed(events=[e.event_id for e in events], deliveries=[d.id for d in deliveries],
                       receipts=[r.id for r in receipts])


@dataclass(frozen=True)
class Senders:
    publish: Callable[[str], Any]
    deliver: Callable[[int], Any]
    ingest: Callable[[int], Any]


def relay_once(engine: Engine, now: datetime, senders: Senders, *, lease_seconds: float, limit: int) -> Claimed:
    """Claim what is due and send a message for each; a lost message is re-sent after its lease."""
    claimed = claim(engine, now, lease_seconds=lease_seconds, limit=limit)
    for event_id in claimed.events:
        senders.publish(event_id)
    for delivery_id in claimed.deliveries:
        senders.deliver(delivery_id)
    for receipt_id in claimed.receipts:
        senders.ingest(receipt_id)
    return claimed
