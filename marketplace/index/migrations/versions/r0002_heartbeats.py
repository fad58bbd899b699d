"""Providers' latest heartbeats in the index, so relayers sharing a database share liveness.

Revision 0002, after 0001. One row per provider, updated in place (marketplace.index.liveness).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
