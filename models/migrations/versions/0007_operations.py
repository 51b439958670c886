"""operations (config, retention, metrics)

Revision ID: 0007
Revises: 0006

Reserved in the chain so that work on separate branches can fill it without renumbering;
empty until that work lands.
"""

from __future__ import annotations

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
