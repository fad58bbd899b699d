"""Read endpoints over the relayer's store: jobs, providers and the listener's position.

    GET /jobs                 jobs, newest first; filters ``state`` (name, e.g. ``open``),
                              ``requester``, ``provider`` (any round, executor or verifier);
                              pagination ``limit`` (1-500, default 50) and ``offset``
    GET /jobs/{id}            one job with its participants (executors, then the verifiers
                              drawn on-chain in each audit round), its audit rounds, the
                              verdict, items batched calls skipped, and its event history in
                              chain order; 404 unknown
    GET /providers            registered providers by address
    GET /providers/{address}  one provider (registered or not, as long as an event named it);
                              400 malformed address, 404 unknown
    GET /status               the listener's checkpoint and the number of jobs in each state

Everything comes from the store the listener fills, so it is as current as the checkpoint.
Token amounts (and the 256-bit profile mask) are decimal strings: they exceed the range of a
JavaScript number. Addresses are checksummed. ``credited`` is the sum of the market's
``Credited`` events to the address (payments, refunds, bonds returned), what it could withdraw
had it never withdrawn. Liveness (``last_heartbeat``, ``live``) comes from the heartbeat book
when one is given, else it is null.

Errors are ``{"detail": "<what went wrong>"}`` like the rest of the API. While the store's
database is unavailable (locked, unreadable, its server restarting) every endpoint here answers
503 with ``Retry-After``; the outage is logged once, and its end once.

    app = create_app(settings, liveness=book, routers=[chain_router(store, book)])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from marketplace.index.outages import database_unavailable, reason, safe_url
from marketplace.index.store import (
    AuditRoundRow,
    HistoryRow,
    JobRow,
    ParticipantRow,
    ProviderRow,
    SkippedRow,
    Store,
)
from marketplace.matching.matcher import VALID_REPLICAS
from marketplace.matching.why import explain
from marketplace.protocol.client import JobState
from marketplace.protocol.heartbeat import LivenessBook
from marketplace.protocol.outage import Outage

__all__ = [
    "AuditRoundOut",
    "HistoryOut",
    "JobDetail",
    "JobOut",
    "JobsPage",
    "ParticipantOut",
    "ProfileOut",
    "ProviderOut",
    "SkippedOut",
    "StatusOut",
    "VerdictOut",
    "chain_router",
]

log = logging.getLogger(__name__)

#: Seconds a client is told to wait (Retry-After) while the database is unavailable.
RETRY_AFTER = 2

#: Most jobs one page of GET /jobs returns.
MAX_LIMIT = 500
DEFAULT_LIMIT = 50

_STATES = [s.name.lower() for s in JobState if s is not JobState.NONE]


def _amount(value: int | None) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------------- response models


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


_ZERO_DIGEST = "0x" + "00" * 32


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


class ProfileOut(BaseModel):
    id: int
    descriptor: str | None


class ProviderOut(BaseModel):
    address: str
    registered: bool
    stake: str
    locked: str
    #: stake - locked - unbonding (never below 0): what new jobs can lock.
    free_stake: str
    unbonding: str
    unbond_at: int
    price_per_unit: str
    vram_gib: int
    gpu_model: str
    endpoint: str
    #: The provider's own floor on a job's exec window and cap on its units (its terms).
    min_exec_window: int
    max_units: int
    profile_mask: str
    profiles: list[ProfileOut]
    jobs_done: int
    jobs_slashed: int
    #: Sum of the market's Credited events to this address.
    credited: str
    registered_block: int | None
    last_block: int | None
    #: Unix time of the last heartbeat in the liveness book; null without a book or heartbeat.
    last_heartbeat: int | None
    #: Whether that heartbeat is recent enough; null without a book.
    live: bool | None


class StatusOut(BaseModel):
    chain_id: int | None
    market: str | None
    registry: str | None
    #: Last block whose events are all applied; null before the listener bound the store.
    block_number: int | None
    block_hash: str | None
    jobs: int
    #: Jobs per state name, every state listed.
    jobs_by_state: dict[str, int]
    providers: int


# ---------------------------------------------------------------------- the router


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _address(value: str, what: str) -> str | JSONResponse:
    body = value[2:]
    mixed = body != body.lower() and body != body.upper()
    if not is_hex_address(value) or (mixed and not is_checksum_address(value)):
        return _error(
            400,
            f"{what} {value!r} is not an address; give 0x and 40 hex digits "
            "(all lower case, or with a valid EIP-55 checksum)",
        )
    return to_checksum_address(value)


def chain_router(
    store: Store,
    liveness: LivenessBook | None = None,
    *,
    heartbeat_interval: int = 15,
    heartbeat_missed: int = 3,
    clock: Callable[[], float] = time.time,
    outage: Outage | None = None,
) -> APIRouter:
    """The read endpoints over `store`; `liveness` adds each provider's heartbeat state
    (live when its last heartbeat is within `heartbeat_missed` x `heartbeat_interval` s).
    `outage` tracks the database as these endpoints see it (one of its own when None)."""
    db = outage or Outage(f"relayer database {safe_url(store.url)} (API)", log)

    def guard() -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            db.failed(reason(exc))
            raise HTTPException(
                503,
                "the relayer's database is unavailable (it is retried by itself); "
                f"retry in {RETRY_AFTER} s",
                headers={"retry-after": str(RETRY_AFTER)},
            ) from exc
        db.ok()

    router = APIRouter(tags=["chain"], dependencies=[Depends(guard)])

    def provider_out(
        row: ProviderRow, profiles: dict[int, str], credits: dict[str, int], now: int
    ) -> ProviderOut:
        last: int | None = None
        live: bool | None = None
        if liveness is not None:
            hb = liveness.last(row.address)
            last = hb.timestamp if hb is not None else None
            live = liveness.is_live(row.address, now, heartbeat_interval, heartbeat_missed)
        mask = row.profile_mask
        return ProviderOut(
            address=row.address,
            registered=row.registered,
            stake=str(row.stake),
            locked=str(row.locked),
            free_stake=str(row.free_stake),
            unbonding=str(row.unbonding),
            unbond_at=row.unbond_at,
            price_per_unit=str(row.price_per_unit),
            vram_gib=row.vram_gib,
            gpu_model=row.gpu_model,
            endpoint=row.endpoint,
            min_exec_window=row.min_exec_window,
            max_units=row.max_units,
            profile_mask=str(mask),
            profiles=[
                ProfileOut(id=i, descriptor=profiles.get(i))
                for i in range(mask.bit_length())
                if mask >> i & 1
            ],
            jobs_done=row.jobs_done,
            jobs_slashed=row.jobs_slashed,
            credited=str(credits.get(row.address, 0)),
            registered_block=row.registered_block,
            last_block=row.last_block,
            last_heartbeat=last,
            live=live,
        )

    @router.get("/jobs", response_model=JobsPage)
    def list_jobs(
        state: str | None = None,
        requester: str | None = None,
        provider: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JobsPage | JSONResponse:
        wanted: JobState | None = None
        if state is not None:
            if state.lower() not in _STATES:
                return _error(400, f"unknown job state {state!r}; use one of {', '.join(_STATES)}")
            wanted = JobState[state.upper()]
        by_requester: str | None = None
        if requester is not None:
            checked = _address(requester, "requester")
            if isinstance(checked, JSONResponse):
                return checked
            by_requester = checked
        by_provider: str | None = None
        if provider is not None:
            checked = _address(provider, "provider")
            if isinstance(checked, JSONResponse):
                return checked
            by_provider = checked
        page = store.jobs_page(
            state=wanted, requester=by_requester, provider=by_provider, limit=limit, offset=offset
        )
        return JobsPage(
            total=page.total,
            limit=page.limit,
            offset=page.offset,
            jobs=[JobOut.of(r) for r in page.jobs],
        )

    @router.get("/jobs/{job_id}", response_model=JobDetail)
    def get_job(job_id: int) -> JobDetail | JSONResponse:
        row = store.job(job_id)
        if row is None:
            return _error(
                404,
                f"no job {job_id} in the relayer's index; it may not exist yet or the listener "
                "has not reached its block (see GET /status)",
            )
        participants = store.participants(job_id)
        verifiers = [p for p in participants if p.verifier]
        return JobDetail(
            **_job_fields(row),
            waiting=waiting_of(row) if row.state is JobState.OPEN else None,
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

    def waiting_of(row: JobRow) -> WaitingOut | None:
        if row.replicas not in VALID_REPLICAS:
            return None
        now = int(clock())
        views = [
            # Without a liveness book this API cannot tell; the matcher's own rule decides.
            p.view(
                live=liveness is None
                or liveness.is_live(p.address, now, heartbeat_interval, heartbeat_missed)
            )
            for p in store.providers()
        ]
        # Every earlier round's no-shows, as the relayer's matcher reads them (the job's
        # current participants are only its current round's).
        job = row.open_job(store.excluded([row]).get(row.job_id, frozenset()))
        w = explain(job, views)
        return WaitingOut(code=w.code, reason=w.reason, eligible=w.eligible, needed=w.needed)

    @router.get("/providers", response_model=list[ProviderOut])
    def list_providers() -> list[ProviderOut]:
        profiles, credits, now = store.profiles(), store.credited_totals(), int(clock())
        return [provider_out(r, profiles, credits, now) for r in store.providers()]

    @router.get("/providers/{address}", response_model=ProviderOut)
    def get_provider(address: str) -> ProviderOut | JSONResponse:
        checked = _address(address, "provider")
        if isinstance(checked, JSONResponse):
            return checked
        row = store.provider(checked)
        if row is None:
            return _error(
                404,
                f"no provider {checked} in the relayer's index; register it "
                "(`depin provider register`) and wait for the listener to reach the event",
            )
        return provider_out(row, store.profiles(), store.credited_totals(checked), int(clock()))

    @router.get("/status", response_model=StatusOut)
    def status() -> StatusOut:
        overview = store.overview()
        position, counts = overview.position, overview.jobs_by_state
        by_state = {name: counts.get(JobState[name.upper()], 0) for name in _STATES}
        return StatusOut(
            chain_id=position.chain_id if position else None,
            market=position.market if position else None,
            registry=position.registry if position else None,
            block_number=position.block_number if position else None,
            block_hash=position.block_hash if position else None,
            jobs=sum(by_state.values()),
            jobs_by_state=by_state,
            providers=overview.providers,
        )

    return router
