"""Folding events into the projections: `apply_event` updates the tables for one decoded event
inside the caller's transaction, `rebuild` empties the projections and replays the event log.

Projections are updated in place (a job row changes with every event), which is why undoing a
reorg replays the log instead of deleting rows (see marketplace.index.store).
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from eth_utils.address import to_checksum_address
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from marketplace.index.schema import (
    PROJECTIONS,
    AuditRoundRow,
    HistoryRow,
    JobRow,
    MarketParamsRow,
    ParticipantRow,
    ProcessedEvent,
    ProfileRow,
    ProviderRow,
    SkippedRow,
)
from marketplace.protocol import events as ev
from marketplace.protocol.client import UNLIMITED_UNITS, JobState
from marketplace.protocol.deployment import MarketParams
from marketplace.protocol.events import ChainEvent, Decoder

log = logging.getLogger(__name__)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def processed(chain_id: int, e: ChainEvent) -> ProcessedEvent:
    """The event log's record of `e`: its idempotency key and the raw log a replay decodes."""
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


def rebuild(s: Session, chain_id: int, decoder: Decoder) -> None:
    """Empties the projections and replays `chain_id`'s event log into them, in chain order."""
    for table in PROJECTIONS:
        s.execute(delete(table))
    # Heartbeats are not chain data: keep those rows, reset what events derive.
    s.execute(delete(ProviderRow).where(ProviderRow.last_heartbeat.is_(None)))
    for row in s.scalars(select(ProviderRow)):
        _reset(row)
    s.flush()
    records = s.scalars(
        select(ProcessedEvent)
        .where(ProcessedEvent.chain_id == chain_id)
        .order_by(ProcessedEvent.block_number, ProcessedEvent.log_index)
    )
    for record in records:
        decoded = decoder.decode(record.raw())
        if decoded is None:  # the decoder no longer follows it
            log.warning("replay skips %s at %s:%d", record.name, record.tx_hash, record.log_index)
            continue
        apply_event(s, decoded)


# ---------------------------------------------------------------------- applying one event


def provider_row(s: Session, address: str) -> ProviderRow:
    """The row of `address`, added with nothing derived yet when no event named it before."""
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


def apply_event(s: Session, e: ChainEvent) -> None:
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
        provider = provider_row(s, e.provider)
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
            provider = provider_row(s, e.provider)
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
            provider = provider_row(s, p.provider)
            provider.locked = max(provider.locked - p.collateral, 0)
            provider.last_block = e.block_number
    for p in done:
        provider_row(s, p.provider).jobs_done += 1
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
    p = provider_row(s, address)
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
