"""The provider agent: follows the chain for this provider's duties, hands the work to Celery
workers, commits and reveals on time, and heartbeats to the relayer.

Each `step()`:

1. the head is read; a head that went backwards, or a reorg the listener rolled back, is a
   rollback: the signer forgets its tracked nonce, every recent duty is reconciled with what
   the chain now shows, and every live job's seats are read from the chain's state, so a seat
   whose event the rollback lost is still taken (a slow reconcile of live duties, and of the
   seats of audit rounds the index has not seen staffed and of jobs it has shown Open for
   `_OPEN_SWEEP_BLOCKS` blocks, also runs every `_RECONCILE_EVERY` seconds as a safety net);
2. the listener (the relayer's, with this agent's own database: explicit block ranges, a
   checkpoint, reorg rollback, events applied once) applies what became final;
3. every participation of this provider that still needs a commit becomes a duty in the ledger
   and, for an honest provider, one Celery task with a deterministic id (`worker.task_id`);
4. finished tasks give their digest; a task lost from Redis (not queued, not held by a worker,
   no live run) is sent again under the same id within seconds, a silent one after
   `resend_after` seconds;
5. an executor duty the worker gave up (its deadline could not be met), or one still waiting
   for a worker with less than `run_margin` seconds left, is released on-chain for the small
   release fee instead of being slashed as a no-show;
6. computed duties are committed in one `commitBatch` after re-reading the chain (a commitment
   already there, from before a crash, is adopted, never sent twice; a deadline already passed
   is not attempted); the encrypted result is announced to the relayer with a signed notice;
7. committed duties of jobs in the reveal phase are revealed, again after re-reading the chain;
8. an audit of a job this provider executed that is still unstaffed a few blocks after its
   seed block gets a `staffAudit` call from here (the keeper normally makes it);
9. a signed heartbeat goes to the relayer every `heartbeat_interval` seconds.

Each of the three dependencies (RPC, Redis, relayer) has an `Outage`: its first failure is
logged once, the steps that need it are skipped with capped backoff while it is down (the
others go on: a Redis outage does not hold back commits and reveals), and a cheap probe tells
when it is back. The run loop survives anything else too: an unexpected error is logged with
its traceback and the loop goes on after a pause; only SIGTERM and SIGINT stop it.

Nobody assigns verifiers: the contract draws them (stake-weighted, `staffAudit`) and each drawn
provider sees a ProviderAssigned event for itself with an index >= the job's replicas. That is
a verifier duty: the agent runs the job like an executor would, commits while the job is
Auditing (by the job's current deadline, which AuditStaffed moves to the commit deadline once
the round is full) and reveals while it is Revealing. An escalation round draws fresh
verifiers, who get their own ProviderAssigned events.

`--behavior` other than honest is a test aid (DESIGN section 4) and gets the provider slashed:
`lazy` commits a made-up digest without running anything, `copycat` copies another
participant's hash and seal from its commit (and cannot reveal), `no-show` never commits. The
agent asks its `provider.behaviors.Strategy` the few decisions that differ.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from types import FrameType
from typing import Any, Final

import httpx
import kombu.exceptions
import redis
import requests
from celery import Celery, states
from celery.exceptions import CeleryError
from eth_utils.address import to_checksum_address
from web3.exceptions import Web3Exception

from marketplace.index.listener import Listener, RPCUnavailable
from marketplace.index.store import Seat, Store
from marketplace.protocol.client import Job, JobState, Market
from marketplace.protocol.deployment import Deployment, connect_deployment
from marketplace.protocol.errors import ChainError, ConfigError, ContractRevert, TransactionFailed
from marketplace.protocol.heartbeat import sign_heartbeat
from marketplace.protocol.outage import Outage
from marketplace.protocol.relayer_http import RelayerClient, RelayerUnreachable
from marketplace.protocol.results import sign_result_notice
from marketplace.protocol.wakeup import NewHeads, RedisChannels, Wakeup
from provider.behaviors import Strategy, strategy_for
from provider.deadline import ChainClock
from provider.ledger import DutyRow, DutyStatus, Ledger
from provider.settings import ProviderSettings
from provider.worker import (
    ALIVE_REFRESH,
    TASK_NAME,
    OutcomeStatus,
    TaskOutcome,
    TaskRequest,
    UnreadableOutcome,
    alive_key,
    deliveries_key,
    held_key,
    make_celery,
    task_id,
)

__all__ = ["Agent", "AgentReport", "NoCommit", "Uncommittable", "run_agent"]

log = logging.getLogger(__name__)

_COMMIT_STATES = (JobState.ASSIGNED, JobState.AUDITING)
_OPEN_STATES = (JobState.ASSIGNED, JobState.COMMITTED, JobState.AUDITING, JobState.REVEALING)
#: Ledger statuses a rollback can undo (the chain evidence behind them may be orphaned).
_UNDOABLE = (
    DutyStatus.COMMITTED,
    DutyStatus.REVEALED,
    DutyStatus.CLOSED,
    DutyStatus.SKIPPED,
    DutyStatus.RELEASED,
    DutyStatus.ABANDONED,
)
#: Seconds between two reconciles of live duties with the chain (a safety net; rollbacks the
#: head or the listener reveal trigger one at once).
_RECONCILE_EVERY: Final = 30.0
#: How far back (seconds of ledger updates) a rollback looks for duties to reconcile.
_ROLLBACK_LOOKBACK: Final = 3_600.0
#: Least seconds between two staffAudit calls of this agent for one job (see the keeper's
#: STAFF_RETRY_SECONDS: each call's block wakes every loop).
_STAFF_RETRY: Final = 5.0
#: Blocks a job may stay Open in the index before the periodic reconcile reads its seats from
#: the chain, and how many such jobs one reconcile reads.
_OPEN_SWEEP_BLOCKS: Final = 10
_OPEN_SWEEP_MAX: Final = 32
#: A queued task is lost once it was seen neither queued, nor held by a live worker, nor running
#: this long: over one refresh of those keys, so a task between two refreshes is never taken
#: for lost.
_LOST_AFTER: Final = ALIVE_REFRESH + 1.5
#: Errors that mean a dependency is unreachable (or answered like one), by dependency.
_RPC_ERRORS: tuple[type[BaseException], ...] = (
    RPCUnavailable,
    ChainError,
    Web3Exception,
    requests.RequestException,
    OSError,
)
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError,
    kombu.exceptions.KombuError,
    CeleryError,
    OSError,
)
_RELAYER_ERRORS: tuple[type[BaseException], ...] = (RelayerUnreachable,)
#: Ledger notes of a transaction this provider sent before a restart, found on-chain.
_FOUND_ON_CHAIN: Final = "found on-chain"
_SEAT_TAKEN: Final = "the seat belongs to another provider (job reopened)"


class Uncommittable(Enum):
    """Why the chain no longer takes a duty's commit."""

    #: This provider's commitment is already there (sent before a restart): the duty adopts it.
    ON_CHAIN = auto()
    #: The seat is another provider's (the job was reopened and assigned again).
    SEAT_TAKEN = auto()
    #: The job left the commit states (settled, refunded, revealing...).
    CLOSED = auto()
    #: The job takes the other role's commits now (executors while Assigned, verifiers while
    #: Auditing).
    OTHER_PHASE = auto()
    #: A later audit round drew other verifiers; this verifier seat's round is over.
    ROUND_OVER = auto()
    #: The job's current commit deadline passed.
    DEADLINE_PASSED = auto()
    #: The seat no longer holds collateral: handed back (`depin provider release`) or slashed.
    INACTIVE = auto()


