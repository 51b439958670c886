"""identity: how each link was linked, meeting audit, stamps for the conflict policy, route syncs

Revision ID: 0010
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

revision = '0010'
down_revision = '0007'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN / CREATE INDEX (no batch table rebuild): SQLite would otherwise drop and
    # recreate `meetings`, which the foreign keys of links, events and intents forbid.
    op.add_column('links', sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
    op.add_column('links', sa.Column('observed', sa.JSON(), nullable=True))
    op.add_column('meetings', sa.Column('source_updated_at', UTCDateTime(timezone=True), nullable=True))
    op.create_index('ix_meetings_attendee_start', 'meetings', ['attendee_email', 'start'], unique=False)
    op.create_table(
        'meeting_audit',
        sa.Column('id', _ID, primary_key=True, autoincrement=True),
        sa.Column('meeting_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('at', UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_meeting_audit_meeting', 'meeting_audit', ['meeting_id', 'id'], unique=False)
    op.create_index('ix_meeting_audit_record', 'meeting_audit', ['connection', 'external_id'], unique=False)
    op.create_table(
        'route_syncs',
        sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=100), primary_key=True),
        sa.Column('sources', sa.Text(), nullable=False),
        sa.Column('after_start', UTCDateTime(timezone=True), nullable=True),
        sa.Column('after_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('started_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('route_syncs')
    op.drop_index('ix_meeting_audit_record', table_name='meeting_audit')
    op.drop_index('ix_meeting_audit_meeting', table_name='meeting_audit')
    op.drop_table('meeting_audit')
    op.drop_index('ix_meetings_attendee_start', table_name='meetings')
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch rebuild: see upgrade().
    op.drop_column('meetings', 'source_updated_at')
    op.drop_column('links', 'observed')
    op.drop_column('links', 'rule')
