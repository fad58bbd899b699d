"""The relayer's database: the listener's checkpoint and the projections the API and the matcher
read (jobs, their participants and state history, providers, profiles).

Any SQLAlchemy URL works; the default is a SQLite file. One store follows one deployment on one
chain (`bind` records it and refuses another).

How the store stays consistent with the chain:

- `processed_events` is the log of every applied event, keyed by (chain id, tx hash, log index),
  with its raw topics and data. An event already there is skipped, so applying a range twice
  changes nothing.
- `apply` writes a chunk of events, the recent block hashes and the new checkpoint in one
  transaction: after a crash the store is at the previous checkpoint or the new one, never in
  between.
- `rollback(n)` undoes every block above `n` after a reorg. Projections are updated in place
  (a job row changes with every event), so deleting "rows of blocks > n" would not undo the
  updates those blocks made to older rows. Instead rollback deletes the events, block hashes and
  history above `n` and rebuilds the projections by replaying the remaining events in chain
  order, in the same transaction. Reorgs are rare and shallow; a replay costs one pass over the
  event log, which keeps the rollback obviously correct. Provider heartbeats are not chain data:
  they survive a rebuild.

Token amounts can exceed 64 bits, so they are stored as zero-padded decimal text (`Uint256`),
which sorts numerically in every database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    Engine,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from marketplace.index import events as ev
from marketplace.index.events import ChainEvent, Decoder, RawLog
from marketplace.matching.matcher import OpenJob, ProviderView
from marketplace.protocol.client import UNLIMITED_UNITS, JobState
from marketplace.protocol.deployment import Deployment, MarketParams
from marketplace.protocol.errors import ConfigError

log = logging.getLogger(__name__)

#: Where the relayer keeps its database unless told otherwise.
DEFAULT_URL = "sqlite:///relayer.sqlite3"

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


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


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


_TERMINAL_STATES = (JobState.SETTLED, JobState.REFUNDED, JobState.EXPIRED)


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


_PROJECTIONS: tuple[type[Base], ...] = (
    HistoryRow,
    SkippedRow,
    AuditRoundRow,
    ParticipantRow,
    JobRow,
    ProfileRow,
    MarketParamsRow,
)


@dataclass(frozen=True)
class CheckpointView:
    chain_id: int
    block_number: int
    block_hash: str | None


# ---------------------------------------------------------------------- the store


class Store:
    """The relayer database at `url` (tables are created when missing)."""

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, echo=echo)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session whose rows stay usable after it closes."""
        with self._sessions() as s:
            yield s

    # ------------------------------------------------------------------ listener side

    def bind(self, deployment: Deployment) -> CheckpointView:
        """Ties the store to `deployment` (starting just before its first block) or checks that
        it already follows it; returns the checkpoint."""
        market = to_checksum_address(deployment.market)
        registry = to_checksum_address(deployment.registry)
        with self._sessions.begin() as s:
            rows = list(s.scalars(select(Checkpoint)))
            for row in rows:
                if (row.chain_id, row.market_address, row.registry_address) != (
                    deployment.chain_id,
                    market,
                    registry,
                ):
                    raise ConfigError(
                        f"{self.url} follows the market {row.market_address} on chain "
                        f"{row.chain_id}, not {market} on chain {deployment.chain_id}; "
                        "use another database file"
                    )
            if not rows:
                s.add(
                    Checkpoint(
                        chain_id=deployment.chain_id,
                        market_address=market,
                        registry_address=registry,
                        block_number=deployment.block - 1,
                        block_hash=None,
                    )
                )
        checkpoint = self.checkpoint(deployment.chain_id)
        assert checkpoint is not None
        return checkpoint

    def checkpoint(self, chain_id: int) -> CheckpointView | None:
        with self._sessions() as s:
            row = s.get(Checkpoint, chain_id)
            if row is None:
                return None
            return CheckpointView(row.chain_id, row.block_number, row.block_hash)

    def recent_blocks(self, chain_id: int) -> list[tuple[int, str]]:
        """Stored (number, hash) pairs, newest first."""
        with self._sessions() as s:
            rows = s.execute(
                select(Block.number, Block.hash)
                .where(Block.chain_id == chain_id)
                .order_by(Block.number.desc())
            )
            return [(int(n), str(h)) for n, h in rows]

    def apply(
        self,
        chain_id: int,
        events: Sequence[ChainEvent],
        *,
        block_number: int,
        block_hash: str,
        blocks: Mapping[int, str] | None = None,
        keep_blocks_from: int | None = None,
    ) -> int:
        """Applies `events` (in chain order) not applied before, records `blocks` (number ->
        hash), prunes stored blocks below `keep_blocks_from` and moves the checkpoint to
        (`block_number`, `block_hash`), all in one transaction. Returns how many were new."""
        applied = 0
        with self._sessions.begin() as s:
            checkpoint = s.get(Checkpoint, chain_id)
            if checkpoint is None:
                raise ConfigError(f"the store is not bound to chain {chain_id}; call bind first")
            for e in sorted(events, key=lambda e: (e.block_number, e.log_index)):
                if s.get(ProcessedEvent, (chain_id, e.tx_hash, e.log_index)) is not None:
                    continue
                s.add(_processed(chain_id, e))
                _apply(s, e)
                applied += 1
            for number, hash_ in (blocks or {}).items():
                s.merge(Block(chain_id=chain_id, number=number, hash=hash_))
            s.merge(Block(chain_id=chain_id, number=block_number, hash=block_hash))
            if keep_blocks_from is not None:
                s.execute(
                    delete(Block).where(Block.chain_id == chain_id, Block.number < keep_blocks_from)
                )
            checkpoint.block_number = block_number
            checkpoint.block_hash = block_hash
        return applied

    def rollback(
        self, chain_id: int, block_number: int, block_hash: str | None, decoder: Decoder
    ) -> int:
        """Forgets everything from blocks above `block_number` and sets the checkpoint to it
        (`block_hash` is its hash on the chain now); projections are rebuilt by replaying the
        events that remain, with `decoder`. Returns the number of events removed."""
        with self._sessions.begin() as s:
            orphaned = (
                ProcessedEvent.chain_id == chain_id,
                ProcessedEvent.block_number > block_number,
            )
            removed = s.scalar(select(func.count()).select_from(ProcessedEvent).where(*orphaned))
            s.execute(delete(ProcessedEvent).where(*orphaned))
            s.execute(delete(Block).where(Block.chain_id == chain_id, Block.number > block_number))
            checkpoint = s.get(Checkpoint, chain_id)
            if checkpoint is None:
                raise ConfigError(f"the store is not bound to chain {chain_id}; call bind first")
            checkpoint.block_number = block_number
            checkpoint.block_hash = block_hash
            _rebuild(s, chain_id, decoder)
        log.warning(
            "rolled back to block %d: %d events from orphaned blocks removed", block_number, removed
        )
        return int(removed or 0)

    def rebuild(self, chain_id: int, decoder: Decoder) -> None:
        """Recomputes every projection from the processed events (e.g. after a schema change)."""
        with self._sessions.begin() as s:
            _rebuild(s, chain_id, decoder)

    # ------------------------------------------------------------------ API side

    def record_heartbeat(self, address: str, at: float) -> None:
        """Records a verified heartbeat of `address` at unix time `at`."""
        with self._sessions.begin() as s:
            row = _provider(s, address)
            row.last_heartbeat = max(at, row.last_heartbeat or 0.0)

    def processed_count(self, chain_id: int) -> int:
        with self._sessions() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(ProcessedEvent)
                    .where(ProcessedEvent.chain_id == chain_id)
                )
                or 0
            )

    def job(self, job_id: int) -> JobRow | None:
        with self._sessions() as s:
            return s.get(JobRow, job_id)

    def jobs(self, state: JobState | None = None) -> list[JobRow]:
        """Jobs by id, optionally only those in `state`."""
        query = select(JobRow).order_by(JobRow.job_id)
        if state is not None:
            query = query.where(JobRow.state == state)
        with self._sessions() as s:
            return list(s.scalars(query))

    def live_job_ids(self) -> list[int]:
        """Ids of the jobs not in a terminal state, by id: read from the state index, so the
        cost follows the live jobs, not every job ever seen."""
        query = (
            select(JobRow.job_id)
            .where(JobRow.state.not_in(_TERMINAL_STATES))
            .order_by(JobRow.job_id)
        )
        with self._sessions() as s:
            return list(s.scalars(query))

    def participants(self, job_id: int, round_: int | None = None) -> list[ParticipantRow]:
        """Participants of the job's current round (or of `round_`), by index."""
        with self._sessions() as s:
            if round_ is None:
                job = s.get(JobRow, job_id)
                if job is None:
                    return []
                round_ = job.round
            return list(
                s.scalars(
                    select(ParticipantRow)
                    .where(ParticipantRow.job_id == job_id, ParticipantRow.round == round_)
                    .order_by(ParticipantRow.index)
                )
            )

    def all_participants(self, job_id: int) -> list[ParticipantRow]:
        """Every participant of the job's current opening: executors, then the verifiers of
        every audit round, by index."""
        return self.participants(job_id)

    def audit_rounds(self, job_id: int) -> list[AuditRoundRow]:
        """The audit rounds of the job's current opening, in order."""
        with self._sessions() as s:
            job = s.get(JobRow, job_id)
            if job is None:
                return []
            return list(
                s.scalars(
                    select(AuditRoundRow)
                    .where(AuditRoundRow.job_id == job_id, AuditRoundRow.job_round == job.round)
                    .order_by(AuditRoundRow.round)
                )
            )

    def skipped(self, job_id: int | None = None) -> list[SkippedRow]:
        """Items batched calls skipped (of one job, or all), in chain order."""
        query = select(SkippedRow).order_by(SkippedRow.block_number, SkippedRow.log_index)
        if job_id is not None:
            query = query.where(SkippedRow.job_id == job_id)
        with self._sessions() as s:
            return list(s.scalars(query))

    def history(self, job_id: int) -> list[HistoryRow]:
        """The job's events in chain order."""
        with self._sessions() as s:
            return list(
                s.scalars(
                    select(HistoryRow)
                    .where(HistoryRow.job_id == job_id)
                    .order_by(HistoryRow.block_number, HistoryRow.log_index)
                )
            )

    def provider(self, address: str) -> ProviderRow | None:
        with self._sessions() as s:
            return s.get(ProviderRow, to_checksum_address(address))

    def providers(self, registered_only: bool = True) -> list[ProviderRow]:
        query = select(ProviderRow).order_by(ProviderRow.address)
        if registered_only:
            query = query.where(ProviderRow.registered.is_(True))
        with self._sessions() as s:
            return list(s.scalars(query))

    def profiles(self) -> dict[int, str]:
        with self._sessions() as s:
            return {r.id: r.descriptor for r in s.scalars(select(ProfileRow))}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the listener writes; wait on a lock instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _processed(chain_id: int, e: ChainEvent) -> ProcessedEvent:
    return ProcessedEvent(
        chain_id=chain_id,
        tx_hash=e.tx_hash,
        log_index=e.log_index,
        block_number=e.block_number,
        block_hash=e.block_hash,
        tx_index=e.raw.tx_index,
        address=e.raw.address,
        name=e.name,
        topics=list(e.raw.topics),
        data=e.raw.data,
    )


