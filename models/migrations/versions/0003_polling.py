"""polling at volume (per-connection poll state)

Revision ID: 0003
Revises: 0002

Reserved in the chain so that work on separate branches can fill it without renumbering;
empty until that work lands.
"""

from __future__ import annotations

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
