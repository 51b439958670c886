"""ingest (ordering keys, identity)

Revision ID: 0005
Revises: 0004

Intentionally empty. The slot was reserved for ingest ordering keys (issues 6 and 13) while that work was on a branch,
and databases have since been stamped past it, so filling it now would never run on them; the
work landed as 0011_ordering_keys instead. Kept so that the chain, and every stamped database, stays valid.
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
