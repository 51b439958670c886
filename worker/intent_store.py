"""The SQL of write intents (`write_intents`); the state machine itself is `worker/intents.py`.

Rows and `Intent` values convert both ways; every change goes through a pure transition and is
written back with `save`. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import Session, col, select

from bookingsync.models.tables import DeliveryRow, EventRow, IntentRow
from bookingsync.worker.intents import Intent, State, Step, Write

# States in which an intent may still stand for a booking whose answer we have not seen.
OPEN_STATES = (State.PENDING.value, State.UNKNOWN.value)
# How route deliveries name their target: `route:<connection>`, beside subscription ids.
ROUTE_PREFIX = "route:"


def value(row: IntentRow) -> Intent:
    return Intent(
        reference=row.reference,
        action=Write(row.action),
        start=row.start,
        end=row.end,
        state=State(row.state),
        step=Step(row.step),
        subject=row.subject,
        external_id=row.external_id,
        alias=row.alias,
        attendee_email=row.attendee_email,
        attempts=row.attempts,
        reason=row.reason,
        calling_until=row.calling_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
        meeting_id=row.meeting_id,
        id=row.id,
    )


def save(row: IntentRow, intent: Intent, now: datetime) -> IntentRow:
    row.state, row.step = intent.state.value, intent.step.value
    row.subject, row.external_id, row.alias = intent.subject, intent.external_id, intent.alias
    row.attempts, row.reason, row.calling_until = intent.attempts, intent.reason, intent.calling_until
    row.updated_at = now
    return row


def add(session: Session, intent: Intent, *, meeting_id: str, connection: str, now: datetime) -> IntentRow:
    row = IntentRow(
        reference=intent.reference,
        meeting_id=meeting_id,
        connection=connection,
        action=intent.action.value,
        start=intent.start,
        end=intent.end,
        attendee_email=intent.attendee_email,
        created_at=now,
        updated_at=now,
    )
    save(row, intent, now)
    session.add(row)
    session.flush()
    return row


def for_target(session: Session, meeting_id: str, connection: str) -> list[IntentRow]:
    """Every intent of one (meeting, target), oldest first, locked for the caller's decision."""
    query = (
        select(IntentRow)
        .where(IntentRow.meeting_id == meeting_id, IntentRow.connection == connection)
        .order_by(col(IntentRow.id))
    )
    return list(session.exec(query.with_for_update()))


def for_meeting(session: Session, meeting_id: str) -> list[IntentRow]:
    query = select(IntentRow).where(IntentRow.meeting_id == meeting_id).order_by(col(IntentRow.id))
    return list(session.exec(query))


def get(session: Session, intent_id: int) -> IntentRow | None:
    return session.exec(select(IntentRow).where(IntentRow.id == intent_id).with_for_update()).first()


def has_any(session: Session, connection: str) -> bool:
    """Whether bookingsync ever wrote to `connection` (most connections are only read)."""
    return (
        session.exec(select(IntentRow.id).where(IntentRow.connection == connection).limit(1)).first()
        is not None
    )


def candidates(
    session: Session,
    connection: str,
    *,
    ids: Collection[str],
    references: Collection[str],
    starts: Collection[datetime],
) -> list[IntentRow]:
    """Intents at `connection` that unlinked records with these ids, references or starts could be
    echoes of: by the ids an answer gave or a write acted on, by reference, or open at that start."""
    names = sorted(set(ids) | set(references))
    clauses = []
    if ids:
        clauses += [col(IntentRow.external_id).in_(sorted(ids)), col(IntentRow.subject).in_(sorted(ids))]
    if names:
        clauses.append(col(IntentRow.alias).in_(names))
    if references:
        clauses.append(col(IntentRow.reference).in_(sorted(references)))
    if starts:
        clauses.append(col(IntentRow.state).in_(OPEN_STATES) & col(IntentRow.start).in_(sorted(starts)))
    if not clauses:
        return []
    query = (
        select(IntentRow).where(IntentRow.connection == connection, or_(*clauses)).order_by(col(IntentRow.id))
    )
    return list(session.exec(query))


def follow(
    session: Session, meeting_id: str, connection: str, old_id: str, new_id: str, now: datetime
) -> int:
    """Our writes that named booking `old_id` (a provisional booking) now name `new_id` (the
    appointment its confirmation made), keeping the old id as the alias."""
    query = select(IntentRow).where(
        IntentRow.meeting_id == meeting_id,
        IntentRow.connection == connection,
        IntentRow.external_id == old_id,
    )
    rows = list(session.exec(query.with_for_update()))
    for row in rows:
        row.external_id, row.alias, row.updated_at = new_id, old_id, now
        row.reason = f"{old_id} was provisional; confirmed as {new_id}" + (
            f" ({row.reason})" if row.reason else ""
        )
    return len(rows)


def requeue_dead_deliveries(session: Session, meeting_id: str, connection: str, now: datetime) -> int:
    """Put the dead route deliveries of one mirror back in line: what held or halted it is resolved
    (a person lifted a halt, or an echo showed what a lost answer made)."""
    query = (
        select(DeliveryRow)
        .join(EventRow, col(EventRow.event_id) == col(DeliveryRow.event_id))
        .where(
            DeliveryRow.status == "dead",
            DeliveryRow.subscription_id == f"{ROUTE_PREFIX}{connection}",
            EventRow.meeting_id == meeting_id,
        )
    )
    rows = list(session.exec(query))
    for row in rows:
        row.status, row.due_at, row.attempts, row.finished_at, row.lease_until = "pending", now, 0, None, None
    return len(rows)