def _rebuild(s: Session, chain_id: int, decoder: Decoder) -> None:
    for table in _PROJECTIONS:
        s.execute(delete(table))
    # Heartbeats are not chain data: keep those rows, reset what events derive.
    s.execute(delete(ProviderRow).where(ProviderRow.last_heartbeat.is_(None)))
    for row in s.scalars(select(ProviderRow)):
        _reset(row)
    s.flush()
    processed = s.scalars(
        select(ProcessedEvent)
        .where(ProcessedEvent.chain_id == chain_id)
        .order_by(ProcessedEvent.block_number, ProcessedEvent.log_index)
    )
    for record in processed:
        decoded = decoder.decode(record.raw())
        if decoded is None:  # the decoder no longer follows it
            log.warning("replay skips %s at %s:%d", record.name, record.tx_hash, record.log_index)
            continue
        _apply(s, decoded)


# ---------------------------------------------------------------------- applying one event


def _provider(s: Session, address: str) -> ProviderRow:
    address = to_checksum_address(address)
    row = s.get(ProviderRow, address)
    if row is None:
        row = ProviderRow(address=address)
        _reset(row)
        s.add(row)
    return row


def _reset(row: ProviderRow) -> None:
    """Everything events derive back to its value before any event (the heartbeat stays)."""
    row.registered = False
    row.profile_mask = 0
    row.gpu_model = ""
    row.vram_gib = 0
    row.price_per_unit = 0
    row.endpoint = ""
    row.min_exec_window = 0
    row.max_units = UNLIMITED_UNITS
    row.stake = 0
    row.locked = 0
    row.unbonding = 0
    row.unbond_at = 0
    row.jobs_done = 0
    row.jobs_slashed = 0
    row.registered_block = None
    row.last_block = None


