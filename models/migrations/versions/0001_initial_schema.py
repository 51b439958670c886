"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bookingsync.models.columns


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "cursors",
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection"),
    )
    op.create_table(
        "deliveries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("due_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "subscription_id", name="uq_deliveries_event_subscription"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_claim", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_event_id"), ["event_id"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=150), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=150), nullable=False),
        sa.Column("until", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "meetings",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("start", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("end", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("attendee_email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("attendee_name", sa.Text(), nullable=True),
        sa.Column("attendee_phone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("conference_url", sa.Text(), nullable=True),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("booked", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("next_sequence", sa.Integer(), nullable=False),
        sa.Column("created_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meetings_attendee_email"), ["attendee_email"], unique=False)
        batch_op.create_index(batch_op.f("ix_meetings_start"), ["start"], unique=False)
        batch_op.create_index(batch_op.f("ix_meetings_status"), ["status"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("raw_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("created_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_connection"), ["connection"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantine_raw_hash"), ["raw_hash"], unique=False)

    op.create_table(
        "subscription_states",
        sa.Column("subscription_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("disabled_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_table(
        "webhook_receipts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("delivery_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("handled", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("records", sa.JSON(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("due_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection", "delivery_id", name="uq_receipts_connection_delivery"),
    )
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.create_index("ix_receipts_claim", ["status", "due_at"], unique=False)

    op.create_table(
        "events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("meeting_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("set_for", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("lease_until", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("created_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_claim", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_events_meeting_status", ["meeting_id", "status"], unique=False)

    op.create_table(
        "links",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("meeting_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("connection", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("source_updated_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("start", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=True),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("mirrored", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", bookingsync.models.columns.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection", "external_id", name="uq_links_connection_external"),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_index("ix_links_connection_scope", ["connection", "scope"], unique=False)
        batch_op.create_index(batch_op.f("ix_links_meeting_id"), ["meeting_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_links_meeting_id"))
        batch_op.drop_index("ix_links_connection_scope")

    op.drop_table("links")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_meeting_status")
        batch_op.drop_index("ix_events_claim")

    op.drop_table("events")
    with op.batch_alter_table("webhook_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_claim")

    op.drop_table("webhook_receipts")
    op.drop_table("subscription_states")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_raw_hash"))
        batch_op.drop_index(batch_op.f("ix_quarantine_connection"))

    op.drop_table("quarantine")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meetings_status"))
        batch_op.drop_index(batch_op.f("ix_meetings_start"))
        batch_op.drop_index(batch_op.f("ix_meetings_attendee_email"))

    op.drop_table("meetings")
    op.drop_table("leases")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_event_id"))
        batch_op.drop_index("ix_deliveries_claim")

    op.drop_table("deliveries")
    op.drop_table("cursors")
