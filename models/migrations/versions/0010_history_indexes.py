"""history: indexes so that work per change does not grow with what is stored

Revision ID: 0010
Revises: 0009

`meetings.end` serves LeanData's watch list (attendees of meetings ending after a time, read
at every poll) and retention's ended meetings. A partial index over webhook receipts that still
hold their raw body lets retention clear bodies without reading the receipts it cleared before
(SQLite and PostgreSQL both take the predicate; retention's query repeats it word for word).

On PostgreSQL the work tables (events, deliveries, webhook receipts) are rewritten at every claim,
lease and outcome, and pruned in batches: autovacuum visits them at 2 % dead rows instead of the
default 20 %, so the space is reused as it is freed and a big table does not wait for days of
dead rows before its first visit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RECEIPT_HAS_BODY = "body <> ''"
WORK_TABLES = ("events", "deliveries", "webhook_receipts")
AUTOVACUUM = {"autovacuum_vacuum_scale_factor": "0.02", "autovacuum_analyze_scale_factor": "0.02"}


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index("ix_meetings_end", ["end"], unique=False)
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_receipts_body_kept",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text(RECEIPT_HAS_BODY),
            postgresql_where=sa.text(RECEIPT_HAS_BODY),
        )
    if op.get_bind().dialect.name == "postgresql":
        options = ", ".join(f"{key} = {value}" for key, value in AUTOVACUUM.items())
        for table in WORK_TABLES:
            op.execute(f"ALTER TABLE {table} SET ({options})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in WORK_TABLES:
            op.execute(f"ALTER TABLE {table} RESET ({', '.join(AUTOVACUUM)})")
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_body_kept")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index("ix_meetings_end")
