"""The reads of a page of ingest (worker/ingest_store.py): its links and their meetings, one query each.

Both are locked on PostgreSQL (`FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` already serialises
writers) and read as Core rows: the planner (worker/ingest_plan.py) gets plain values, not ORM
objects.
"""

from __future__ import annotations

from sqlmodel import Session

from bookingsync.worker.ingest_plan import LinkState, MeetingSlot, StoredLink, state_of_columns
from bookingsync.worker.ingest_statements import STORED_COLUMNS, statement


def load_links(session: Session, connection: str, external_ids: set[str]) -> dict[str, LinkState]:
    if not external_ids:
        return {}
    conn = session.connection()
    rows = conn.execute(
        statement(conn.dialect.name, "links"), {"connection": connection, "ids": sorted(external_ids)}
    )
    return {row.external_id: LinkState(*row) for row in rows}  # columns in field order


def load_meetings(session: Session, meeting_ids: set[str]) -> dict[str, MeetingSlot]:
    """The stored meetings of `meeting_ids`, locked, each with its stored links (`stored_links`,
    which the payloads of its events list) and columns (`stored`, which the update compares
    with): one query for all, read as Core rows."""
    if not meeting_ids:
        return {}
    conn = session.connection()
    rows = conn.execute(statement(conn.dialect.name, "meetings"), {"ids": sorted(meeting_ids)})
    slots: dict[str, MeetingSlot] = {}
    for row in rows:
        slot = slots.get(row.id)
        if slot is None:
            slot = slots[row.id] = MeetingSlot(
                id=row.id,
                state=state_of_columns(row),
                next_sequence=row.next_sequence,
                source_updated_at=row.source_updated_at,
                stored=dict(zip(STORED_COLUMNS, row[1 : 1 + len(STORED_COLUMNS)], strict=True)),
            )
        if row.external_id is not None:
            slot.stored_links.append(StoredLink(row.connection, row.provider, row.external_id))
    return slots
