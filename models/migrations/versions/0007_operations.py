"""operations: indexes for retention and scrape-time metrics

Revision ID: 0007
Revises: 0006

Quarantine items are counted by status at every /metrics scrape and pruned by
(status, resolved_at); without an index both would scan the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_status_resolved", ["status", "resolved_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_status_resolved")
