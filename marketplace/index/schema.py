"""The relayer database's tables: the listener's bookkeeping (checkpoint, event log, recent
block hashes) and the projections the folding keeps (jobs, their participants, audit rounds,
skipped items and state history, providers, profiles, market parameters).

Token amounts can exceed 64 bits, so they are stored as zero-padded decimal text (`Uint256`),
which sorts numerically in every database.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from marketplace.matching.matcher import OpenJob, ProviderView
from marketplace.protocol.client import UNLIMITED_UNITS, JobState
from marketplace.protocol.events import RawLog

_UINT256_DIGITS = 78  # len(str(2**256 - 1))


class Uint256(TypeDecorator[int]):
    """A non-negative integer up to 2**256 - 1, as zero-padded decimal text."""

    impl = String(_UINT256_DIGITS)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if value < 0:
            raise ValueError(f"Uint256 column got negative {value}")
        return str(value).zfill(_UINT256_DIGITS)

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class Base(DeclarativeBase):
    pass


# ---------------------------------------------------------------------- listener bookkeeping


class Checkpoint(Base):
    """The last block whose events are all applied, and the deployment the store follows."""

    __tablename__ = "checkpoint"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_address: Mapped[str] = mapped_column("market", String(42))
    registry_address: Mapped[str] = mapped_column("registry", String(42))
    block_number: Mapped[int]
    #: None before the first chunk (the block before the deployment was never read).
    block_hash: Mapped[str | None] = mapped_column(String(66))


class ProcessedEvent(Base):
    """Every applied event with its raw log: the idempotency key and the replay source."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_order", "chain_id", "block_number", "log_index"),)

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tx_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int]
    block_hash: Mapped[str] = mapped_column(String(66))
    tx_index: Mapped[int]
    address: Mapped[str] = mapped_column(String(42))
    name: Mapped[str] = mapped_column(String(32))
    topics: Mapped[list[str]] = mapped_column(JSON)
    data: Mapped[str] = mapped_column(Text)

    def raw(self) -> RawLog:
        return RawLog(
            address=self.address,
            topics=tuple(self.topics),
            data=self.data,
            block_number=self.block_number,
            block_hash=self.block_hash,
            tx_hash=self.tx_hash,
            tx_index=self.tx_index,
            log_index=self.log_index,
        )


class Block(Base):
    """Hashes of recent processed blocks, to find the common ancestor after a reorg."""

    __tablename__ = "blocks"

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(66))


# ---------------------------------------------------------------------- projections


class MarketParamsRow(Base):
    """The JobMarket's current parameters (jobs snapshot the collateral multiple, fee, fee floor
    and audit premium)."""

    __tablename__ = "market_params"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    params: Mapped[dict[str, int]] = mapped_column(JSON)
    block_number: Mapped[int]