@dataclass(frozen=True)
class NoCommit:
    """A duty the chain no longer takes a commit for: why, and the note the ledger keeps."""

    why: Uncommittable
    note: str


@dataclass
class AgentReport:
    """What one cycle did, by job id."""

    events: int = 0
    queued: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    revealed: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    #: Executor seats handed back with `release` instead of a no-show.
    released: list[int] = field(default_factory=list)
    #: Tasks sent again because Redis had lost them (not queued, not held, not running).
    resent: list[int] = field(default_factory=list)
    #: Duties moved back to what the chain shows after a rollback.
    reconciled: list[int] = field(default_factory=list)
    #: Audits of this provider's own jobs it called staffAudit for (the keeper was late).
    staffed: list[int] = field(default_factory=list)
    rollback: bool = False
    heartbeat: bool = False


def _finished(meta: dict[str, Any]) -> _Finished | None:
    """A task's stored meta (Celery's result backend) as a finished run; None while pending."""
    status = meta.get("status")
    if status not in states.READY_STATES:
        return None
    value = meta.get("result")
    if status != states.SUCCESS:
        return _Finished(returned=False, outcome=None, problem=_short(value))
    try:
        return _Finished(returned=True, outcome=TaskOutcome.from_json(value), problem="")
    except UnreadableOutcome as exc:
        return _Finished(returned=True, outcome=None, problem=str(exc))


