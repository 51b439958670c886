"""safe writes (intents for provider writes)

Revision ID: 0002
Revises: 0001

Reserved in the chain so that work on separate branches can fill it without renumbering;
empty until that work lands.
"""

from __future__ import annotations

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
