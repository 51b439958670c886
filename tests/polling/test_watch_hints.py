"""What the store tells LeanData's watch schedule about each attendee (worker/watch.py), on
SQLite and PostgreSQL: a meeting first stored is not a change, a later update is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from bookingsync.models.tables import MeetingRow
from bookingsync.worker.watch import hints

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def meeting(email: str, start: datetime, created: datetime, updated: datetime) -> MeetingRow:
    return MeetingRow(
        id=f"mtg_{email.split('@')[0]}_{int(start.timestamp())}",
        status="scheduled",
        start=start,
        end=start + timedelta(minutes=30),
        attendee_email=email,
        content_hash="x" * 64,
        created_at=created,
        updated_at=updated,
    )


def test_first_sight_is_not_a_change_a_later_update_is(engine):
    with Session(engine) as session:
        # Just seen elsewhere (a bulk of new meetings): new, but not "changed recently".
        session.add(meeting("new@x.co", NOW + timedelta(hours=3), NOW, NOW))
        # Rescheduled a minute ago, first stored an hour ago.
        session.add(
            meeting(
                "moved@x.co", NOW + timedelta(hours=5), NOW - timedelta(hours=1), NOW - timedelta(minutes=1)
            )
        )
        session.add(
            meeting(
                "moved@x.co", NOW + timedelta(hours=2), NOW - timedelta(hours=1), NOW - timedelta(hours=1)
            )
        )
        session.commit()
        found = hints(session, NOW, NOW - timedelta(days=7))
    assert found["new@x.co"].changed_at is None
    assert found["new@x.co"].next_start == NOW + timedelta(hours=3)
    assert found["moved@x.co"].changed_at == NOW - timedelta(minutes=1)
    assert found["moved@x.co"].next_start == NOW + timedelta(hours=2)
