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

Readers ask the store named questions (`jobs_page`, `state_counts`, `provider_loads`, ...) and
get frozen dataclasses, plain values or rows to read; nobody outside marketplace.index writes
SQL against these tables. The tables are in `schema`, how events update them in `folding`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from marketplace.index import migrate
from marketplace.index.folding import apply_event, processed, provider_row, rebuild
from marketplace.index.schema import (
    TERMINAL_STATES,
    AuditRoundRow,
    Block,
    Checkpoint,
    HeartbeatRow,
    HistoryRow,
    JobRow,
    MarketParamsRow,
    ParticipantRow,
    ProcessedEvent,
    ProfileRow,
    ProviderRow,
    SkippedRow,
    Uint256,
)
from marketplace.protocol.client import JobState
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import ConfigError
from marketplace.protocol.events import ChainEvent, Decoder

__all__ = [
    "AuditRoundRow",
    "Block",
    "CheckpointView",
    "HeartbeatRow",
    "HistoryRow",
    "JobRow",
    "JobTiming",
    "JobsPage",
    "MarketParamsRow",
    "MarketTotals",
    "Overview",
    "ParticipantRow",
    "Position",
    "ProcessedEvent",
    "ProfileRow",
    "ProviderRow",
    "Seat",
    "SkippedRow",
    "Store",
    "Uint256",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointView:
    chain_id: int
    block_number: int
    block_hash: str | None


@dataclass(frozen=True)
class Position:
    """The deployment the store follows and the last block whose events are all applied."""

    chain_id: int
    market: str
    registry: str
    block_number: int
    #: None before the first chunk is applied.
    block_hash: str | None


@dataclass(frozen=True)
class Overview:
    """Where the index stands: what `depin relayer status` and GET /status show."""

    #: None before the store is bound.
    position: Position | None
    #: Jobs per state; states without a job are absent.
    jobs_by_state: Mapping[JobState, int]
    #: Registered providers.
    providers: int


@dataclass(frozen=True)
class JobsPage:
    """One page of the jobs matching a filter, newest first."""

    #: Jobs matching the filter, all pages together.
    total: int
    limit: int
    offset: int
    jobs: tuple[JobRow, ...]


@dataclass(frozen=True)
class Seat:
    """One participant seat of a job, with what a provider needs to run or verify it."""

    job_id: int
    #: The job's state now.
    state: JobState
    spec_hash: str
    round: int
    index: int
    verifier: bool


@dataclass(frozen=True)
class MarketTotals:
    """Token totals over every job the index holds, in base units, and the per-job check that
    every token a closed job paid or refunded was credited to an account."""

    #: Escrow locked by every job at creation.
    escrowed: int
    #: JobClosed totals over the closed jobs: paid to providers, refunded to requesters, fees
    #: (protocol fees and what went to the audit pool) and burned.
    paid: int
    refunded: int
    fees: int
    burned: int
    #: Collateral slashed (ProviderSlashed) and fees a provider paid to hand its seat back
    #: (ProviderReleased), over every job.
    slashed: int
    released_fees: int
    #: Sum of every Credited event.
    credited: int
    #: Jobs with a JobClosed event.
    closed: int
    #: Closed jobs whose paid + refunded differs from the sum of their Credited events, by id.
    uncredited: tuple[int, ...]

    @property
    def credits_balance(self) -> bool:
        """Whether every closed job's paid + refunded was credited exactly."""
        return not self.uncredited


@dataclass(frozen=True)
class JobTiming:
    """When a job was created and closed (blocks), and when it was last changed."""

    job_id: int
    created_block: int
    closed_block: int | None


# ---------------------------------------------------------------------- the store


class Store:
    """The relayer database at `url`, upgraded to the newest schema on opening (a new database
    is created; see `marketplace.index.migrate`)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, echo=echo)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            migrate.upgrade(self.engine, migrate.INDEX)
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session whose rows stay usable after it closes: for inspecting the tables in
        tests; callers elsewhere ask a named query."""
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
                s.add(processed(chain_id, e))
                apply_event(s, e)
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
            rebuild(s, chain_id, decoder)
        log.warning(
            "rolled back to block %d: %d events from orphaned blocks removed", block_number, removed
        )
        return int(removed or 0)

    def rebuild(self, chain_id: int, decoder: Decoder) -> None:
        """Recomputes every projection from the processed events (e.g. after a schema change)."""
        with self._sessions.begin() as s:
            rebuild(s, chain_id, decoder)

    # ------------------------------------------------------------------ API side

    def record_heartbeat(self, address: str, at: float) -> None:
        """Records a verified heartbeat of `address` at unix time `at`."""
        with self._sessions.begin() as s:
            row = provider_row(s, address)
            row.last_heartbeat = max(at, row.last_heartbeat or 0.0)

    def save_heartbeat(self, address: str, timestamp: int, message: str) -> bool:
        """Keeps `message` (a verified heartbeat's canonical JSON, dated `timestamp`) as
        `address`'s latest if it is newer than the one held; returns whether. One row per
        provider, updated in place in one statement, so a heartbeat every few seconds never
        grows the database and two relayers writing at once keep the newer one."""
        key = to_checksum_address(address)
        values = {"address": key, "timestamp": timestamp, "message": message}
        dialect = self.engine.dialect.name
        with self._sessions.begin() as s:
            if dialect not in ("sqlite", "postgresql"):
                # Other databases: read, then write under the row's lock.
                row = s.get(HeartbeatRow, key, with_for_update=True)
                if row is not None and row.timestamp >= timestamp:
                    return False
                s.merge(HeartbeatRow(**values))
                return True
            stmt = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(HeartbeatRow)
            stmt = stmt.values(**values)
            excluded = stmt.excluded
            # RETURNING tells whether a row was written: drivers differ in their row counts.
            written = s.execute(
                stmt.on_conflict_do_update(
                    index_elements=[HeartbeatRow.address],
                    set_={"timestamp": excluded.timestamp, "message": excluded.message},
                    where=HeartbeatRow.timestamp < excluded.timestamp,
                ).returning(HeartbeatRow.address)
            )
            return written.first() is not None

    def saved_heartbeats(self, address: str | None = None) -> dict[str, str]:
        """The latest heartbeat (canonical JSON) of `address`, or of every provider when None,
        by checksummed address."""
        query = select(HeartbeatRow.address, HeartbeatRow.message)
        if address is not None:
            query = query.where(HeartbeatRow.address == to_checksum_address(address))
        with self._sessions() as s:
            return {str(a): str(m) for a, m in s.execute(query)}

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
        return list(self.live_job_blocks())

    def live_job_blocks(self) -> dict[int, int | None]:
        """The jobs not in a terminal state, by id, each with the block of the last event the
        index applied to it: a reader caching what the chain says of a job re-reads it once
        this moves (an event, or a rollback that took one away)."""
        query = (
            select(JobRow.job_id, JobRow.last_block)
            .where(JobRow.state.not_in(TERMINAL_STATES))
            .order_by(JobRow.job_id)
        )
        with self._sessions() as s:
            return {int(job_id): last for job_id, last in s.execute(query)}

    def open_job_ids(self, *, created_by: int, after: int = 0, limit: int = 100) -> list[int]:
        """Ids above `after` of the jobs the index shows Open that were created at or before
        block `created_by`, by id, at most `limit`: jobs the matcher normally assigns within a
        block or two, so one still Open here may be assigned on-chain without its event."""
        query = (
            select(JobRow.job_id)
            .where(
                JobRow.state == JobState.OPEN,
                JobRow.created_block <= created_by,
                JobRow.job_id > after,
            )
            .order_by(JobRow.job_id)
            .limit(limit)
        )
        with self._sessions() as s:
            return list(s.scalars(query))

    def unstaffed_audit_job_ids(self) -> list[int]:
        """Ids of the Auditing jobs whose current audit round the index has not seen staffed,
        by id: a verifier seat drawn for them may be on the chain without its event here."""
        query = (
            select(JobRow.job_id)
            .join(
                AuditRoundRow,
                (AuditRoundRow.job_id == JobRow.job_id)
                & (AuditRoundRow.job_round == JobRow.round)
                & (AuditRoundRow.round == JobRow.audit_round),
            )
            .where(JobRow.state == JobState.AUDITING, AuditRoundRow.staffed_block.is_(None))
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

    def seats(self, job_ids: Collection[int]) -> dict[int, list[ParticipantRow]]:
        """Participants of the current round of each of `job_ids` (executors, then verifiers,
        by index), in one read; jobs without one are absent."""
        query = (
            select(ParticipantRow)
            .join(JobRow, JobRow.job_id == ParticipantRow.job_id)
            .where(ParticipantRow.job_id.in_(list(job_ids)), ParticipantRow.round == JobRow.round)
            .order_by(ParticipantRow.job_id, ParticipantRow.index)
        )
        out: dict[int, list[ParticipantRow]] = {}
        with self._sessions() as s:
            for row in s.scalars(query):
                out.setdefault(row.job_id, []).append(row)
        return out

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

    # ------------------------------------------------------------------ named queries

    def position(self) -> Position | None:
        """The deployment the store follows and its checkpoint; None before `bind`."""
        with self._sessions() as s:
            return _position(s)

    def state_counts(self) -> dict[JobState, int]:
        """How many jobs are in each state; states without a job are absent."""
        with self._sessions() as s:
            return _state_counts(s)

    def provider_count(self, registered_only: bool = True) -> int:
        """How many providers `providers(registered_only)` would list."""
        with self._sessions() as s:
            return _provider_count(s, registered_only)

    def overview(self) -> Overview:
        """Position, jobs per state and registered providers, read in one transaction so the
        counts are those of the checkpoint shown."""
        with self._sessions() as s:
            return Overview(
                position=_position(s),
                jobs_by_state=_state_counts(s),
                providers=_provider_count(s, registered_only=True),
            )

    def jobs_page(
        self,
        *,
        state: JobState | None = None,
        requester: str | None = None,
        provider: str | None = None,
        limit: int,
        offset: int = 0,
    ) -> JobsPage:
        """Jobs newest first, `offset` of them skipped and at most `limit` listed, optionally
        only those in `state`, created by `requester`, or with `provider` in a seat of any
        round (executor or verifier); `total` counts every match."""
        conditions: list[Any] = []
        if state is not None:
            conditions.append(JobRow.state == state)
        if requester is not None:
            conditions.append(JobRow.requester == to_checksum_address(requester))
        if provider is not None:
            seated = select(ParticipantRow.job_id).where(
                ParticipantRow.provider == to_checksum_address(provider)
            )
            conditions.append(JobRow.job_id.in_(seated))
        with self._sessions() as s:
            total = s.scalar(select(func.count()).select_from(JobRow).where(*conditions))
            rows = s.scalars(
                select(JobRow)
                .where(*conditions)
                .order_by(JobRow.job_id.desc())
                .limit(limit)
                .offset(offset)
            )
            return JobsPage(total=int(total or 0), limit=limit, offset=offset, jobs=tuple(rows))

    def market_totals(self) -> MarketTotals:
        """The market's token totals as the index's events report them, read in one
        transaction (amounts are 256-bit decimal text, so they are summed here, exactly)."""
        with self._sessions() as s:
            escrowed = paid = refunded = fees = burned = closed = 0
            owed: dict[int, int] = {}
            jobs = select(
                JobRow.job_id,
                JobRow.escrow,
                JobRow.closed_block,
                JobRow.paid,
                JobRow.refunded,
                JobRow.fees,
                JobRow.burned,
            )
            for job_id, escrow, closed_block, p, r, f, b in s.execute(jobs):
                escrowed += int(escrow)
                if closed_block is None:
                    continue
                closed += 1
                paid, refunded = paid + int(p or 0), refunded + int(r or 0)
                fees, burned = fees + int(f or 0), burned + int(b or 0)
                owed[job_id] = int(p or 0) + int(r or 0)
            slashed = released = 0
            credited: dict[int, int] = {}
            moves = select(HistoryRow.job_id, HistoryRow.event, HistoryRow.amount).where(
                HistoryRow.event.in_(("ProviderSlashed", "ProviderReleased", "Credited"))
            )
            for job_id, name, amount in s.execute(moves):
                value = int(amount or 0)
                if name == "ProviderSlashed":
                    slashed += value
                elif name == "ProviderReleased":
                    released += value
                else:
                    credited[job_id] = credited.get(job_id, 0) + value
        return MarketTotals(
            escrowed=escrowed,
            paid=paid,
            refunded=refunded,
            fees=fees,
            burned=burned,
            slashed=slashed,
            released_fees=released,
            credited=sum(credited.values()),
            closed=closed,
            uncredited=tuple(
                sorted(j for j, amount in owed.items() if credited.get(j, 0) != amount)
            ),
        )

    def job_timings(self) -> list[JobTiming]:
        """Creation and close blocks of every job, by id: what throughput and latency charts
        are drawn from."""
        query = select(JobRow.job_id, JobRow.created_block, JobRow.closed_block).order_by(
            JobRow.job_id
        )
        with self._sessions() as s:
            return [JobTiming(int(j), int(c), d) for j, c, d in s.execute(query)]

    def account_history(self, account: str, limit: int = 100) -> list[HistoryRow]:
        """The newest `limit` job events that name `account` (assignments, commits, reveals,
        slashes, credits), newest first."""
        query = (
            select(HistoryRow)
            .where(HistoryRow.account == to_checksum_address(account))
            .order_by(HistoryRow.block_number.desc(), HistoryRow.log_index.desc())
            .limit(limit)
        )
        with self._sessions() as s:
            return list(s.scalars(query))

    def credited_totals(self, account: str | None = None) -> dict[str, int]:
        """The sum of the market's Credited events per account (only `account`'s when given):
        what each could withdraw had it never withdrawn. Accounts never credited are absent."""
        query = select(HistoryRow.account, HistoryRow.amount).where(HistoryRow.event == "Credited")
        if account is not None:
            query = query.where(HistoryRow.account == to_checksum_address(account))
        totals: dict[str, int] = {}
        with self._sessions() as s:
            for credited, amount in s.execute(query):
                if credited is not None and amount is not None:
                    totals[credited] = totals.get(credited, 0) + int(amount)
        return totals

    def provider_loads(self) -> dict[str, int]:
        """Seats each provider holds now: in the current round of a live job, neither released
        nor slashed (their collateral is still locked). Providers holding none are absent."""
        query = (
            select(ParticipantRow.provider, func.count())
            .join(JobRow, JobRow.job_id == ParticipantRow.job_id)
            .where(
                JobRow.state.not_in(TERMINAL_STATES),
                ParticipantRow.round == JobRow.round,
                ParticipantRow.released.is_(False),
                ParticipantRow.slashed.is_(None),
            )
            .group_by(ParticipantRow.provider)
        )
        with self._sessions() as s:
            return {str(p): int(n) for p, n in s.execute(query)}

    def excluded(self, jobs: Iterable[JobRow]) -> dict[int, frozenset[str]]:
        """Per reopened job among `jobs`, the providers that held a seat in a round before the
        job's round as given and never committed (no-shows: the contract bars them from it).
        Jobs without one are absent."""
        reopened = {j.job_id: j.round for j in jobs if j.round > 0}
        if not reopened:
            return {}
        query = select(ParticipantRow.job_id, ParticipantRow.round, ParticipantRow.provider).where(
            ParticipantRow.job_id.in_(reopened), ParticipantRow.commit_block.is_(None)
        )
        out: dict[int, set[str]] = {}
        with self._sessions() as s:
            for job_id, round_, provider in s.execute(query):
                if round_ < reopened[job_id]:
                    out.setdefault(job_id, set()).add(provider)
        return {job_id: frozenset(providers) for job_id, providers in out.items()}

    def uncommitted_seats(self, provider: str, states: Collection[JobState]) -> list[Seat]:
        """`provider`'s seats that have not committed and still hold collateral (neither
        slashed nor released), in jobs now in one of `states`; by job, round and index."""
        query = (
            select(
                JobRow.job_id,
                JobRow.state,
                JobRow.spec_hash,
                ParticipantRow.round,
                ParticipantRow.index,
                ParticipantRow.verifier,
            )
            .join(ParticipantRow, ParticipantRow.job_id == JobRow.job_id)
            .where(
                ParticipantRow.provider == to_checksum_address(provider),
                ParticipantRow.commit_block.is_(None),
                ParticipantRow.slashed.is_(None),
                ParticipantRow.released.is_(False),
                JobRow.state.in_(list(states)),
            )
            .order_by(JobRow.job_id, ParticipantRow.round, ParticipantRow.index)
        )
        with self._sessions() as s:
            return [
                Seat(
                    job_id=job_id,
                    state=JobState(state),
                    spec_hash=spec_hash,
                    round=round_,
                    index=index,
                    verifier=verifier,
                )
                for job_id, state, spec_hash, round_, index, verifier in s.execute(query)
            ]

    def executed_jobs(self, provider: str, state: JobState) -> list[int]:
        """Ids of the jobs now in `state` in which `provider` held an executor seat (of any
        round) that was not slashed, by id."""
        query = (
            select(JobRow.job_id)
            .join(ParticipantRow, ParticipantRow.job_id == JobRow.job_id)
            .where(
                ParticipantRow.provider == to_checksum_address(provider),
                ParticipantRow.verifier.is_(False),
                ParticipantRow.slashed.is_(None),
                JobRow.state == state,
            )
            .distinct()
            .order_by(JobRow.job_id)
        )
        with self._sessions() as s:
            return list(s.scalars(query))


#: How long a SQLite connection waits on another's lock before failing.
_SQLITE_BUSY_MS = 5000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Wait on a lock instead of failing.
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    # WAL lets the API read while the listener writes. Switching a new file to WAL answers
    # "database is locked" at once, without waiting, while another process holds any lock on
    # it (several processes opening one new database): try again until the wait runs out.
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                cursor.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    # The index is rebuilt from the chain: a power loss may drop its last commits (each one
    # moves the checkpoint with the events it applied, so the listener reads them again), never
    # corrupt it. Durability costs an fsync per commit. Per connection: the provider's ledger,
    # in the same file, keeps its own connections at the default (FULL), and syncing its own
    # commits syncs the index's earlier ones with them.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _position(s: Session) -> Position | None:
    row = s.scalars(select(Checkpoint).order_by(Checkpoint.chain_id).limit(1)).first()
    if row is None:
        return None
    return Position(
        chain_id=row.chain_id,
        market=row.market_address,
        registry=row.registry_address,
        block_number=row.block_number,
        block_hash=row.block_hash,
    )


def _state_counts(s: Session) -> dict[JobState, int]:
    query = select(JobRow.state, func.count()).group_by(JobRow.state)
    return {JobState(state): int(n) for state, n in s.execute(query)}


def _provider_count(s: Session, registered_only: bool) -> int:
    query = select(func.count()).select_from(ProviderRow)
    if registered_only:
        query = query.where(ProviderRow.registered.is_(True))
    return int(s.scalar(query) or 0)
