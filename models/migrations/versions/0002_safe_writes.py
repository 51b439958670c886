"""safe writes (intents for provider writes)

Revision ID: 0002
Revises: 0001

Issue 15: `write_intents`, one row per write to a route target, committed before the call.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bookingsync.models.columns

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, bookingsync.models.columns.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "write_intents",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("meeting_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("alias", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        _time("start", False),
        _time("end", False),
        sa.Column("attendee_email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _time("calling_until", True),
        _time("created_at", False),
        _time("updated_at", False),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    with op.batch_alter_table("write_intents", schema=None) as batch_op:
        batch_op.create_index("ix_write_intents_target", ["meeting_id", "connection"], unique=False)
        batch_op.create_index("ix_write_intents_connection_state", ["connection", "state"], unique=False)
        batch_op.create_index(
            "ix_write_intents_connection_external", ["connection", "external_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("write_intents", schema=None) as batch_op:
        batch_op.drop_index("ix_write_intents_connection_external")
        batch_op.drop_index("ix_write_intents_connection_state")
        batch_op.drop_index("ix_write_intents_target")
    op.drop_table("write_intents")