class Agent:
    """The agent of one provider key on one deployment."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        market: Market,
        store: Store,
        ledger: Ledger,
        celery: Celery | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        if market.signer is None:
            raise ConfigError("the agent needs the provider's key; give Market the account")
        self.market = market
        self.signer = market.signer
        self.me = market.address
        self.deployment = market.deployment
        self.store = store
        self.ledger = ledger
        self.celery = celery if celery is not None else make_celery(settings)
        #: The result backend's Redis: results, and the workers' delivery keys.
        self.redis = redis.Redis.from_url(
            settings.backend_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        #: The broker's Redis, whose queue lists show the tasks waiting; None for another broker
        #: (a task's loss is then found by `resend_after` alone).
        self.broker_redis = (
            redis.Redis.from_url(
                settings.broker_url, socket_timeout=5.0, socket_connect_timeout=5.0
            )
            if settings.broker_is_redis
            else None
        )
        self.clock = clock
        #: What differs between the honest agent and the test aids (`provider.behaviors`).
        self.strategy: Strategy = strategy_for(settings.behavior)
        self.listener = Listener(
            market.w3, self.deployment, store, confirmations=settings.confirmations
        )
        self.http = RelayerClient(
            settings.relayer_url, timeout=10.0, url_setting="DEPIN_PROVIDER_RELAYER_URL"
        )
        self.rpc = Outage(f"RPC {settings.rpc_url}", log)
        self.broker = Outage(f"Redis {_redacted(settings.backend_url)}", log)
        self.relayer = Outage(
            f"relayer {settings.relayer_url}", log, first_delay=2.0, max_delay=30.0
        )
        self._unexpected = Outage("agent cycle", log, first_delay=1.0, max_delay=30.0)
        # A refused heartbeat (a relayer not yet aware of a new registration, a busy database
        # answering 503) is tried again within one interval at most: waiting longer would let
        # the relayer count the provider silent and skip it when it matches.
        interval = float(settings.heartbeat_interval)
        self._heartbeats_refused = Outage(
            f"heartbeats at {settings.relayer_url}",
            log,
            first_delay=min(5.0, interval),
            max_delay=interval,
        )
        self.chain_clock = ChainClock()
        self._head = -1
        self._rollbacks_seen = 0
        self._last_reconcile = time.monotonic()
        #: Task id -> when (monotonic) it was first seen lost; cleared once seen again.
        self._lost_since: dict[str, float] = {}
        #: The last job id `_stale_open` read; it goes on from there.
        self._open_cursor = 0
        #: Job id -> when (monotonic) this agent last called staffAudit for it.
        self._staffed_at: dict[int, float] = {}
        self._last_heartbeat = 0.0
        #: The heartbeat interval the relayer announced (None until it answered one).
        self._relayer_interval: int | None = None
        record = market.provider(self.me)
        if not record.registered:
            raise ConfigError(
                f"{self.me} is not a registered provider on market {self.deployment.market}; "
                "run `depin provider register` and `depin provider stake` first"
            )
        self.profiles = [i for i in range(64) if record.profile_mask >> i & 1]

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> Agent:
        deployment = Deployment.load(settings.deployment_file)
        account = settings.account()
        market = Market(
            connect_deployment(settings.rpc_url, deployment),
            deployment,
            account,
            fees=settings.fee_policy(),
        )
        url = settings.database_url(account.address)
        return cls(settings, market=market, store=Store(url), ledger=Ledger(url))

    def close(self) -> None:
        self.http.close()
        self.redis.close()
        if self.broker_redis is not None:
            self.broker_redis.close()
        self.store.close()
        self.ledger.close()

    # ------------------------------------------------------------------ one cycle

    def step(self) -> AgentReport:
        """One cycle. A dependency that fails is marked down and the steps that need it wait
        for its backoff; the steps that do not need it go on."""
        report = AgentReport()
        rpc = self._up(self.rpc, _RPC_ERRORS, lambda: self.market.w3.eth.block_number)
        broker = self._up(self.broker, _BROKER_ERRORS, self.redis.ping)
        relayer = self._up(self.relayer, _RELAYER_ERRORS, lambda: self.http.get("/healthz"))
        if rpc:
            rpc = self._guard(self.rpc, _RPC_ERRORS, lambda: self._follow_chain(report))
        if broker:
            broker = self._guard(self.broker, _BROKER_ERRORS, lambda: self._discover(report))
        if broker:
            self._guard(self.broker, _BROKER_ERRORS, lambda: self._collect(report))
        if rpc:
            rpc = self._chain_steps((self._release, self._copy, self._commit), report)
        if relayer:
            relayer = self._guard(self.relayer, _RELAYER_ERRORS, self._announce)
        if rpc:
            self._chain_steps((self._reveal, self._staff_own_audits), report)
        self._close_finished()
        if relayer:
            self._guard(
                self.relayer,
                _RELAYER_ERRORS,
                lambda: setattr(report, "heartbeat", self._heartbeat()),
            )
        return report

    def deliver(self) -> AgentReport:
        """The hand-off of finished tasks, run when the worker announces a result: results
        into the ledger, then the commit (with every check of `_commit`, read from the chain),
        then the result notices; the rest of the step (following the chain, new seats,
        reveals, heartbeats) waits for the next wake-up. The ledger is written before each
        transaction, as in `step`."""
        report = AgentReport()
        if self._up(self.broker, _BROKER_ERRORS, self.redis.ping):
            self._guard(self.broker, _BROKER_ERRORS, lambda: self._collect(report))
        if not report.computed:
            return report
        rpc = self._up(self.rpc, _RPC_ERRORS, lambda: self.market.w3.eth.block_number)
        if rpc and self._chain_steps((self._commit,), report):
            relayer = self._up(self.relayer, _RELAYER_ERRORS, lambda: self.http.get("/healthz"))
            if relayer:
                self._guard(self.relayer, _RELAYER_ERRORS, self._announce)
        return report

    def _chain_steps(
        self, steps: tuple[Callable[[AgentReport], None], ...], report: AgentReport
    ) -> bool:
        """Runs `steps` that need the RPC in order; stops at the first RPC failure."""
        for chain_step in steps:
            if not self._guard(self.rpc, _RPC_ERRORS, functools.partial(chain_step, report)):
                return False
        return True

    def _up(
        self, outage: Outage, errors: tuple[type[BaseException], ...], probe: Callable[[], Any]
    ) -> bool:
        """Whether the dependency of `outage` may be used this cycle: up, or down with its
        backoff over and `probe` answering."""
        if not outage.down:
            return True
        if not outage.ready():
            return False
        try:
            probe()
        except errors as exc:
            outage.failed(exc)
            return False
        outage.ok()
        return True

    def _guard(
        self, outage: Outage, errors: tuple[type[BaseException], ...], action: Callable[[], Any]
    ) -> bool:
        """Runs `action`; a dependency error marks `outage` down. Returns whether it ran."""
        try:
            action()
        except errors as exc:
            outage.failed(exc)
            if outage is self.rpc:
                # A node that failed may come back restarted, its pool and nonces gone.
                self.signer.reset_nonce()
            return False
        return True

    def run(self, stop: threading.Event) -> None:
        """Steps on every new block and finished task, and at least every `poll_interval`
        seconds, until `stop` is set. Dependency outages are
        handled inside the step; any other error is logged with its traceback and the loop
        goes on after a pause."""
        log.info("agent of %s started (%s)", self.me, self.strategy.name)
        # A new block (an assignment, a close) or a finished task (Celery's Redis backend
        # publishes each result on its key) ends the wait at once; a finished task also sets
        # `results`, so the loop hands the result on before anything else.
        prefix = self.celery.backend.get_key_for_task("*")
        pattern = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
        wakeup, results = Wakeup(), Wakeup()
        sources: list[NewHeads | RedisChannels] = []
        heads_url = self.settings.heads_url()
        if heads_url is not None:
            sources.append(NewHeads(heads_url, [wakeup]))
        if self.settings.wake_on_results:
            sources.append(RedisChannels(self.settings.backend_url, pattern, [wakeup, results]))
        for source in sources:
            source.start()
        try:
            self._run(stop, wakeup, results)
        finally:
            for source in sources:
                source.close()

    def _run(self, stop: threading.Event, wakeup: Wakeup, results: Wakeup | None = None) -> None:
        delivered = results.count if results is not None else 0
        while not stop.is_set():
            try:
                handed_on = False
                if results is not None and results.count != delivered:
                    delivered = results.count
                    report = self.deliver()
                    self._log_report(report)
                    # The whole step follows at the next wake-up (this one's, or the commit's
                    # block); a result that brought no commit (a skip, a job given up) is
                    # the whole step's now.
                    handed_on = bool(report.committed)
                if not handed_on:
                    self._log_report(self.step())
            except Exception as exc:  # the agent must outlive any single failure
                if not self._unexpected.down:
                    log.exception("agent cycle failed; going on after a pause")
                pause = self._unexpected.failed(exc)
                self.signer.reset_nonce()
                stop.wait(pause)
                continue
            self._unexpected.ok()
            wakeup.wait(stop, self.settings.poll_interval)

    def _log_report(self, report: AgentReport) -> None:
        if (
            report.queued
            or report.committed
            or report.revealed
            or report.abandoned
            or report.released
            or report.resent
            or report.reconciled
        ):
            log.info(
                "queued %s committed %s revealed %s abandoned %s released %s resent %s "
                "reconciled %s",
                report.queued,
                report.committed,
                report.revealed,
                report.abandoned,
                report.released,
                report.resent,
                report.reconciled,
            )
        if report.staffed:
            log.info("staffed the audits of own jobs %s", report.staffed)

    # ------------------------------------------------------------------ following the chain

    def _follow_chain(self, report: AgentReport) -> None:
        """Reads the head, applies new events, and reconciles the ledger after a rollback (a
        head that went backwards, or a reorg the listener rolled back) or every
        `_RECONCILE_EVERY` seconds."""
        latest = self.market.w3.eth.get_block("latest")
        head = int(latest["number"])
        self.chain_clock.observe(int(latest["timestamp"]))
        backwards = head < self._head
        self._head = head
        report.events = self.listener.poll_once()
        reorged = self.listener.rollbacks != self._rollbacks_seen
        self._rollbacks_seen = self.listener.rollbacks
        if backwards or reorged:
            log.warning(
                "the chain rolled back (%s); re-reading nonces and reconciling duties",
                "head went backwards" if backwards else "reorg",
            )
            report.rollback = True
            self.signer.reset_nonce()
            self._reconcile(self._rollback_candidates(), report)
            self._sweep_seats(self.store.live_job_ids(), report)
            self._last_reconcile = time.monotonic()
        elif time.monotonic() - self._last_reconcile > _RECONCILE_EVERY:
            self._reconcile(self._live_candidates(), report)
            self._sweep_seats(self.store.unstaffed_audit_job_ids() + self._stale_open(), report)
            self._last_reconcile = time.monotonic()

    def _rollback_candidates(self) -> list[DutyRow]:
        since = time.time() - _ROLLBACK_LOOKBACK
        return [d for d in self.ledger.with_status(*_UNDOABLE) if d.updated_at >= since]

    def _live_candidates(self) -> list[DutyRow]:
        """Committed and revealed duties, and finished ones whose job the store shows live."""
        duties = self.ledger.with_status(DutyStatus.COMMITTED, DutyStatus.REVEALED)
        since = time.time() - _ROLLBACK_LOOKBACK
        for duty in self.ledger.with_status(
            DutyStatus.CLOSED, DutyStatus.SKIPPED, DutyStatus.RELEASED, DutyStatus.ABANDONED
        ):
            if duty.updated_at < since:
                continue
            job = self.store.job(duty.job_id)
            if job is not None and job.state in _OPEN_STATES:
                duties.append(duty)
        return duties

    def _reconcile(self, duties: list[DutyRow], report: AgentReport) -> None:
        for duty in duties:
            if duty.status == DutyStatus.SKIPPED and not self.strategy.revives_skipped:
                continue
            job = self.market.job(duty.job_id)
            status = self._status_on_chain(duty, job)
            if status is None or status == duty.status:
                continue
            log.warning(
                "job %d: the ledger said %s, the chain now shows %s; following the chain",
                duty.job_id,
                duty.status,
                status,
            )
            values: dict[str, object] = {"status": status, "note": f"reconciled from {duty.status}"}
            if status == DutyStatus.QUEUED:
                values["sent_at"] = None  # _collect clears the stale result and sends it
            self.ledger.update(duty.task_id, **values)
            report.reconciled.append(duty.job_id)

    def _status_on_chain(self, duty: DutyRow, job: Job) -> DutyStatus | None:
        """The ledger status that matches what the chain shows for `duty`; None to keep it."""
        if job.state.terminal:
            return None  # _close_finished closes it once the listener applies the close
        mine = self._seat_holder(duty) == self.me
        committed = mine and bool(job.commit_mask >> duty.index & 1)
        revealed = mine and bool(job.reveal_mask >> duty.index & 1)
        if revealed:
            return DutyStatus.REVEALED
        if committed:
            return DutyStatus.COMMITTED
        # The ledger holds a commitment the chain no longer shows.
        orphaned = duty.status in (DutyStatus.COMMITTED, DutyStatus.REVEALED)
        if not mine or job.state in (JobState.NONE, JobState.OPEN):
            # The assignment itself is gone (or the seat is another provider's now).
            return DutyStatus.SKIPPED if orphaned else None
        if self._commit_blocker(duty, job) is not None:
            # A released seat is inactive: it stays RELEASED.
            return DutyStatus.SKIPPED if orphaned else None
        if duty.digest is not None:
            return DutyStatus.COMPUTED
        return self.strategy.restart()

    def _commit_blocker(self, duty: DutyRow, job: Job) -> NoCommit | None:
        """Why `job` takes no commit of `duty`'s seat now (state, role, round, active seat,
        deadline); None when it does."""
        if job.state not in _COMMIT_STATES:
            return NoCommit(Uncommittable.CLOSED, f"job is {job.state.name}; commits closed")
        if (job.state == JobState.AUDITING) != (duty.role == "verifier"):
            return NoCommit(
                Uncommittable.OTHER_PHASE,
                f"job is {job.state.name}; a {duty.role} cannot commit now",
            )
        if duty.role == "verifier" and duty.index < job.verifiers_from:
            return NoCommit(
                Uncommittable.ROUND_OVER,
                f"audit round {job.round} has other verifiers; this seat's round is over",
            )
        if self._seat_inactive(duty, job):
            # The market takes commits from active seats only.
            return NoCommit(
                Uncommittable.INACTIVE,
                "the seat was released (or slashed); the market takes no commit",
            )
        if self._chain_time() > job.deadline:
            return NoCommit(
                Uncommittable.DEADLINE_PASSED, f"the commit deadline {job.deadline} passed"
            )
        return None

    def _seat_inactive(self, duty: DutyRow, job: Job) -> bool:
        """Whether `duty`'s seat no longer holds collateral: released, or slashed."""
        return not job.active_mask >> duty.index & 1

    # ------------------------------------------------------------------ duties

    def _my_open_seats(self) -> list[Seat]:
        """This provider's seats that have not committed and still hold collateral, in live
        jobs: executors while Assigned, verifiers (drawn on-chain: index >= replicas) in any
        live state, as the job is Auditing on-chain whenever a round draws them. Seats of an
        earlier opening of a reopened job were all slashed as no-shows, and a verifier seat of
        an earlier audit round that never committed was slashed too: neither comes back."""
        seats = self.store.uncommitted_seats(self.me, _OPEN_STATES)
        # A verifier seat only exists once an audit round drew it, so any live state will do
        # (the chain decides at commit time); an executor commits only while Assigned.
        return [s for s in seats if s.verifier or s.state == JobState.ASSIGNED]

    def _request(self, seat: Seat) -> TaskRequest:
        return TaskRequest(
            job_id=seat.job_id,
            round=seat.round,
            role="verifier" if seat.verifier else "executor",
            index=seat.index,
            provider=self.me,
            spec_hash=seat.spec_hash.lower(),
        )

    def _task_id(self, request: TaskRequest) -> str:
        return task_id(self.deployment.chain_id, self.deployment.market, request)

    def _discover(self, report: AgentReport) -> None:
        for seat in self._my_open_seats():
            self._take_seat(seat, report)

    def _take_seat(self, seat: Seat, report: AgentReport) -> bool:
        """Adds a duty for `seat` unless the ledger has one, and sends its task; returns
        whether it added one."""
        request = self._request(seat)
        tid = self._task_id(request)
        if self.ledger.get(tid) is not None:
            return False
        job = self.store.job(seat.job_id)
        if job is None:  # rolled back since the seat was read: the next pass sees it again
            return False
        start = self.strategy.start(seat.job_id, replicas=job.replicas, verifier=seat.verifier)
        duty = DutyRow(
            task_id=tid,
            job_id=seat.job_id,
            round=seat.round,
            role=request.role,
            index=seat.index,
            spec_hash=request.spec_hash,
            status=start.status,
            digest=start.digest,
            note=start.note,
            sends=0,
            notice_posted=False,
        )
        self.ledger.add(duty)  # written before the send: a crash re-sends, never loses
        if start.runs:
            report.queued.append(seat.job_id)
            self._send(duty)
        return True

    def _seats_on_chain(self, job_ids: Sequence[int]) -> list[Seat]:
        """This provider's seats in `job_ids` as the chain's state shows them (uncommitted,
        active, in a state that takes their commit), whatever the index holds: a rolled-back
        chain can come back with a block's state but not its events (a node restarted from a
        state dump), and a seat whose ProviderAssigned never arrives is slashed as a no-show."""
        seats: list[Seat] = []
        for job_id in job_ids:
            row = self.store.job(job_id)
            if row is None:
                continue
            job = self.market.job(job_id)
            if job.state not in _COMMIT_STATES:
                continue
            for index, part in enumerate(self.market.participants(job_id)):
                verifier = index >= job.replicas
                takes_commit = (
                    index >= job.verifiers_from if job.state == JobState.AUDITING else not verifier
                )
                if (
                    part.provider.lower() == self.me.lower()
                    and part.commit_block == 0
                    and job.active_mask >> index & 1
                    and takes_commit
                ):
                    seats.append(
                        Seat(
                            job_id=job_id,
                            state=job.state,
                            spec_hash=row.spec_hash,
                            round=job.round,
                            index=index,
                            verifier=verifier,
                        )
                    )
        return seats

    def _stale_open(self) -> list[int]:
        """Up to `_OPEN_SWEEP_MAX` of the jobs the index has shown Open for over
        `_OPEN_SWEEP_BLOCKS` confirmed blocks, the next ones on each call (a market with many
        unmatched jobs is read a slice per reconcile, not whole)."""
        # Past the confirmations the index waits for: a seat merely not yet confirmed is not
        # one whose event was lost.
        ids = self.store.open_job_ids(
            created_by=self._head - self.settings.confirmations - _OPEN_SWEEP_BLOCKS,
            after=self._open_cursor,
            limit=_OPEN_SWEEP_MAX,
        )
        self._open_cursor = ids[-1] if len(ids) == _OPEN_SWEEP_MAX else 0
        return ids

    def _sweep_seats(self, job_ids: Sequence[int], report: AgentReport) -> None:
        for seat in self._seats_on_chain(job_ids):
            if self._take_seat(seat, report):
                log.warning(
                    "job %d: seat %d is this provider's on the chain but no event of it was "
                    "seen; took it",
                    seat.job_id,
                    seat.index,
                )
                report.reconciled.append(seat.job_id)

    def _send(self, duty: DutyRow) -> None:
        request = TaskRequest(
            job_id=duty.job_id,
            round=duty.round,
            role=duty.role,
            index=duty.index,
            provider=self.me,
            spec_hash=duty.spec_hash,
        )
        self.celery.send_task(
            TASK_NAME,
            args=[request.model_dump()],
            task_id=duty.task_id,
            queue=self.settings.queue,
        )
        self.ledger.update(duty.task_id, sends=duty.sends + 1, sent_at=self.clock())

    def _collect(self, report: AgentReport) -> None:
        queued = self.ledger.with_status(DutyStatus.QUEUED)
        results = self._results([d.task_id for d in queued if d.sent_at is not None])
        broker: _BrokerView | None = None
        for duty in queued:
            if duty.sent_at is None:
                # Never sent (a crash or a Redis outage came between the ledger and the send),
                # or sent again after a rollback: a stored result that is not a digest belongs
                # to the chain as it was, so it goes before the send.
                self._forget_stale(duty)
                self._send(duty)
                continue
            finished = results[duty.task_id]
            if finished is None:
                if broker is None:
                    broker = _BrokerView.read(self.broker_redis, self.settings.queue)
                if self._lost(duty, broker):
                    log.warning(
                        "job %d: task %s is lost (not queued, not held by a worker, not "
                        "running); sending it again",
                        duty.job_id,
                        duty.task_id,
                    )
                    self._send(duty)
                    report.resent.append(duty.job_id)
                elif self.clock() - duty.sent_at > self.settings.resend_after:
                    log.info(
                        "job %d: no result yet; sending task %s again", duty.job_id, duty.task_id
                    )
                    self._send(duty)
                continue
            self._lost_since.pop(duty.task_id, None)
            outcome = finished.outcome
            if outcome is not None and outcome.status is OutcomeStatus.DONE:
                self.ledger.update(
                    duty.task_id,
                    status=DutyStatus.COMPUTED,
                    digest=outcome.digest,
                    artifact=outcome.artifact or None,
                    failure=outcome.failure or None,
                )
                report.computed.append(duty.job_id)
            elif outcome is not None and outcome.status is OutcomeStatus.SKIPPED:
                self.ledger.update(duty.task_id, status=DutyStatus.SKIPPED, note=outcome.reason)
            elif not finished.returned:
                # The run failed outside the job: Redis went away while the worker stored its
                # result, or the time limit killed it. Run it again under the same id; the
                # worker's crash budget (DEPIN_PROVIDER_MAX_DELIVERIES, kept) bounds the reruns
                # and then gives the job up explicitly.
                log.warning(
                    "job %d: task %s failed outside the job (%s); sending it again",
                    duty.job_id,
                    duty.task_id,
                    finished.problem,
                )
                self.redis.delete(self.celery.backend.get_key_for_task(duty.task_id))
                self._send(duty)
                report.resent.append(duty.job_id)
            else:
                # Abandoned or rejected by the worker, or a result no worker wrote.
                note = finished.problem if outcome is None else outcome.reason
                log.warning("job %d: the worker gave the job up: %s", duty.job_id, note)
                # An executor hands its seat back (release) rather than be slashed; a verifier
                # seat cannot be released.
                status = DutyStatus.RELEASING if duty.role == "executor" else DutyStatus.ABANDONED
                self.ledger.update(duty.task_id, status=status, note=note[:2000])
                report.abandoned.append(duty.job_id)

    def _result(self, tid: str) -> _Finished | None:
        """The finished task `tid`; None while it is not finished.

        Read from the result backend directly: Celery's AsyncResult also subscribes to the
        result channel and unsubscribes when collected, and after a Redis outage its result
        consumer gives up for good ("the Celery application must be restarted")."""
        return self._results([tid])[tid]

    def _results(self, tids: Sequence[str]) -> dict[str, _Finished | None]:
        """`_result` of every task in `tids`, read in one round trip (a wake-up reads every
        queued duty's result, and wake-ups come with every block)."""
        if not tids:
            return {}
        backend = self.celery.backend
        raw = self.redis.mget([backend.get_key_for_task(tid) for tid in tids])
        out: dict[str, _Finished | None] = {}
        for tid, payload in zip(tids, raw, strict=True):
            out[tid] = None if payload is None else _finished(backend.decode_result(payload))
        return out

    def _forget_stale(self, duty: DutyRow) -> None:
        finished = self._result(duty.task_id)
        if finished is None:
            return
        outcome = finished.outcome
        if outcome is None or outcome.status is not OutcomeStatus.DONE:
            backend = self.celery.backend
            self.redis.delete(backend.get_key_for_task(duty.task_id), deliveries_key(duty.task_id))

    def _lost(self, duty: DutyRow, broker: _BrokerView) -> bool:
        """Whether `duty`'s task has been gone from Redis (not queued, not held by a live
        worker, no live run) for `_LOST_AFTER` seconds."""
        tid = duty.task_id
        now = time.monotonic()
        gone = (
            broker.queued is not None
            and tid not in broker.queued
            and duty.sent_at is not None
            and self.clock() - duty.sent_at > _LOST_AFTER
            and not self.redis.exists(alive_key(tid), held_key(tid))
        )
        if not gone:
            self._lost_since.pop(tid, None)
            return False
        first = self._lost_since.setdefault(tid, now)
        if now - first < _LOST_AFTER:
            return False
        del self._lost_since[tid]
        return True

    def _release(self, report: AgentReport) -> None:
        """Hands back executor seats that cannot be computed and committed in time: duties the
        worker gave up, and queued ones whose deadline is nearer than the run margin."""
        now = self._chain_now()
        for duty in self.ledger.with_status(DutyStatus.QUEUED):
            if duty.role != "executor" or duty.sent_at is None:
                continue
            row = self.store.job(duty.job_id)
            if row is None or row.state != JobState.ASSIGNED or row.deadline is None:
                continue
            if now + self.settings.run_margin <= row.deadline:
                continue  # time enough either way: no need to ask whether it runs
            running = self._running(duty)
            lead = self.settings.run_margin / 3 if running else self.settings.run_margin
            if now + lead > row.deadline:
                log.warning(
                    "job %d: %s with %.0f s left before the deadline %d; releasing the seat",
                    duty.job_id,
                    "still running" if running else "not started",
                    row.deadline - now,
                    row.deadline,
                )
                self.ledger.update(
                    duty.task_id, status=DutyStatus.RELEASING, note="deadline too near"
                )
        for duty in self.ledger.with_status(DutyStatus.RELEASING):
            reason = self._why_not_release(duty)
            if reason is not None:
                log.warning("job %d: seat not released: %s", duty.job_id, reason)
                self.ledger.update(duty.task_id, status=DutyStatus.ABANDONED, note=reason[:2000])
                continue
            try:
                receipt = self.market.release(duty.job_id)
            except (ContractRevert, TransactionFailed) as exc:
                log.warning("job %d: release refused: %s", duty.job_id, exc)
                self.signer.reset_nonce()
                self.ledger.update(duty.task_id, status=DutyStatus.ABANDONED, note=str(exc)[:2000])
                continue
            self.ledger.update(
                duty.task_id,
                status=DutyStatus.RELEASED,
                note=f"released in {receipt['transactionHash'].to_0x_hex()}",
            )
            report.released.append(duty.job_id)

    def _running(self, duty: DutyRow) -> bool:
        try:
            return bool(self.redis.exists(alive_key(duty.task_id)))
        except redis.RedisError:
            return True  # unknown: assume the best, the short lead still applies

    def _why_not_release(self, duty: DutyRow) -> str | None:
        """Why `duty`'s seat cannot be released, from the chain; None when it can."""
        job = self.market.job(duty.job_id)
        if duty.index >= job.replicas:
            return "a verifier seat cannot be released"
        if job.state != JobState.ASSIGNED:
            return f"job is {job.state.name}"
        if self._seat_holder(duty) != self.me:
            return _SEAT_TAKEN
        if job.commit_mask >> duty.index & 1:
            return "the seat already committed"
        if self._seat_inactive(duty, job):
            return "already released"
        if self._chain_time() > job.deadline:
            return f"the commit deadline {job.deadline} passed"
        return None

    def _copy(self, report: AgentReport) -> None:
        """Copycat test aid: adopts another participant's committed hash and seal."""
        for duty in self.ledger.with_status(DutyStatus.COPYING):
            commitments = self.market.results_committed(
                duty.job_id, from_block=self.deployment.block
            )
            for entry in commitments:
                if to_checksum_address(entry.provider) == self.me:
                    continue
                h, s = entry.result_hash, entry.seal
                if self._open_for_commit(duty) is not None:
                    break
                try:
                    receipt = self.market.commit_raw(duty.job_id, h, s)
                except (ContractRevert, TransactionFailed) as exc:
                    self.ledger.update(
                        duty.task_id, status=DutyStatus.ABANDONED, note=str(exc)[:2000]
                    )
                    break
                self.ledger.update(
                    duty.task_id,
                    status=DutyStatus.COMMITTED,
                    commit_tx=receipt["transactionHash"].to_0x_hex(),
                )
                break

    # ------------------------------------------------------------------ chain writes

    def _open_for_commit(self, duty: DutyRow) -> NoCommit | None:
        """Why `duty` can no longer be committed, from the chain; None when the commit is due.

        The deadline is the job's current one, read from the chain: an executor's is the
        assignment's; a verifier's is the staffing deadline while its round still has open
        seats, and the commit deadline of AuditStaffed (now + verifierExecWindow) once every
        seat is filled, so a verifier drawn early is never given up too soon."""
        job = self.market.job(duty.job_id)
        mine = self._seat_holder(duty) == self.me
        if job.commit_mask >> duty.index & 1:
            if mine:
                return NoCommit(Uncommittable.ON_CHAIN, _FOUND_ON_CHAIN)
            return NoCommit(Uncommittable.SEAT_TAKEN, _SEAT_TAKEN)
        if not mine:
            return NoCommit(Uncommittable.SEAT_TAKEN, _SEAT_TAKEN)
        return self._commit_blocker(duty, job)

    def _seat_holder(self, duty: DutyRow) -> str | None:
        parts = self.market.participants(duty.job_id)
        if duty.index >= len(parts):
            return None
        return to_checksum_address(parts[duty.index].provider)

    def _chain_time(self) -> int:
        return int(self.market.w3.eth.get_block("latest")["timestamp"])

    def _chain_now(self) -> float:
        """Chain time from this cycle's head read, moved on by the local clock."""
        now = self.chain_clock.now()
        return float(self._chain_time()) if now is None else now

    def _commit(self, report: AgentReport) -> None:
        due: list[DutyRow] = []
        for duty in self.ledger.with_status(DutyStatus.COMPUTED):
            blocked = self._open_for_commit(duty)
            if blocked is None:
                due.append(duty)
            elif blocked.why is Uncommittable.ON_CHAIN:
                # Landed before a restart (or by another instance of this agent): adopt it.
                self.ledger.update(duty.task_id, status=DutyStatus.COMMITTED, note=blocked.note)
            else:
                self.ledger.update(duty.task_id, status=DutyStatus.SKIPPED, note=blocked.note)
        if not due:
            return
        results = [(d.job_id, bytes.fromhex(str(d.digest)[2:])) for d in due]
        try:
            receipt = self.market.commit_batch(results)
            landed = [(d, receipt["transactionHash"].to_0x_hex()) for d in due]
        except (ContractRevert, TransactionFailed):
            self.signer.reset_nonce()
            landed = []
            for d, (job_id, digest) in zip(due, results, strict=True):
                try:
                    tx = self.market.commit(job_id, digest)["transactionHash"].to_0x_hex()
                except (ContractRevert, TransactionFailed) as exc:
                    log.warning("job %d: commit refused: %s", job_id, exc)
                    self.signer.reset_nonce()
                    self.ledger.update(d.task_id, status=DutyStatus.ABANDONED, note=str(exc)[:2000])
                    report.abandoned.append(job_id)
                    continue
                landed.append((d, tx))
        for d, tx in landed:
            self.ledger.update(d.task_id, status=DutyStatus.COMMITTED, commit_tx=tx)
            report.committed.append(d.job_id)
        if landed:
            log.info("commit landed for jobs %s", [d.job_id for d, _ in landed])

    def _announce(self) -> None:
        """Signed notices of where the encrypted results are, for committed duties (also those
        closed while the relayer was down: the requester still needs the result)."""
        for duty in self.ledger.unannounced():
            notice = sign_result_notice(
                self.signer.account,
                chain_id=self.deployment.chain_id,
                market=self.deployment.market,
                job_id=duty.job_id,
                artifact=str(duty.artifact),
                timestamp=int(self.clock()),
            )
            # A transport error ends the step: the relayer outage is handled by the caller.
            response = self.http.post("/results", notice)
            if response.status_code == 200:
                self.ledger.update(duty.task_id, notice_posted=True)
            elif response.status_code >= 500 or response.status_code == 429:
                log.warning("job %d: result notice not taken now: %s", duty.job_id, response.text)
                return  # the relayer is unwell: the next cycle tries again
            else:
                # Refused for good (sending it again would not change the answer): recorded,
                # not retried every cycle.
                log.warning("job %d: result notice refused: %s", duty.job_id, response.text)
                self.ledger.update(
                    duty.task_id, notice_posted=True, note=f"notice refused: {response.text[:500]}"
                )

    def _reveal(self, report: AgentReport) -> None:
        for duty in self.ledger.with_status(DutyStatus.COMMITTED):
            job = self.store.job(duty.job_id)
            if job is None or job.state != JobState.REVEALING or duty.digest is None:
                continue
            chain_job = self.market.job(duty.job_id)
            if chain_job.state != JobState.REVEALING or not chain_job.commit_mask >> duty.index & 1:
                continue
            if chain_job.reveal_mask >> duty.index & 1:
                self.ledger.update(duty.task_id, status=DutyStatus.REVEALED, note=_FOUND_ON_CHAIN)
                continue
            try:
                receipt = self.market.reveal(duty.job_id, bytes.fromhex(duty.digest[2:]))
            except (ContractRevert, TransactionFailed) as exc:
                log.warning("job %d: reveal refused: %s", duty.job_id, exc)
                self.signer.reset_nonce()
                self.ledger.update(duty.task_id, status=DutyStatus.ABANDONED, note=str(exc)[:2000])
                report.abandoned.append(duty.job_id)
                continue
            self.ledger.update(
                duty.task_id,
                status=DutyStatus.REVEALED,
                reveal_tx=receipt["transactionHash"].to_0x_hex(),
            )
            report.revealed.append(duty.job_id)

    def _staff_own_audits(self, report: AgentReport) -> None:
        """Insurance against a keeper that is down: an audit of a job this provider executed
        whose seats are still open `staff_after_blocks` blocks after its seed block gets a
        staffAudit call from here (anyone may call it; the contract draws the verifiers, the
        caller chooses nothing). Without it an unstaffed audit ends with no verdict: the job is
        refunded and the executor, honest or not, goes unpaid."""
        wait = self.settings.staff_after_blocks
        if wait == 0:
            return
        ids = self.store.executed_jobs(self.me, JobState.AUDITING)
        # Only jobs still in an audit need remembering.
        self._staffed_at = {j: t for j, t in self._staffed_at.items() if j in ids}
        if not ids:
            return
        head = self.market.w3.eth.block_number
        now = self._chain_time()
        clock = time.monotonic()
        for job_id in ids:
            if clock - self._staffed_at.get(job_id, -_STAFF_RETRY) < _STAFF_RETRY:
                continue  # a call landed moments ago; its block must not wake another at once
            job = self.market.job(job_id)
            if not job.needs_staffing or head < job.seed_block + wait or now > job.deadline:
                continue
            self._staffed_at[job_id] = clock
            try:
                self.market.staff_audit(job_id)
            except (ContractRevert, TransactionFailed) as exc:
                # Staffed by the keeper in the meantime, or no eligible provider left to draw.
                log.info("job %d: staffAudit not needed or refused: %s", job_id, exc)
                self.signer.reset_nonce()
                continue
            log.info("job %d: called staffAudit for the audit of this provider's job", job_id)
            report.staffed.append(job_id)

    def _close_finished(self) -> None:
        for duty in self.ledger.with_status(
            DutyStatus.COMMITTED, DutyStatus.REVEALED, DutyStatus.COPYING, DutyStatus.IGNORED
        ):
            job = self.store.job(duty.job_id)
            if job is not None and job.state.terminal:
                self.ledger.update(
                    duty.task_id, status=DutyStatus.CLOSED, note=f"job {job.state.name}"
                )

    # ------------------------------------------------------------------ liveness

    def _heartbeat(self) -> bool:
        """Sends a heartbeat when one is due. While the relayer is down the caller skips this
        (with backoff); heartbeats the relayer refuses back off the same way."""
        now = self.clock()
        if now - self._last_heartbeat < self.heartbeat_interval:
            return False
        if not self._heartbeats_refused.ready():
            return False
        load = len(self.ledger.with_status(DutyStatus.QUEUED))
        hb = sign_heartbeat(
            self.signer.account,
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            timestamp=int(now),
            load=load,
            capacity=self.settings.capacity,
            profiles=self.profiles,
        )
        response = self.http.post("/heartbeats", hb)
        if response.status_code != 200:
            self._heartbeats_refused.failed(f"refused ({response.status_code}): {response.text}")
            return False
        self._heartbeats_refused.ok()
        self._last_heartbeat = now
        self._follow_pace(response)
        return True

    @property
    def heartbeat_interval(self) -> int:
        """Seconds between heartbeats: DEPIN_PROVIDER_HEARTBEAT_INTERVAL, or the relayer's
        interval when that is shorter (it counts a provider silent after a few of its own)."""
        own = self.settings.heartbeat_interval
        return own if self._relayer_interval is None else min(own, self._relayer_interval)

    def _follow_pace(self, response: httpx.Response) -> None:
        try:
            announced = response.json().get("interval")
        except (ValueError, AttributeError):
            return
        if not isinstance(announced, int) or announced < 1 or announced == self._relayer_interval:
            return
        self._relayer_interval = announced
        if announced < self.settings.heartbeat_interval:
            log.info(
                "the relayer expects a heartbeat every %d s; sending at that pace "
                "(DEPIN_PROVIDER_HEARTBEAT_INTERVAL is %d)",
                announced,
                self.settings.heartbeat_interval,
            )


