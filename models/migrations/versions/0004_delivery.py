"""delivery throughput (subscriber breakers, batching)

Revision ID: 0004
Revises: 0003

Reserved in the chain so that work on separate branches can fill it without renumbering;
empty until that work lands.
"""

from __future__ import annotations

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
