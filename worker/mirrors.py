"""Accounting for writes to route targets: what `bookingsync mirrors …` shows (rows, rendered
like `worker/reports`) and does. `/metrics` counts the unfinished ones (worker/metrics.py).
Reads `write_intents`; the state machine is `worker/intents.py`.

* `for_meeting` — every intent of one meeting: target, action, state, provider id, attempts, times.
* `listing` — the newest intents, or (`unresolved`) those a person must look at: an unknown
  outcome (a lost answer the provider cannot be asked about), a halt, or a lost answer not yet
  looked up.
* `resume` — lift the halts of a (meeting, target) and put its dead route deliveries back in line.
* `resolve` — a person checked the provider: an unknown intent did make booking X, or made none.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bookingsync.models.errors import Conflict, NotFound
from bookingsync.models.meeting import MeetingStatus, SourceRecord
from bookingsync.models.tables import IntentRow, MeetingRow
from bookingsync.worker import intent_store, intents, store
from bookingsync.worker.intents import State, Step
from bookingsync.worker.payloads import iso

COLUMNS = [
    "intent",
    "meeting",
    "target",
    "action",
    "state",
    "provider id",
    "on",
    "attempts",
    "created",
    "updated",
    "reason",
]
Row = dict[str, Any]


def row_of(row: IntentRow) -> Row:
    state = row.state if row.state != State.PENDING or row.step == Step.READY else f"{row.state} ({row.step})"
    return {
        "intent": row.reference,
        "meeting": row.meeting_id,
        "target": row.connection,
        "action": row.action,
        "state": state,
        "provider id": row.external_id,
        "on": row.subject,
        "attempts": row.attempts,
        "created": iso(row.created_at),
        "updated": iso(row.updated_at),
        "reason": row.reason,
    }


def for_meeting(session: Session, meeting_id: str) -> list[Row]:
    """Every write made for one meeting, oldest first."""
    return [row_of(row) for row in intent_store.for_meeting(session, meeting_id)]


def unresolved_rows(session: Session, limit: int) -> list[IntentRow]:
    query = select(IntentRow).where(
        col(IntentRow.state).in_([State.UNKNOWN.value, State.HALTED.value])
        | ((IntentRow.state == State.PENDING.value) & (IntentRow.step == Step.LOST.value))
    )
    return list(session.exec(query.order_by(col(IntentRow.id).desc()).limit(limit)))


def listing(session: Session, limit: int, unresolved: bool) -> list[Row]:
    """The newest writes, or (`unresolved`) those a person must look at."""
    rows = (
        unresolved_rows(session, limit)
        if unresolved
        else list(session.exec(select(IntentRow).order_by(col(IntentRow.id).desc()).limit(limit)))
    )
    return [row_of(row) for row in rows]


def resume(session: Session, meeting_id: str, target: str, now: datetime) -> str:
    """Lift the halts of one mirror; the breaker's count starts again from now."""
    lifted = 0
    for row in intent_store.for_target(session, meeting_id, target):
        if row.state == State.HALTED:
            intent_store.save(
                row,
                intents.lifted(
                    intent_store.value(row), f"halt lifted by a person at {iso(now)}: {row.reason}"
                ),
                now,
            )
            lifted += 1
    if not lifted:
        raise Conflict(f"the mirror of meeting {meeting_id} at {target} is not halted")
    replayed = intent_store.requeue_dead_deliveries(session, meeting_id, target, now)
    return (
        f"lifted {lifted} halt(s) of meeting {meeting_id} at {target}; {replayed} dead route deliver"
        f"{'y' if replayed == 1 else 'ies'} queued again"
    )


def resolve(session: Session, reference: str, now: datetime, *, booking_id: str | None, provider: str) -> str:
    """A person says what became of an unknown write: booking `booking_id`, or none (None)."""
    row = session.exec(select(IntentRow).where(IntentRow.reference == reference).with_for_update()).first()
    if row is None:
        raise NotFound(f"no write {reference}; `bookingsync mirrors list` shows them")
    current = intent_store.value(row)
    if current.state is not State.UNKNOWN:
        raise Conflict(f"write {reference} is {current.state}, not unknown; nothing to resolve")
    if booking_id is None:
        intent_store.save(
            row,
            replace(
                current, state=State.FAILED, reason=f"made no booking (checked by a person at {iso(now)})"
            ),
            now,
        )
        replayed = intent_store.requeue_dead_deliveries(session, row.meeting_id, row.connection, now)
        return f"write {reference} made no booking; {replayed} dead route deliveries queued again"
    intent_store.save(
        row,
        replace(
            current,
            state=State.DONE,
            external_id=booking_id,
            reason=f"booking {booking_id} confirmed by a person at {iso(now)}",
        ),
        now,
    )
    meeting_row = session.get(MeetingRow, row.meeting_id)
    assert meeting_row is not None  # intents point at meetings (foreign key)
    meeting = store.meeting_of(meeting_row).model_copy(
        update={"start": row.start, "end": row.end, "status": MeetingStatus.SCHEDULED}
    )
    store.record_mirror(
        session,
        meeting_id=row.meeting_id,
        connection=row.connection,
        provider=provider,
        record=SourceRecord(external_id=booking_id, meeting=meeting),
        raw={"confirmed_by": "bookingsync mirrors resolve"},
        now=now,
        replaces=row.subject,
    )
    replayed = intent_store.requeue_dead_deliveries(session, row.meeting_id, row.connection, now)
    return f"write {reference} made booking {booking_id}, now linked; {replayed} dead route deliveries queued again"