@dataclass(frozen=True)
class _Finished:
    """A finished task, as the result backend holds it."""

    #: Whether the task returned; False when it raised or was killed (Celery FAILURE, REVOKED).
    returned: bool
    #: What it returned; None when it did not return, or returned something no worker writes.
    outcome: TaskOutcome | None
    #: Why there is no outcome: the stored failure, or why the returned value is unreadable.
    problem: str


@dataclass(frozen=True)
class _BrokerView:
    """The task ids waiting in a queue's Redis lists, read once per cycle. (A task a worker
    took is held in kombu's `unacked` hash until acknowledged, also when that worker died:
    the worker's `depin:held:<task id>` key, not that hash, tells whether it still lives.)"""

    #: None when the broker is not Redis: what waits there is not known.
    queued: frozenset[str] | None

    @classmethod
    def read(cls, client: redis.Redis | None, queue: str) -> _BrokerView:
        if client is None:
            return cls(None)
        # kombu keeps a queue's messages of priority > 0 in lists suffixed "\x06\x16<step>".
        lists = [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]
        queued: set[str] = set()
        for name in lists:
            for raw in client.lrange(name, 0, -1):
                tid = _message_id(raw)
                if tid is not None:
                    queued.add(tid)
        return cls(frozenset(queued))


def _message_id(raw: bytes | str) -> str | None:
    """The task id in the headers of one kombu message (JSON)."""
    try:
        message = json.loads(raw)
        return str(message["headers"]["id"])
    except (ValueError, TypeError, KeyError):
        return None


def _redacted(url: str) -> str:
    """`url` without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return scheme + sep + rest.rsplit("@", 1)[1]


def _short(value: Any) -> str:
    """A stored task failure, in one short line."""
    if isinstance(value, dict):
        return f"{value.get('exc_type', 'error')}: {value.get('exc_message', '')}"[:300]
    return repr(value)[:300]


def run_agent(settings: ProviderSettings) -> None:
    """Runs the agent of `settings` until SIGTERM or SIGINT."""
    # httpx logs every request at INFO: a line per heartbeat would drown the agent's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = Agent.from_settings(settings)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after this cycle", signum)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.run(stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        agent.close()


if __name__ == "__main__":  # python -m provider.agent: the agent configured by DEPIN_PROVIDER_*
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_agent(ProviderSettings())
