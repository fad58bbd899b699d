"""The provider ledger as it was before schema versioning: one row per duty.

Revision 0001, the first. Ledgers made before versioning are stamped here once their table
matches (see marketplace.index.migrate).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_duties",
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        # DutyStatus values as plain text, no CHECK constraint.
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec_hash", sa.String(66), nullable=False),
        sa.Column("digest", sa.String(66), nullable=True),
        sa.Column("artifact", sa.String(64), nullable=True),
        sa.Column("failure", sa.String(64), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("commit_tx", sa.String(66), nullable=True),
        sa.Column("reveal_tx", sa.String(66), nullable=True),
        sa.Column("notice_posted", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_provider_duties_job_id", "provider_duties", ["job_id"])
    op.create_index("ix_provider_duties_status", "provider_duties", ["status"])


def downgrade() -> None:
    op.drop_table("provider_duties")
