"""The chain index as it was before schema versioning: listener bookkeeping and projections.

Revision 0001, the first. Databases made before versioning are stamped here once their tables
match (see marketplace.index.migrate).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

#: Token amounts as zero-padded decimal text (schema.Uint256), frozen here as stored.
UINT256 = sa.String(78)
#: Job states by name (schema.JobRow.state): a plain VARCHAR, no CHECK constraint.
STATE = sa.String(16)
ADDRESS = sa.String(42)
HASH = sa.String(66)
NAME = sa.String(32)


def _required(name: str, kind: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, kind, nullable=False)


def _optional(name: str, kind: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, kind, nullable=True)


def upgrade() -> None:
    op.create_table(
        "blocks",
        _required("chain_id", sa.Integer()),
        _required("number", sa.Integer()),
        _required("hash", HASH),
        sa.PrimaryKeyConstraint("chain_id", "number"),
    )
    op.create_table(
        "checkpoint",
        _required("chain_id", sa.Integer()),
        _required("market", ADDRESS),
        _required("registry", ADDRESS),
        _required("block_number", sa.Integer()),
        _optional("block_hash", HASH),
        sa.PrimaryKeyConstraint("chain_id"),
    )
    op.create_table(
        "processed_events",
        _required("chain_id", sa.Integer()),
        _required("tx_hash", HASH),
        _required("log_index", sa.Integer()),
        _required("block_number", sa.Integer()),
        _required("block_hash", HASH),
        _required("tx_index", sa.Integer()),
        _required("address", ADDRESS),
        _required("name", NAME),
        _required("topics", sa.JSON()),
        _required("data", sa.Text()),
        sa.PrimaryKeyConstraint("chain_id", "tx_hash", "log_index"),
    )
    op.create_index(
        "ix_processed_events_order", "processed_events", ["chain_id", "block_number", "log_index"]
    )
    op.create_table(
        "market_params",
        _required("id", sa.Integer()),
        _required("params", sa.JSON()),
        _required("block_number", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "profiles",
        _required("id", sa.Integer()),
        _required("descriptor", HASH),
        _required("block_number", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "jobs",
        _required("job_id", sa.Integer()),
        _required("requester", ADDRESS),
        _required("state", STATE),
        _required("spec_hash", HASH),
        _required("replicas", sa.Integer()),
        _required("units", sa.Integer()),
        _required("max_price_per_unit", UINT256),
        _required("profile", sa.Integer()),
        _required("min_vram_gib", sa.Integer()),
        _required("accept_window", sa.Integer()),
        _required("exec_window", sa.Integer()),
        _required("escrow", UINT256),
        _required("collateral_multiple", sa.Integer()),
        _required("collateral", UINT256),
        _required("fee_bps", sa.Integer()),
        _required("min_fee", UINT256),
        _required("premium_bps", sa.Integer()),
        _required("clearing_price", UINT256),
        _required("accept_by", sa.Integer()),
        _optional("deadline", sa.Integer()),
        _required("round", sa.Integer()),
        _required("audit_round", sa.Integer()),
        _required("seats", sa.Integer()),
        _optional("seed_block", sa.Integer()),
        _required("staffed", sa.Boolean()),
        _required("challenged", sa.Boolean()),
        _optional("audited", sa.Boolean()),
        _optional("digest", HASH),
        _optional("paid", UINT256),
        _optional("refunded", UINT256),
        _optional("fees", UINT256),
        _optional("burned", UINT256),
        _required("created_block", sa.Integer()),
        _optional("closed_block", sa.Integer()),
        _required("last_event", NAME),
        _required("last_block", sa.Integer()),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_jobs_requester", "jobs", ["requester"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_table(
        "job_participants",
        _required("job_id", sa.Integer()),
        _required("round", sa.Integer()),
        _required("index", sa.Integer()),
        _required("provider", ADDRESS),
        _required("verifier", sa.Boolean()),
        _required("audit_round", sa.Integer()),
        _required("price_per_unit", UINT256),
        _required("deadline", sa.Integer()),
        _required("collateral", UINT256),
        _required("assigned_block", sa.Integer()),
        _optional("commit_block", sa.Integer()),
        _optional("result_hash", HASH),
        _optional("revealed_digest", HASH),
        _optional("slashed", UINT256),
        _required("released", sa.Boolean()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"]),
        sa.PrimaryKeyConstraint("job_id", "round", "index"),
    )
    op.create_index("ix_job_participants_provider", "job_participants", ["provider"])
    op.create_table(
        "audit_rounds",
        _required("job_id", sa.Integer()),
        _required("job_round", sa.Integer()),
        _required("round", sa.Integer()),
        _required("seats", sa.Integer()),
        _required("seed_block", sa.Integer()),
        _required("reseeds", sa.Integer()),
        _required("staff_by", sa.Integer()),
        _optional("commit_by", sa.Integer()),
        _required("started_block", sa.Integer()),
        _optional("staffed_block", sa.Integer()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"]),
        sa.PrimaryKeyConstraint("job_id", "job_round", "round"),
    )
    op.create_table(
        "skipped_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _required("job_id", sa.Integer()),
        _required("operation", NAME),
        _required("error", sa.Text()),
        _required("reason", sa.Text()),
        _required("block_number", sa.Integer()),
        _required("tx_hash", HASH),
        _required("log_index", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_skipped_items_job", "skipped_items", ["job_id"])
    op.create_table(
        "job_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _required("job_id", sa.Integer()),
        _required("event", NAME),
        _required("state", STATE),
        _optional("account", ADDRESS),
        _optional("amount", UINT256),
        _required("block_number", sa.Integer()),
        _required("tx_hash", HASH),
        _required("log_index", sa.Integer()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_history_job", "job_history", ["job_id", "block_number", "log_index"])
    op.create_table(
        "providers",
        _required("address", ADDRESS),
        _required("registered", sa.Boolean()),
        _required("profile_mask", UINT256),
        _required("gpu_model", sa.String(64)),
        _required("vram_gib", sa.Integer()),
        _required("price_per_unit", UINT256),
        _required("endpoint", sa.Text()),
        _required("min_exec_window", sa.Integer()),
        _required("max_units", sa.BigInteger()),
        _required("stake", UINT256),
        _required("locked", UINT256),
        _required("unbonding", UINT256),
        _required("unbond_at", sa.Integer()),
        _required("jobs_done", sa.Integer()),
        _required("jobs_slashed", sa.Integer()),
        _optional("registered_block", sa.Integer()),
        _optional("last_block", sa.Integer()),
        _optional("last_heartbeat", sa.Double()),
        sa.PrimaryKeyConstraint("address"),
    )


def downgrade() -> None:
    for table in (
        "providers",
        "job_history",
        "skipped_items",
        "audit_rounds",
        "job_participants",
        "jobs",
        "profiles",
        "market_params",
        "processed_events",
        "checkpoint",
        "blocks",
    ):
        op.drop_table(table)
