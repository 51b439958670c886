"""identity: how each link was linked, meeting audit, stamps for the conflict policy, route syncs

Revision ID: 0008
Revises: 0007

Issue 16. `links.rule` and `links.observed` say how a link joined its meeting and what its
provider last said; `meetings.source_updated_at` is the stamp of the content the meeting holds
(a stale read never overwrites it); `meeting_audit` keeps links made and split, ambiguous matches
and conflicts; `route_syncs` is where a route's backfill resumes. The (attendee_email, start)
index serves the identity rules' one query per page.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from bookingsync.models.columns import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column("observed", sa.JSON(), nullable=True))
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_updated_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_meetings_attendee_start", ["attendee_email", "start"], unique=False)
    op.create_table(
        "meeting_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("meeting_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_meeting_audit_meeting", "meeting_audit", ["meeting_id", "id"], unique=False)
    op.create_index("ix_meeting_audit_record", "meeting_audit", ["connection", "external_id"], unique=False)
    op.create_table(
        "route_syncs",
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=100), primary_key=True),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("after_start", UTCDateTime(timezone=True), nullable=True),
        sa.Column("after_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("route_syncs")
    op.drop_index("ix_meeting_audit_record", table_name="meeting_audit")
    op.drop_index("ix_meeting_audit_meeting", table_name="meeting_audit")
    op.drop_table("meeting_audit")
    # Plain DROP COLUMN (SQLite 3.35+ and PostgreSQL), not batch mode: batch mode rebuilds the
    # table, and dropping the old `meetings` fails while links and events still reference it.
    op.drop_index("ix_meetings_attendee_start", table_name="meetings")
    for table, column in (("meetings", "source_updated_at"), ("links", "observed"), ("links", "rule")):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
