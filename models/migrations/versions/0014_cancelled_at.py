"""cancelled_at: a cancelled timer's retention window runs from its cancellation, not its due time

Revision ID: 0014
Revises: 0013

Retention removed a cancelled event once its `due_at` was older than `events_days`. A timer is
set up to the meeting's start (weeks or months ahead), so a cancelled one stayed for its whole
lead time plus the window: under steady rescheduling most of the events table was cancelled
timers still due in the future, and the table did not level off for as long as the furthest
booking. `cancelled_at` says when the event was cancelled (retention stamps it, see
worker/retention.py), and the window of a cancelled event runs from there.

Existing cancelled rows: the moment of their cancellation is not known. It lies between their
creation and their due time (only pending or leased timers are cancelled), and before now. Each
gets the latest of those bounds that has passed, min(due_at, now): a row already past due keeps
the window it had (from its due time), one still ahead goes one window after this upgrade.
A partial index over cancelled rows serves both the stamping and the prune.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from bookingsync.models.columns import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CANCELLED = "status = 'cancelled'"


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancelled_at", UTCDateTime(), nullable=True))
    events = sa.table(
        "events",
        sa.column("status", sa.String()),
        sa.column("due_at", UTCDateTime()),
        sa.column("cancelled_at", UTCDateTime()),
    )
    now = sa.bindparam("now", datetime.now(UTC), type_=UTCDateTime())
    op.execute(
        events.update()
        .where(events.c.status == "cancelled")
        .values(cancelled_at=sa.case((events.c.due_at < now, events.c.due_at), else_=now))
    )
    op.create_index(
        "ix_events_cancelled",
        "events",
        ["cancelled_at"],
        unique=False,
        sqlite_where=sa.text(CANCELLED),
        postgresql_where=sa.text(CANCELLED),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_events_cancelled",
        table_name="events",
        sqlite_where=sa.text(CANCELLED),
        postgresql_where=sa.text(CANCELLED),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("cancelled_at")
