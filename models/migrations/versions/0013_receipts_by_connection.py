"""receipts by connection: a connection's status reads a window of its receipts, not all of them

Revision ID: 0013
Revises: 0012

The status of a connection (API `/v1/connections`, the status page) showed its newest webhook
receipt and counted every receipt by status: a scan of all the receipts retention keeps (30 days by
default, millions at a few changes a second). With an index on (connection, received_at) the
newest receipt is one probe and the processed receipts of the last hour are an index range;
receipts still to ingest or failed are counted through the claim index (status first).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.create_index("ix_receipts_connection_received", ["connection", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_connection_received")
