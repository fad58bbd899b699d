"""Jobs as the relayer's index holds them (chain reads, see marketplace.api.chain_routes).

    GET /jobs                 jobs, newest first; filters ``state`` (name, e.g. ``open``),
                              ``requester``, ``provider`` (any round, executor or verifier);
                              pagination ``limit`` (1-500, default 50) and ``offset``
    GET /jobs/{id}            one job with its participants (executors, then the verifiers
                              drawn on-chain in each audit round), its audit rounds, the
                              verdict, items batched calls skipped, and its event history in
                              chain order; 404 unknown

Token amounts are decimal strings: they exceed the range of a JavaScript number.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from marketplace.api.database import database_guard
from marketplace.api.dependencies import ChainReads, Reads
from marketplace.api.errors import BadRequest, NotFound
from marketplace.api.routes.providers import checked_address
from marketplace.index.store import (
    AuditRoundRow,
    HistoryRow,
    JobRow,
    ParticipantRow,
    SkippedRow,
)
from marketplace.matching.matcher import VALID_REPLICAS
from marketplace.matching.why import explain
from marketplace.protocol.client import JobState

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATES",
    "AuditRoundOut",
    "HistoryOut",
    "JobDetail",
    "JobOut",
    "JobsPage",
    "ParticipantOut",
    "SkippedOut",
    "VerdictOut",
    "WaitingOut",
    "router",
    "verdict_of",
]

#: Most jobs one page of GET /jobs returns.
MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 50

#: The names a job's state goes by in this API.
STATES: Final = [s.name.lower() for s in JobState if s is not JobState.NONE]

router = APIRouter(dependencies=[Depends(database_guard)])


def _amount(value: int | None) -> str | None:
    return None if value is None else str(value)


class JobOut(BaseModel):
    """A job as its events describe it."""

    job_id: int
    state: str
    requester: str
    spec_hash: str
    replicas: int
    units: int
    max_price_per_unit: str
    profile: int
    min_vram_gib: int
    accept_window: int
    exec_window: int
    escrow: str
    collateral_multiple: int
    #: Collateral each participant locks: multiple x units x clearing price ("0" before
    #: assignment).
    collateral: str
    fee_bps: int
    min_fee: str
    premium_bps: int
    clearing_price: str
    accept_by: int
    #: The current state's deadline when an event carried it; null while committed.
    deadline: int | None
    #: No-show reopen round (0, then 1 after a reopen).
    round: int
    #: Current audit round (0 before any audit), its verifier seats, whether all are drawn.
    audit_round: int
    seats: int
    staffed: bool
    seed_block: int | None
    challenged: bool
    audited: bool | None
    digest: str | None
    paid: str | None
    refunded: str | None
    fees: str | None
    burned: str | None
    created_block: int
    closed_block: int | None
    last_event: str
    last_block: int

    @classmethod
    def of(cls, row: JobRow) -> JobOut:
        return cls(**_job_fields(row))


def _job_fields(row: JobRow) -> dict[str, Any]:
    return {
        "job_id": row.job_id,
        "state": row.state.name.lower(),
        "requester": row.requester,
        "spec_hash": row.spec_hash,
        "replicas": row.replicas,
        "units": row.units,
        "max_price_per_unit": str(row.max_price_per_unit),
        "profile": row.profile,
        "min_vram_gib": row.min_vram_gib,
        "accept_window": row.accept_window,
        "exec_window": row.exec_window,
        "escrow": str(row.escrow),
        "collateral_multiple": row.collateral_multiple,
        "collateral": str(row.collateral),
        "fee_bps": row.fee_bps,
        "min_fee": str(row.min_fee),
        "premium_bps": row.premium_bps,
        "clearing_price": str(row.clearing_price),
        "accept_by": row.accept_by,
        "deadline": row.deadline,
        "round": row.round,
        "audit_round": row.audit_round,
        "seats": row.seats,
        "staffed": row.staffed,
        "seed_block": row.seed_block,
        "challenged": row.challenged,
        "audited": row.audited,
        "digest": row.digest,
        "paid": _amount(row.paid),
        "refunded": _amount(row.refunded),
        "fees": _amount(row.fees),
        "burned": _amount(row.burned),
        "created_block": row.created_block,
        "closed_block": row.closed_block,
        "last_event": row.last_event,
        "last_block": row.last_block,
    }


class ParticipantOut(BaseModel):
    """An executor (index < replicas) or a verifier drawn on-chain (index >= replicas)."""

    index: int
    provider: str
    verifier: bool
    #: 0 for an executor, else the audit round the verifier was drawn for.
    audit_round: int
    price_per_unit: str
    deadline: int
    collateral: str
    assigned_block: int
    commit_block: int | None
    result_hash: str | None
    revealed_digest: str | None
    #: Amount slashed from this participant, null if not slashed.
    slashed: str | None
    released: bool

    @classmethod
    def of(cls, row: ParticipantRow) -> ParticipantOut:
        return cls(
            index=row.index,
            provider=row.provider,
            verifier=row.verifier,
            audit_round=row.audit_round,
            price_per_unit=str(row.price_per_unit),
            deadline=row.deadline,
            collateral=str(row.collateral),
            assigned_block=row.assigned_block,
            commit_block=row.commit_block,
            result_hash=row.result_hash,
            revealed_digest=row.revealed_digest,
            slashed=_amount(row.slashed),
            released=row.released,
        )


class HistoryOut(BaseModel):
    """One event of a job and the state it left the job in."""

    event: str
    state: str
    account: str | None
    amount: str | None
    block_number: int
    tx_hash: str
    log_index: int

    @classmethod
    def of(cls, row: HistoryRow) -> HistoryOut:
        return cls(
            event=row.event,
            state=row.state.name.lower(),
            account=row.account,
            amount=_amount(row.amount),
            block_number=row.block_number,
            tx_hash=row.tx_hash,
            log_index=row.log_index,
        )


class AuditRoundOut(BaseModel):
    """One audit round: seats, the verifiers drawn on-chain so far, and its deadlines."""

    round: int
    seats: int
    verifiers: list[str]
    staffed: bool
    seed_block: int
    #: Times the draw's seed block hash aged out and was re-seeded from a later block.
    reseeds: int
    #: Verifiers must be drawn by then, or the job ends with no verdict (refund).
    staff_by: int
    #: Commit deadline of the round's verifiers once staffed.
    commit_by: int | None
    started_block: int
    staffed_block: int | None

    @classmethod
    def of(cls, row: AuditRoundRow, verifiers: list[str]) -> AuditRoundOut:
        return cls(
            round=row.round,
            seats=row.seats,
            verifiers=verifiers,
            staffed=len(verifiers) >= row.seats,
            seed_block=row.seed_block,
            reseeds=row.reseeds,
            staff_by=row.staff_by,
            commit_by=row.commit_by,
            started_block=row.started_block,
            staffed_block=row.staffed_block,
        )


class VerdictOut(BaseModel):
    """How a closed job ended.

    ``outcome`` is one of: ``upheld`` (settled on a result that replicas or verifiers agreed on),
    ``settled_unverified`` (replicas = 1, not audited, not challenged), ``overturned`` (the
    verdict went against the executors: refunded), ``no_verdict`` (nobody revealed, or no audit
    majority, or an audit could not be staffed: refunded), ``expired`` (never executed).
    """

    outcome: str
    #: The upheld digest; null without one.
    digest: str | None
    #: Participants who revealed the upheld digest.
    upheld: list[str]
    #: Participants slashed in the job.
    slashed: list[str]


class SkippedOut(BaseModel):
    """An item a batched keeper or matcher call skipped (BatchItemSkipped)."""

    operation: str
    error: str
    reason: str
    block_number: int
    tx_hash: str

    @classmethod
    def of(cls, row: SkippedRow) -> SkippedOut:
        return cls(
            operation=row.operation,
            error=row.error,
            reason=row.reason,
            block_number=row.block_number,
            tx_hash=row.tx_hash,
        )


class WaitingOut(BaseModel):
    """Why an open job is not matched yet (marketplace.matching.why)."""

    code: str
    reason: str
    eligible: int
    needed: int


class JobDetail(JobOut):
    #: Only while the job is open: the requirement no `needed` live providers meet, and its fix.
    waiting: WaitingOut | None = None
    participants: list[ParticipantOut]
    #: Verifiers drawn on-chain, every round (addresses, in draw order).
    verifiers: list[str]
    rounds: list[AuditRoundOut]
    #: Null while the job is not terminal.
    verdict: VerdictOut | None
    skipped: list[SkippedOut]
    history: list[HistoryOut]


_ZERO_DIGEST: Final = "0x" + "00" * 32


def verdict_of(row: JobRow, participants: list[ParticipantRow]) -> VerdictOut | None:
    """The verdict of a terminal job (None before)."""
    if not row.state.terminal:
        return None
    digest = row.digest if row.digest not in (None, _ZERO_DIGEST) else None
    if row.state is JobState.EXPIRED:
        outcome = "expired"
    elif row.state is JobState.SETTLED:
        outcome = "upheld" if digest is not None else "settled_unverified"
    else:
        outcome = "overturned" if digest is not None else "no_verdict"
    return VerdictOut(
        outcome=outcome,
        digest=digest,
        upheld=[p.provider for p in participants if digest and p.revealed_digest == digest],
        slashed=[p.provider for p in participants if p.slashed is not None],
    )


class JobsPage(BaseModel):
    #: Jobs matching the filters, all pages together.
    total: int
    limit: int
    offset: int
    jobs: list[JobOut]


@router.get("/jobs", response_model=JobsPage)
def list_jobs(
    reads: Reads,
    state: str | None = None,
    requester: str | None = None,
    provider: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPage:
    wanted: JobState | None = None
    if state is not None:
        if state.lower() not in STATES:
            raise BadRequest(f"unknown job state {state!r}; use one of {', '.join(STATES)}")
        wanted = JobState[state.upper()]
    page = reads.store.jobs_page(
        state=wanted,
        requester=None if requester is None else checked_address(requester, "requester"),
        provider=None if provider is None else checked_address(provider, "provider"),
        limit=limit,
        offset=offset,
    )
    return JobsPage(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        jobs=[JobOut.of(r) for r in page.jobs],
    )


@router.get("/jobs/{job_id}", response_model=JobDetail)
def get_job(job_id: int, reads: Reads) -> JobDetail:
    store = reads.store
    row = store.job(job_id)
    if row is None:
        raise NotFound(
            f"no job {job_id} in the relayer's index; it may not exist yet or the listener "
            "has not reached its block (see GET /status)"
        )
    participants = store.participants(job_id)
    verifiers = [p for p in participants if p.verifier]
    return JobDetail(
        **_job_fields(row),
        waiting=_waiting(row, reads) if row.state is JobState.OPEN else None,
        participants=[ParticipantOut.of(p) for p in participants],
        verifiers=[p.provider for p in verifiers],
        rounds=[
            AuditRoundOut.of(r, [p.provider for p in verifiers if p.audit_round == r.round])
            for r in store.audit_rounds(job_id)
        ],
        verdict=verdict_of(row, participants),
        skipped=[SkippedOut.of(k) for k in store.skipped(job_id)],
        history=[HistoryOut.of(h) for h in store.history(job_id)],
    )


def _waiting(row: JobRow, reads: ChainReads) -> WaitingOut | None:
    if row.replicas not in VALID_REPLICAS:
        return None
    now = int(reads.clock())
    # Without a liveness book this API cannot tell; the matcher's own rule decides.
    views = [
        p.view(live=reads.is_live(p.address, now) is not False) for p in reads.store.providers()
    ]
    # Every earlier round's no-shows, as the relayer's matcher reads them (the job's
    # current participants are only its current round's).
    job = row.open_job(reads.store.excluded([row]).get(row.job_id, frozenset()))
    w = explain(job, views)
    return WaitingOut(code=w.code, reason=w.reason, eligible=w.eligible, needed=w.needed)
