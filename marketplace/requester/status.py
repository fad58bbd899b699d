"""What the SDK reports about jobs and wallets: a job's status (participants, audit rounds, the
relayer's history), a job as listed, a wallet's balances. Read from the chain, with the
relayer's index where it adds something the chain does not keep (history, result notices, why
an open job waits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import computed_field

from marketplace.protocol.client import Job, JobState
from marketplace.requester.wire import StateName, TokenAmount, WireModel

__all__ = [
    "RESULT_STATES",
    "AuditRoundStatus",
    "Balances",
    "JobStatus",
    "JobSummary",
    "ParticipantStatus",
    "audit_rounds",
]

#: States in which an executor has committed, so a result may be downloaded.
RESULT_STATES: Final = frozenset(
    {JobState.COMMITTED, JobState.AUDITING, JobState.REVEALING, JobState.SETTLED}
)


class ParticipantStatus(WireModel):
    provider: str
    #: Executor of the job (index < replicas) rather than a verifier drawn on-chain.
    executor: bool
    committed: bool
    #: 0 for an executor, else the audit round the verifier was drawn for (1 or 2).
    round: int = 0


class AuditRoundStatus(WireModel):
    """One audit round: its seats, the verifiers drawn on-chain so far, whether it is staffed."""

    json_keys = ("round", "seats", "staffed", "verifiers")

    round: int
    seats: int
    verifiers: tuple[str, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def staffed(self) -> bool:
        return len(self.verifiers) >= self.seats


def audit_rounds(job: Job, providers: Sequence[str]) -> tuple[AuditRoundStatus, ...]:
    """The job's audit rounds from its record and its participants' addresses (executors first,
    then the verifiers of round 1, then those of round 2)."""
    if job.round == 0:
        return ()
    k = job.seats if job.round == 1 else (job.seats - 1) // 2
    first_end = job.verifiers_from if job.round == 2 else len(providers)
    rounds = [
        AuditRoundStatus(round=1, seats=k, verifiers=tuple(providers[job.replicas : first_end]))
    ]
    if job.round == 2:
        rounds.append(
            AuditRoundStatus(
                round=2, seats=job.seats, verifiers=tuple(providers[job.verifiers_from :])
            )
        )
    return tuple(rounds)


class JobStatus(WireModel):
    """A job as the chain sees it, with the relayer's event history when it answers."""

    json_keys = (
        "job_id",
        "state",
        "terminal",
        "result_available",
        "requester",
        "deadline",
        "replicas",
        "units",
        "max_price_per_unit",
        "clearing_price",
        "escrow",
        "profile",
        "participants",
        "rounds",
        "verifiers",
    )

    job_id: int
    state: StateName
    requester: str
    #: Deadline of the current state (unix seconds; 0 when the state has none).
    deadline: int
    replicas: int
    units: int
    max_price_per_unit: TokenAmount
    clearing_price: TokenAmount
    escrow: TokenAmount
    profile: str
    participants: tuple[ParticipantStatus, ...]
    #: Audit rounds (empty before any audit): seats and the verifiers drawn on-chain.
    rounds: tuple[AuditRoundStatus, ...] = ()
    challenged: bool = False
    #: The upheld digest once the job closed with a verdict (None before, or with none).
    digest: str | None = None
    #: Providers whose result notice the relayer holds; None when the relayer did not answer.
    results: tuple[str, ...] | None = None
    #: The relayer's event history of the job (GET /jobs/{id}); None when it has none.
    history: tuple[Mapping[str, Any], ...] | None = None
    #: While the job is open: why no provider took it yet, and what would fix it (the relayer's
    #: view; None when it did not say).
    waiting: str | None = None
    #: The failure code when the job settled on a failure result: it could not run as
    #: specified (read from the chain: the upheld digest is that failure's digest).
    failure: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @computed_field  # type: ignore[prop-decorator]
    @property
    def result_available(self) -> bool:
        """An executor committed and announced its result: `Requester.result` can fetch it."""
        return self.state in RESULT_STATES and bool(self.results)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verifiers(self) -> list[str]:
        """Every participant drawn to verify, in seat order."""
        return [p.provider for p in self.participants if not p.executor]


class JobSummary(WireModel):
    """One of the requester's jobs, as listed."""

    job_id: int
    state: StateName
    units: int
    replicas: int
    max_price_per_unit: TokenAmount
    escrow: TokenAmount
    spec_hash: str
    #: The failure code of a job that settled on a failure result (see JobStatus.failure).
    failure: str | None = None
    #: The spec's kind ("embed", "matmul", ...); None when the spec could not be fetched.
    kind: str | None = None
    #: What the job cost the requester once terminal: escrow and any challenge bond, less
    #: everything credited back for it; None while the job is not terminal.
    cost: TokenAmount | None = None


class Balances(WireModel):
    address: str
    #: Native balance for gas, in wei.
    eth: TokenAmount
    #: ComputeToken in the wallet, in base units.
    tokens: TokenAmount
    #: Withdrawable credits in the JobMarket (refunds, returned bonds), in base units.
    credits: TokenAmount