def _participant(s: Session, job: JobRow, provider: str) -> ParticipantRow | None:
    return s.scalar(
        select(ParticipantRow).where(
            ParticipantRow.job_id == job.job_id,
            ParticipantRow.round == job.round,
            ParticipantRow.provider == provider,
        )
    )


def _round(s: Session, job: JobRow) -> list[ParticipantRow]:
    return list(
        s.scalars(
            select(ParticipantRow)
            .where(ParticipantRow.job_id == job.job_id, ParticipantRow.round == job.round)
            .order_by(ParticipantRow.index)
        )
    )


def _params(s: Session) -> MarketParams:
    row = s.get(MarketParamsRow, 1)
    if row is None:
        # The constructor's ParamsSet is in the deployment's blocks; without it, assume defaults.
        log.warning("no ParamsSet seen yet; assuming default market parameters")
        return MarketParams()
    return MarketParams(**row.params)


def _history(
    s: Session,
    job: JobRow,
    e: ChainEvent,
    account: str | None = None,
    amount: int | None = None,
) -> None:
    job.last_event = e.name
    job.last_block = e.block_number
    s.add(
        HistoryRow(
            job_id=job.job_id,
            event=e.name,
            state=job.state,
            account=account,
            amount=amount,
            block_number=e.block_number,
            tx_hash=e.tx_hash,
            log_index=e.log_index,
        )
    )


