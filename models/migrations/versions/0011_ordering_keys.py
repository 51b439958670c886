"""ordering keys: never apply a snapshot older than the one a link holds (issue 13)

Revision ID: 0011
Revises: 0010

`links.source_updated_at` (the provider's own updated_at) already exists. A webhook record that
carries no updated_at is ordered by its delivery's receipt time, kept in `source_delivered_at`;
`stale_count` counts the older snapshots that arrived after a newer one and were ignored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bookingsync.models.columns import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_delivered_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("stale_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("stale_count")
        batch_op.drop_column("source_delivered_at")
