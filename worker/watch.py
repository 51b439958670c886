"""What the store tells a watch-list read (LeanData) about each watched email, and what the read
reports back: the schedule's summary for `bookingsync status`.

An email is watched while one of its meetings is upcoming or ended after the lookback; its hint
is its soonest upcoming start and when one of its meetings last changed here (after it was first
stored).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from bookingsync.adapters.base import WatchHint, WatchSummary
from bookingsync.models.tables import MeetingRow, PollStateRow


def hints(session: Session, now: datetime, since: datetime) -> dict[str, WatchHint]:
    """Every watched attendee email (meetings upcoming or ended after `since`) with its hint."""
    upcoming = func.min(case((col(MeetingRow.start) >= now, col(MeetingRow.start)), else_=None))
    # A change is a meeting updated after it was first stored. First sight is not one: it is
    # covered by "never read" (read once, first), and a bulk of new meetings elsewhere would
    # otherwise make every attendee urgent for the whole RECENT window and fill LeanData's polls.
    changed = func.max(
        case(
            (col(MeetingRow.updated_at) > col(MeetingRow.created_at), col(MeetingRow.updated_at)), else_=None
        )
    )
    query = (
        select(MeetingRow.attendee_email, upcoming, changed)
        .where(col(MeetingRow.attendee_email).is_not(None), col(MeetingRow.end) >= since)
        .group_by(col(MeetingRow.attendee_email))
    )
    return {
        email: WatchHint(next_start=_aware(start), changed_at=_aware(changed))
        for email, start, changed in session.exec(query)
        if email
    }


def _aware(value: datetime | str | None) -> datetime | None:
    # Aggregates keep the column's type, but SQLite may still hand back text: read it as UTC.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def record(row: PollStateRow, summary: WatchSummary) -> None:
    row.watch_count = summary.count
    row.watch_staleness_seconds = summary.staleness_seconds
    row.watch_next_due_at = summary.next_due_at