def _apply(s: Session, e: ChainEvent) -> None:
    """Updates the projections for one event (the caller records it as processed)."""
    if isinstance(e, ev.JobCreated):
        _job_created(s, e)
        return
    if isinstance(e, ev.BatchItemSkipped):
        s.add(
            SkippedRow(
                job_id=e.job_id,
                operation=e.operation_name,
                error=e.error,
                reason=_hex(e.reason),
                block_number=e.block_number,
                tx_hash=e.tx_hash,
                log_index=e.log_index,
            )
        )
        skipped_job = s.get(JobRow, e.job_id)
        if skipped_job is not None:
            _history(s, skipped_job, e)
        return
    job_id = getattr(e, "job_id", None)
    if isinstance(job_id, int) and not isinstance(e, ev.Slashed):
        job = s.get(JobRow, job_id)
        if job is None:
            log.warning("%s for unknown job %d at block %d skipped", e.name, job_id, e.block_number)
            return
        _job_event(s, job, e)
        return
    _registry_event(s, e)


def _job_created(s: Session, e: ev.JobCreated) -> None:
    params = _params(s)
    r = e.request
    job = JobRow(
        job_id=e.job_id,
        requester=e.requester,
        state=JobState.OPEN,
        spec_hash=_hex(e.spec_hash),
        replicas=r.replicas,
        units=r.units,
        max_price_per_unit=r.max_price_per_unit,
        profile=r.profile,
        min_vram_gib=r.min_vram_gib,
        accept_window=r.accept_window,
        exec_window=r.exec_window,
        escrow=e.escrow,
        collateral_multiple=params.collateral_multiple,
        collateral=0,
        fee_bps=params.fee_bps,
        min_fee=params.min_fee,
        premium_bps=params.premium_bps(r.replicas),
        clearing_price=0,
        accept_by=e.accept_by,
        deadline=e.accept_by,
        round=0,
        audit_round=0,
        seats=0,
        seed_block=None,
        staffed=False,
        challenged=False,
        created_block=e.block_number,
        last_event=e.name,
        last_block=e.block_number,
    )
    s.add(job)
    _history(s, job, e, account=e.requester, amount=e.escrow)


