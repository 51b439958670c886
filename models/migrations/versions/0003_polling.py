"""polling at volume (per-connection poll state)

Revision ID: 0003
Revises: 0002

Intentionally empty. The slot was reserved for polling at volume (issue 12) while that work was on a branch,
and databases have since been stamped past it, so filling it now would never run on them; the
work landed as 0009_poll_states instead. Kept so that the chain, and every stamped database, stays valid.
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