class ProfileRow(Base):
    """A determinism profile defined in the ProviderRegistry."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    descriptor: Mapped[str] = mapped_column(String(66))
    block_number: Mapped[int]


#: States a job never leaves.
TERMINAL_STATES = (JobState.SETTLED, JobState.REFUNDED, JobState.EXPIRED)


class JobRow(Base):
    """A job as its events describe it."""

    __tablename__ = "jobs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester: Mapped[str] = mapped_column(String(42), index=True)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, native_enum=False, length=16), index=True
    )
    spec_hash: Mapped[str] = mapped_column(String(66))
    replicas: Mapped[int]
    units: Mapped[int]
    max_price_per_unit: Mapped[int] = mapped_column(Uint256)
    profile: Mapped[int]
    min_vram_gib: Mapped[int]
    accept_window: Mapped[int]
    exec_window: Mapped[int]
    escrow: Mapped[int] = mapped_column(Uint256)
    #: Collateral multiple snapshotted at creation.
    collateral_multiple: Mapped[int] = mapped_column(Integer, default=0)
    #: Collateral each participant locks: collateral multiple x units x clearing price (0 until
    #: executors are assigned).
    collateral: Mapped[int] = mapped_column(Uint256)
    fee_bps: Mapped[int]
    #: Fee floor and audit premium (bps of executor pay; replicas = 1 only) snapshotted at creation.
    min_fee: Mapped[int] = mapped_column(Uint256, default=0)
    premium_bps: Mapped[int] = mapped_column(Integer, default=0)
    #: Highest ask among the current executors (0 while open).
    clearing_price: Mapped[int] = mapped_column(Uint256, default=0)
    #: Accept deadline of the current opening (creation or reopen).
    accept_by: Mapped[int]
    #: The current state's deadline when an event carries it (accept, commit, verifier commit,
    #: reveal); None while Committed or awaiting verifiers, whose deadlines the contract derives
    #: from block time and parameters (read `Market.job` for them).
    deadline: Mapped[int | None]
    #: 0, then 1 after a no-show reopen: participants are numbered per round.
    round: Mapped[int] = mapped_column(Integer, default=0)
    #: Current audit round (0 before any audit, 1, then 2 after an escalation), its seats, the
    #: block seeding its verifier draw (or a re-seeded audit draw) and whether it is staffed.
    audit_round: Mapped[int] = mapped_column(Integer, default=0)
    seats: Mapped[int] = mapped_column(Integer, default=0)
    seed_block: Mapped[int | None]
    staffed: Mapped[bool] = mapped_column(Boolean, default=False)
    challenged: Mapped[bool] = mapped_column(Boolean, default=False)
    #: None before an audit draw, else whether it selected the job.
    audited: Mapped[bool | None]
    #: Majority digest of a resolved job (JobClosed), None before close.
    digest: Mapped[str | None] = mapped_column(String(66))
    paid: Mapped[int | None] = mapped_column(Uint256)
    refunded: Mapped[int | None] = mapped_column(Uint256)
    fees: Mapped[int | None] = mapped_column(Uint256)
    burned: Mapped[int | None] = mapped_column(Uint256)
    created_block: Mapped[int]
    closed_block: Mapped[int | None]
    last_event: Mapped[str] = mapped_column(String(32))
    last_block: Mapped[int]

    def open_job(self, exclude: frozenset[str] = frozenset()) -> OpenJob:
        """What the matcher needs of this job (its requirements as created), barring `exclude`."""
        return OpenJob(
            job_id=self.job_id,
            profile=self.profile,
            units=self.units,
            max_price_per_unit=self.max_price_per_unit,
            replicas=self.replicas,
            min_vram_gib=self.min_vram_gib,
            collateral_multiple=self.collateral_multiple,  # snapshotted at creation
            exec_window=self.exec_window,
            requester=self.requester,
            exclude=exclude,
        )


class ParticipantRow(Base):
    """An executor (index < replicas) or verifier of one round of a job."""

    __tablename__ = "job_participants"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    verifier: Mapped[bool]
    #: 0 for an executor, else the audit round the verifier was drawn for (1 or 2).
    audit_round: Mapped[int] = mapped_column(Integer, default=0)
    price_per_unit: Mapped[int] = mapped_column(Uint256)
    deadline: Mapped[int]
    collateral: Mapped[int] = mapped_column(Uint256)
    assigned_block: Mapped[int]
    commit_block: Mapped[int | None]
    result_hash: Mapped[str | None] = mapped_column(String(66))
    revealed_digest: Mapped[str | None] = mapped_column(String(66))
    slashed: Mapped[int | None] = mapped_column(Uint256)
    #: The collateral was released: the job closed without slashing this participant, or the
    #: executor handed its seat back (ProviderReleased: its fee was slashed, the rest unlocked;
    #: the amount is in the job's history).
    released: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditRoundRow(Base):
    """One audit round of a job: its verifier seats drawn on-chain and how the draw went."""

    __tablename__ = "audit_rounds"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    #: The job's no-show reopen round (JobRow.round) the audit belongs to.
    job_round: Mapped[int] = mapped_column(Integer, primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    seats: Mapped[int]
    #: Block whose hash seeds the draw (moved by each AuditReseeded).
    seed_block: Mapped[int]
    reseeds: Mapped[int] = mapped_column(Integer, default=0)
    #: Verifiers must be drawn by this time, else the job ends with no verdict.
    staff_by: Mapped[int]
    #: Commit deadline of the verifiers once every seat is filled (None before).
    commit_by: Mapped[int | None]
    started_block: Mapped[int]
    staffed_block: Mapped[int | None]


class SkippedRow(Base):
    """An item a batched call skipped (BatchItemSkipped), with its decoded reason."""

    __tablename__ = "skipped_items"
    __table_args__ = (Index("ix_skipped_items_job", "job_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int]
    #: The single-item function that reverted, e.g. "staffAudit".
    operation: Mapped[str] = mapped_column(String(32))
    #: The decoded custom error's name (or the raw reason in hex).
    error: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    block_number: Mapped[int]
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int]


class HistoryRow(Base):
    """One event of a job and the state it left the job in."""

    __tablename__ = "job_history"
    __table_args__ = (Index("ix_job_history_job", "job_id", "block_number", "log_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int]
    event: Mapped[str] = mapped_column(String(32))
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16))
    #: The provider, requester or credited account the event names, if any.
    account: Mapped[str | None] = mapped_column(String(42))
    amount: Mapped[int | None] = mapped_column(Uint256)
    block_number: Mapped[int]
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int]


class ProviderRow(Base):
    """A provider as registry and market events describe it, plus its last heartbeat."""

    __tablename__ = "providers"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    registered: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_mask: Mapped[int] = mapped_column(Uint256, default=0)
    gpu_model: Mapped[str] = mapped_column(String(64), default="")
    vram_gib: Mapped[int] = mapped_column(Integer, default=0)
    price_per_unit: Mapped[int] = mapped_column(Uint256, default=0)
    endpoint: Mapped[str] = mapped_column(Text, default="")
    #: Shortest exec window and most units per job the provider accepts (its terms).
    min_exec_window: Mapped[int] = mapped_column(Integer, default=0)
    max_units: Mapped[int] = mapped_column(BigInteger, default=UNLIMITED_UNITS)
    stake: Mapped[int] = mapped_column(Uint256, default=0)
    #: Collateral locked by running jobs, derived from assignments, slashes and closes.
    locked: Mapped[int] = mapped_column(Uint256, default=0)
    unbonding: Mapped[int] = mapped_column(Uint256, default=0)
    #: Unix time the unbonding stake unlocks; 0 when not unbonding.
    unbond_at: Mapped[int] = mapped_column(Integer, default=0)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    jobs_slashed: Mapped[int] = mapped_column(Integer, default=0)
    registered_block: Mapped[int | None]
    last_block: Mapped[int | None]
    #: Unix time of the last signed heartbeat (written by the API; not chain data).
    last_heartbeat: Mapped[float | None]

    @property
    def free_stake(self) -> int:
        return max(self.stake - self.locked - self.unbonding, 0)

    def view(self, *, live: bool, load: int = 0) -> ProviderView:
        """What the matcher knows of this provider, with its liveness and load as given."""
        return ProviderView(
            address=self.address,
            profile_mask=self.profile_mask,
            vram_gib=self.vram_gib,
            price_per_unit=self.price_per_unit,
            free_stake=self.free_stake,
            unbonding=self.unbond_at != 0,
            registered=self.registered,
            live=live,
            jobs_done=self.jobs_done,
            jobs_slashed=self.jobs_slashed,
            load=load,
            min_exec_window=self.min_exec_window,
            max_units=self.max_units,
        )


class HeartbeatRow(Base):
    """The latest verified heartbeat of a provider (not chain data: the API writes it, one row
    per provider updated in place, so relayers sharing the database share liveness)."""

    __tablename__ = "heartbeats"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    #: The heartbeat's own timestamp (unix seconds); a row only moves forward.
    timestamp: Mapped[int] = mapped_column(BigInteger)
    #: The heartbeat's canonical JSON (marketplace.protocol.heartbeat.Heartbeat).
    message: Mapped[str] = mapped_column(Text)


#: The tables events derive (emptied and refilled by a rebuild), children first.
PROJECTIONS: tuple[type[Base], ...] = (
    HistoryRow,
    SkippedRow,
    AuditRoundRow,
    ParticipantRow,
    JobRow,
    ProfileRow,
    MarketParamsRow,
)
