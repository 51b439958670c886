"""links.raw_hash: the fingerprint of the raw record a link last applied (issue 6)

Revision ID: 0012
Revises: 0011

Re-reading a page that has not changed used to normalise, hash and plan every record only to
update each link's `last_seen_at`. `raw_hash` keeps the key of the raw record whose reading the
link holds (worker/ingest_fingerprint.py; cleared by any other write to the link's state), so a
record read again unchanged is recognised before it is normalised (worker/ingest_unchanged.py).
Nullable: a link without one (every link made before this revision) takes the full path once
and gets one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("raw_hash")
