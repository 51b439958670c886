"""history: indexes so that work per change does not grow with what is stored

Revision ID: 0013
Revises: 0007

`meetings.end` serves LeanData's watch list (attendees of meetings ending after a time, read
at every poll) and retention's ended meetings. A partial index over webhook receipts that still
hold their raw body lets retention clear bodies without reading the receipts it cleared before
(SQLite and PostgreSQL both take the predicate; retention's query repeats it word for word).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0007'
branch_labels = None
depends_on = None

RECEIPT_HAS_BODY = "body <> ''"


def upgrade() -> None:
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.create_index('ix_meetings_end', ['end'], unique=False)
    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.create_index('ix_receipts_body_kept', ['due_at'], unique=False,
                              sqlite_where=sa.text(RECEIPT_HAS_BODY), postgresql_where=sa.text(RECEIPT_HAS_BODY))


def downgrade() -> None:
    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.drop_index('ix_receipts_body_kept')
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_index('ix_meetings_end')