def _job_event(s: Session, job: JobRow, e: ChainEvent) -> None:
    account: str | None = None
    amount: int | None = None
    if isinstance(e, ev.ProviderAssigned):
        account = e.provider
        verifier = e.index >= job.replicas
        if not verifier and e.index == 0:
            # Every executor is assigned at the clearing price; collateral follows it.
            job.clearing_price = e.price_per_unit
            job.collateral = job.collateral_multiple * job.units * e.price_per_unit
        s.add(
            ParticipantRow(
                job_id=job.job_id,
                round=job.round,
                index=e.index,
                provider=e.provider,
                verifier=verifier,
                audit_round=job.audit_round if verifier else 0,
                price_per_unit=e.price_per_unit,
                deadline=e.deadline,
                collateral=job.collateral,
                assigned_block=e.block_number,
                released=False,
            )
        )
        provider = _provider(s, e.provider)
        provider.locked += job.collateral
        provider.last_block = e.block_number
        if not verifier:
            job.state = JobState.ASSIGNED
        job.deadline = e.deadline
    elif isinstance(e, ev.ResultCommitted):
        account = e.provider
        participant = _participant(s, job, e.provider)
        if participant is not None:
            participant.commit_block = e.block_number
            participant.result_hash = _hex(e.result_hash)
        if job.state == JobState.ASSIGNED and job.replicas == 1:
            job.state = JobState.COMMITTED  # the challenge window ends at commit time + window
            job.deadline = None
    elif isinstance(e, ev.AuditDrawn):
        job.audited = e.audited
    elif isinstance(e, ev.AuditStarted):
        job.state = JobState.AUDITING
        job.audit_round = e.round
        job.seats = e.seats
        job.seed_block = e.seed_block
        job.staffed = False
        job.deadline = e.staff_by
        s.merge(
            AuditRoundRow(
                job_id=job.job_id,
                job_round=job.round,
                round=e.round,
                seats=e.seats,
                seed_block=e.seed_block,
                reseeds=0,
                staff_by=e.staff_by,
                commit_by=None,
                started_block=e.block_number,
                staffed_block=None,
            )
        )
    elif isinstance(e, ev.AuditReseeded):
        job.seed_block = e.seed_block
        current = _audit_round(s, job)
        if job.state == JobState.AUDITING and current is not None:
            current.seed_block = e.seed_block
            current.reseeds += 1
    elif isinstance(e, ev.AuditStaffed):
        job.staffed = True
        job.deadline = e.deadline
        current = _audit_round(s, job)
        if current is not None:
            current.commit_by = e.deadline
            current.staffed_block = e.block_number
    elif isinstance(e, ev.JobChallenged):
        account, amount = e.requester, e.bond
        job.challenged = True
        job.state = JobState.AUDITING
    elif isinstance(e, ev.RevealStarted):
        job.state = JobState.REVEALING
        job.deadline = e.deadline
    elif isinstance(e, ev.ResultRevealed):
        account = e.provider
        participant = _participant(s, job, e.provider)
        if participant is not None:
            participant.revealed_digest = _hex(e.digest)
    elif isinstance(e, ev.ProviderSlashed):
        account, amount = e.provider, e.amount
        participant = _participant(s, job, e.provider)
        if participant is not None:
            participant.slashed = e.amount
    elif isinstance(e, ev.ProviderReleased):
        account, amount = e.provider, e.fee
        participant = _participant(s, job, e.provider)
        if participant is not None and not participant.released:
            # The registry's Slashed event took the fee off `locked`; the rest is unlocked here.
            participant.released = True
            provider = _provider(s, e.provider)
            provider.locked = max(provider.locked - (participant.collateral - e.fee), 0)
            provider.last_block = e.block_number
    elif isinstance(e, ev.JobReopened):
        job.state = JobState.OPEN
        job.round += 1
        job.clearing_price = 0
        job.collateral = 0
        job.accept_by = e.accept_by
        job.deadline = e.accept_by
    elif isinstance(e, ev.JobClosed):
        _close(s, job, e)
    elif isinstance(e, ev.Credited):
        account, amount = e.account, e.amount
    _history(s, job, e, account, amount)


