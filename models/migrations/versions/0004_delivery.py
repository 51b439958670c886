"""delivery throughput: claim indexes that also order by id

Revision ID: 0004
Revises: 0003

The relay claims the oldest due rows with `ORDER BY due_at, id LIMIT n`. On (status, due_at)
alone, a burst of rows due at the same instant (200,000 timers at the top of the hour) has to be
read and sorted whole to find the first n; with id in the index the scan stops after n rows.
Index changes only, so no table is rebuilt on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CLAIM_INDEXES = (
    ("events", "ix_events_claim"),
    ("deliveries", "ix_deliveries_claim"),
    ("webhook_receipts", "ix_receipts_claim"),
)


def upgrade() -> None:
    for table, name in CLAIM_INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["status", "due_at", "id"], unique=False)


def downgrade() -> None:
    for table, name in CLAIM_INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["status", "due_at"], unique=False)
