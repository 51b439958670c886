"""consumer API and event feed

Revision ID: 0006
Revises: 0005

* `events.feed_position`: an event's place in the feed, assigned at publish time in commit order
  (worker/feed.py); events published before this migration are numbered in the order they were
  published, so the feed starts with the history already there.
* `feed_counter`: the single row that hands out positions.
* `events.published_at` and `deliveries (subscription_id, status)` indexes: replay from a time,
  re-enabling a subscription and the per-subscription backlog read them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FEED = "events"


def upgrade() -> None:
    op.create_table(
        "feed_counter",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_position", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_feed_position"), ["feed_position"], unique=True)
        batch_op.create_index(batch_op.f("ix_events_published_at"), ["published_at"], unique=False)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_subscription_status", ["subscription_id", "status"], unique=False
        )

    # Number what was published already, in publishing order (ties by id); window functions exist on
    # SQLite >= 3.25 and PostgreSQL alike.
    op.execute(
        sa.text(
            "UPDATE events SET feed_position = (SELECT numbered.position FROM "
            "(SELECT id, ROW_NUMBER() OVER (ORDER BY published_at, id) AS position FROM events "
            " WHERE status = 'published') AS numbered WHERE numbered.id = events.id) "
            "WHERE status = 'published'"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO feed_counter (name, value) SELECT :name, COALESCE(MAX(feed_position), 0) FROM events"
        ).bindparams(name=FEED)
    )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_subscription_status")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_published_at"))
        batch_op.drop_index(batch_op.f("ix_events_feed_position"))
        batch_op.drop_column("feed_position")
    op.drop_table("feed_counter")