def _audit_round(s: Session, job: JobRow) -> AuditRoundRow | None:
    if job.audit_round == 0:
        return None
    return s.get(AuditRoundRow, (job.job_id, job.round, job.audit_round))


def _close(s: Session, job: JobRow, e: ev.JobClosed) -> None:
    """Terminal state; releases the collateral of every participant not slashed and counts the
    completed jobs the way the registry does (`releaseCollateral(..., completed=true)`): with a
    verdict, everyone who revealed the upheld digest (executors and verifiers of every round);
    settled unverified, the executor; with no verdict, nobody."""
    participants = _round(s, job)
    digest = _hex(e.digest)
    done: list[ParticipantRow] = []
    if e.digest != bytes(32):
        done = [p for p in participants if p.revealed_digest == digest and p.slashed is None]
    elif e.state == JobState.SETTLED:
        done = [p for p in participants if p.index == 0]  # settled unverified: the executor
    for p in participants:
        if p.slashed is None and not p.released:
            p.released = True
            provider = _provider(s, p.provider)
            provider.locked = max(provider.locked - p.collateral, 0)
            provider.last_block = e.block_number
    for p in done:
        _provider(s, p.provider).jobs_done += 1
    job.state = e.state
    job.deadline = None
    job.digest = digest
    job.paid, job.refunded, job.fees, job.burned = e.paid, e.refunded, e.fees, e.burned
    job.closed_block = e.block_number


def _registry_event(s: Session, e: ChainEvent) -> None:
    if isinstance(e, ev.ParamsSet):
        row = s.get(MarketParamsRow, 1)
        values = asdict(e.params)
        if row is None:
            s.add(MarketParamsRow(id=1, params=values, block_number=e.block_number))
        else:
            row.params = values
            row.block_number = e.block_number
        return
    if isinstance(e, ev.ProfileAdded):
        s.merge(ProfileRow(id=e.id, descriptor=_hex(e.descriptor), block_number=e.block_number))
        return
    address = getattr(e, "provider", None)
    if not isinstance(address, str):
        return
    p = _provider(s, address)
    p.last_block = e.block_number
    if isinstance(e, ev.ProviderRegistered | ev.TermsUpdated):
        if isinstance(e, ev.ProviderRegistered):
            p.registered = True
            p.registered_block = e.block_number
        t = e.terms
        p.profile_mask = t.profile_mask
        p.gpu_model = t.gpu_model
        p.vram_gib = t.vram_gib
        p.price_per_unit = t.price_per_unit
        p.endpoint = t.endpoint
        p.min_exec_window = t.min_exec_window
        p.max_units = t.max_units
    elif isinstance(e, ev.Staked):
        p.stake = e.stake
    elif isinstance(e, ev.UnbondRequested):
        p.unbonding = e.amount
        p.unbond_at = e.unbond_at
    elif isinstance(e, ev.UnbondCancelled):
        p.unbonding = 0
        p.unbond_at = 0
    elif isinstance(e, ev.Unbonded):
        p.stake = max(p.stake - e.amount, 0)
        p.unbonding = 0
        p.unbond_at = 0
    elif isinstance(e, ev.Slashed):
        p.stake = max(p.stake - e.amount, 0)
        p.locked = max(p.locked - e.amount, 0)
        p.jobs_slashed += 1
        p.unbonding = min(p.unbonding, p.stake)
