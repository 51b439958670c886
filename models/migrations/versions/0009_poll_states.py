"""polling at volume: per-connection poll state

Revision ID: 0009
Revises: 0008

`poll_states`: one row per polled connection holding its back-off (failures in a row, the
earliest next read, a persisted Retry-After), the last error, counters of skipped ticks and
deferred pages, and the watch-list summary shown by `bookingsync status`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bookingsync.models.columns import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poll_states",
        sa.Column("connection", sa.String(length=100), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("not_before", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_read_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("skipped_ticks", sa.Integer(), nullable=False),
        sa.Column("deferred_pages", sa.Integer(), nullable=False),
        sa.Column("watch_count", sa.Integer(), nullable=True),
        sa.Column("watch_staleness_seconds", sa.Float(), nullable=True),
        sa.Column("watch_next_due_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection"),
    )


def downgrade() -> None:
    op.drop_table("poll_states")
