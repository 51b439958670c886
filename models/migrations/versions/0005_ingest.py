"""ingest (ordering keys, identity)

Revision ID: 0005
Revises: 0004

Reserved in the chain so that work on separate branches can fill it without renumbering;
empty until that work lands.
"""

from __future__ import annotations

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
