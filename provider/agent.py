"""The provider agent: follows the chain for this provider's duties, hands the work to Celery
workers, commits and reveals on time, and heartbeats to the relayer.

Each `step()`:

1. the listener (the relayer's, with this agent's own database: explicit block ranges, a
   checkpoint, reorg rollback, events applied once) applies what became final;
2. every participation of this provider that still needs a commit becomes a duty in the ledger
   and, for an honest provider, one Celery task with a deterministic id (`worker.task_id`);
3. finished tasks give their digest (or, past the delivery budget, the duty is abandoned); a
   task silent for `resend_after` seconds is sent again under the same id;
4. computed duties are committed in one `commitBatch` after re-reading the chain (a commitment
   already there, from before a crash, is adopted, never sent twice; a deadline already passed
   is not attempted); the encrypted result is announced to the relayer with a signed notice;
5. committed duties of jobs in the reveal phase are revealed, again after re-reading the chain;
6. an audit of a job this provider executed that is still unstaffed a few blocks after its
   seed block gets a `staffAudit` call from here (the keeper normally makes it);
7. a signed heartbeat goes to the relayer every `heartbeat_interval` seconds.

Nobody assigns verifiers: the contract draws them (stake-weighted, `staffAudit`) and each drawn
provider sees a ProviderAssigned event for itself with an index >= the job's replicas. That is
a verifier duty: the agent runs the job like an executor would, commits while the job is
Auditing (by the job's current deadline, which AuditStaffed moves to the commit deadline once
the round is full) and reveals while it is Revealing. An escalation round draws fresh
verifiers, who get their own ProviderAssigned events.

`--behavior` other than honest is a test aid (DESIGN section 4) and gets the provider slashed:
`lazy` commits a made-up digest without running anything, `copycat` copies another
participant's hash and seal from its commit (and cannot reveal), `no-show` never commits.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import httpx
from celery import Celery
from eth_utils.address import to_checksum_address
from sqlalchemy import select
from web3.exceptions import Web3Exception

from marketplace.protocol.chain import connect
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import ChainError, ConfigError, ContractRevert, TransactionFailed
from marketplace.protocol.heartbeat import sign_heartbeat
from marketplace.protocol.results import sign_result_notice
from marketplace.relayer.listener import Listener, RPCUnavailable
from marketplace.relayer.store import JobRow, ParticipantRow, Store
from provider.ledger import DutyRow, Ledger
from provider.settings import Behavior, ProviderSettings
from provider.worker import TASK_NAME, TaskRequest, make_celery, task_id

__all__ = ["Agent", "AgentReport", "run_agent"]

log = logging.getLogger(__name__)

_COMMIT_STATES = (JobState.ASSIGNED, JobState.AUDITING)
_OPEN_STATES = (JobState.ASSIGNED, JobState.COMMITTED, JobState.AUDITING, JobState.REVEALING)


@dataclass
class AgentReport:
    """What one cycle did, by job id."""

    events: int = 0
    queued: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    revealed: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    #: Audits of this provider's own jobs it called staffAudit for (the keeper was late).
    staffed: list[int] = field(default_factory=list)
    heartbeat: bool = False


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
        self.clock = clock
        self.behavior: Behavior = settings.behavior
        self.listener = Listener(
            market.w3, self.deployment, store, confirmations=settings.confirmations
        )
        self.http = httpx.Client(base_url=settings.relayer_url.rstrip("/"), timeout=10.0)
        self._last_heartbeat = 0.0
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
        market = Market(connect(settings.rpc_url, deployment.chain_id), deployment, account)
        url = settings.database_url(account.address)
        return cls(settings, market=market, store=Store(url), ledger=Ledger(url))

    def close(self) -> None:
        self.http.close()
        self.store.close()
        self.ledger.close()

    # ------------------------------------------------------------------ one cycle

    def step(self) -> AgentReport:
        report = AgentReport()
        report.events = self.listener.poll_once()
        self._discover(report)
        self._collect(report)
        self._copy()
        self._commit(report)
        self._announce()
        self._reveal(report)
        self._staff_own_audits(report)
        self._close_finished()
        report.heartbeat = self._heartbeat()
        return report

    def run(self, stop: threading.Event) -> None:
        """Steps every `poll_interval` seconds until `stop` is set; an RPC outage backs off."""
        log.info("agent of %s started (%s)", self.me, self.behavior)
        backoff = self.settings.poll_interval
        while not stop.is_set():
            try:
                report = self.step()
            except (RPCUnavailable, ChainError, Web3Exception, httpx.TransportError) as exc:
                log.warning("%s; retrying in %.1f s", exc, backoff)
                self.signer.reset_nonce()
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.settings.poll_interval
            if report.queued or report.committed or report.revealed or report.abandoned:
                log.info(
                    "queued %s committed %s revealed %s abandoned %s",
                    report.queued,
                    report.committed,
                    report.revealed,
                    report.abandoned,
                )
            if report.staffed:
                log.info("staffed the audits of own jobs %s", report.staffed)
            stop.wait(self.settings.poll_interval)

    # ------------------------------------------------------------------ duties

    def _my_open_participations(self) -> list[tuple[JobRow, ParticipantRow]]:
        """This provider's seats that have not committed and still hold collateral, in live
        jobs: executors while Assigned, verifiers (drawn on-chain: index >= replicas) in any
        live state, as the job is Auditing on-chain whenever a round draws them. Seats of an
        earlier opening of a reopened job were all slashed as no-shows, and a verifier seat of
        an earlier audit round that never committed was slashed too: neither comes back."""
        with self.store.session() as s:
            rows = s.execute(
                select(JobRow, ParticipantRow)
                .join(ParticipantRow, ParticipantRow.job_id == JobRow.job_id)
                .where(
                    ParticipantRow.provider == self.me,
                    ParticipantRow.commit_block.is_(None),
                    ParticipantRow.slashed.is_(None),
                    ParticipantRow.released.is_(False),
                    JobRow.state.in_(_OPEN_STATES),
                )
            ).all()
        # A verifier seat only exists once an audit round drew it, so any live state will do
        # (the chain decides at commit time); an executor commits only while Assigned.
        return [(job, p) for job, p in rows if p.verifier or job.state == JobState.ASSIGNED]

    def _request(self, job: JobRow, p: ParticipantRow) -> TaskRequest:
        return TaskRequest(
            job_id=job.job_id,
            round=p.round,
            role="verifier" if p.verifier else "executor",
            index=p.index,
            provider=self.me,
            spec_hash=job.spec_hash.lower(),
        )

    def _task_id(self, request: TaskRequest) -> str:
        return task_id(self.deployment.chain_id, self.deployment.market, request)

    def _discover(self, report: AgentReport) -> None:
        for job, p in self._my_open_participations():
            request = self._request(job, p)
            tid = self._task_id(request)
            if self.ledger.get(tid) is not None:
                continue
            duty = DutyRow(
                task_id=tid,
                job_id=job.job_id,
                round=p.round,
                role=request.role,
                index=p.index,
                spec_hash=request.spec_hash,
                status="queued",
                sends=0,
                notice_posted=False,
            )
            if self.behavior == "honest":
                self.ledger.add(duty)  # written before the send: a crash re-sends, never loses
                self._send(duty)
                report.queued.append(job.job_id)
            elif self.behavior == "lazy" or (
                self.behavior == "copycat" and job.replicas == 1 and not p.verifier
            ):
                # Test aid: a digest made up without running the job (a copycat executor of a
                # single-replica job has nobody to copy and behaves the same).
                duty.status, duty.digest = "computed", "0x" + _made_up_digest(job.job_id).hex()
                self.ledger.add(duty)
            elif self.behavior == "copycat":
                duty.status = "copying"
                self.ledger.add(duty)
            else:  # no-show
                duty.status, duty.note = "ignored", "no-show behaviour: never commits"
                self.ledger.add(duty)

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
        for duty in self.ledger.with_status("queued"):
            result = self.celery.AsyncResult(duty.task_id)
            if not result.ready():
                if duty.sent_at is None or self.clock() - duty.sent_at > self.settings.resend_after:
                    log.info(
                        "job %d: no result yet; sending task %s again", duty.job_id, duty.task_id
                    )
                    self._send(duty)
                continue
            value: Any = result.result
            if result.successful() and isinstance(value, dict) and value.get("status") == "done":
                self.ledger.update(
                    duty.task_id,
                    status="computed",
                    digest=str(value["digest"]),
                    artifact=str(value["artifact"]) or None,
                    failure=str(value["failure"]) or None,
                )
                report.computed.append(duty.job_id)
            elif (
                result.successful() and isinstance(value, dict) and value.get("status") == "skipped"
            ):
                self.ledger.update(duty.task_id, status="skipped", note=str(value.get("reason")))
            else:
                note = str(value.get("reason")) if isinstance(value, dict) else repr(value)
                log.warning("job %d: the worker gave the job up: %s", duty.job_id, note)
                self.ledger.update(duty.task_id, status="abandoned", note=note[:2000])
                report.abandoned.append(duty.job_id)

    def _copy(self) -> None:
        """Copycat test aid: adopts another participant's committed hash and seal."""
        for duty in self.ledger.with_status("copying"):
            logs = self.market.market.events.ResultCommitted().get_logs(
                argument_filters={"jobId": duty.job_id}, from_block=self.deployment.block
            )
            for entry in logs:
                if to_checksum_address(entry["args"]["provider"]) == self.me:
                    continue
                h, s = bytes(entry["args"]["resultHash"]), bytes(entry["args"]["seal"])
                if self._open_for_commit(duty) is not None:
                    break
                try:
                    receipt = self.market.commit_raw(duty.job_id, h, s)
                except (ContractRevert, TransactionFailed) as exc:
                    self.ledger.update(duty.task_id, status="abandoned", note=str(exc)[:2000])
                    break
                self.ledger.update(
                    duty.task_id,
                    status="committed",
                    commit_tx=receipt["transactionHash"].to_0x_hex(),
                )
                break

    # ------------------------------------------------------------------ chain writes

    def _open_for_commit(self, duty: DutyRow) -> str | None:
        """Why `duty` can no longer be committed ("found on-chain" when its commitment is
        already there), from the chain; None when the commit is due.

        The deadline is the job's current one, read from the chain: an executor's is the
        assignment's; a verifier's is the staffing deadline while its round still has open
        seats, and the commit deadline of AuditStaffed (now + verifierExecWindow) once every
        seat is filled, so a verifier drawn early is never given up too soon."""
        job = self.market.job(duty.job_id)
        if job.commit_mask >> duty.index & 1:
            if self._seat_holder(duty) == self.me:
                return "found on-chain"
            return "the seat belongs to another provider (job reopened)"
        if job.state not in _COMMIT_STATES:
            return f"job is {job.state.name}; commits closed"
        if (job.state == JobState.AUDITING) != (duty.role == "verifier"):
            return f"job is {job.state.name}; a {duty.role} cannot commit now"
        if duty.role == "verifier" and duty.index < job.verifiers_from:
            return f"audit round {job.round} has other verifiers; this seat's round is over"
        if self._seat_holder(duty) != self.me:
            return "the seat belongs to another provider (job reopened)"
        if self._chain_time() > job.deadline:
            return f"the commit deadline {job.deadline} passed"
        return None

    def _seat_holder(self, duty: DutyRow) -> str | None:
        parts = self.market.participants(duty.job_id)
        if duty.index >= len(parts):
            return None
        return to_checksum_address(parts[duty.index].provider)

    def _chain_time(self) -> int:
        return int(self.market.w3.eth.get_block("latest")["timestamp"])

    def _commit(self, report: AgentReport) -> None:
        due: list[DutyRow] = []
        for duty in self.ledger.with_status("computed"):
            reason = self._open_for_commit(duty)
            if reason == "found on-chain":
                # Landed before a restart (or by another instance of this agent): adopt it.
                self.ledger.update(duty.task_id, status="committed", note=reason)
            elif reason is not None:
                self.ledger.update(duty.task_id, status="skipped", note=reason)
            else:
                due.append(duty)
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
                    self.ledger.update(d.task_id, status="abandoned", note=str(exc)[:2000])
                    report.abandoned.append(job_id)
                    continue
                landed.append((d, tx))
        for d, tx in landed:
            self.ledger.update(d.task_id, status="committed", commit_tx=tx)
            report.committed.append(d.job_id)

    def _announce(self) -> None:
        """Signed notices of where the encrypted results are, for committed duties."""
        for duty in self.ledger.with_status("committed", "revealed"):
            if duty.notice_posted or not duty.artifact:
                continue
            notice = sign_result_notice(
                self.signer.account,
                chain_id=self.deployment.chain_id,
                market=self.deployment.market,
                job_id=duty.job_id,
                artifact=duty.artifact,
                timestamp=int(self.clock()),
            )
            try:
                response = self.http.post("/results", content=notice.model_dump_json())
            except httpx.TransportError as exc:
                log.warning("job %d: result notice not delivered: %s", duty.job_id, exc)
                return
            if response.status_code == 200:
                self.ledger.update(duty.task_id, notice_posted=True)
            else:
                log.warning("job %d: result notice refused: %s", duty.job_id, response.text)

    def _reveal(self, report: AgentReport) -> None:
        for duty in self.ledger.with_status("committed"):
            job = self.store.job(duty.job_id)
            if job is None or job.state != JobState.REVEALING or duty.digest is None:
                continue
            chain_job = self.market.job(duty.job_id)
            if chain_job.state != JobState.REVEALING or not chain_job.commit_mask >> duty.index & 1:
                continue
            if chain_job.reveal_mask >> duty.index & 1:
                self.ledger.update(duty.task_id, status="revealed", note="found on-chain")
                continue
            try:
                receipt = self.market.reveal(duty.job_id, bytes.fromhex(duty.digest[2:]))
            except (ContractRevert, TransactionFailed) as exc:
                log.warning("job %d: reveal refused: %s", duty.job_id, exc)
                self.signer.reset_nonce()
                self.ledger.update(duty.task_id, status="abandoned", note=str(exc)[:2000])
                report.abandoned.append(duty.job_id)
                continue
            self.ledger.update(
                duty.task_id, status="revealed", reveal_tx=receipt["transactionHash"].to_0x_hex()
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
        with self.store.session() as s:
            ids = list(
                s.scalars(
                    select(JobRow.job_id)
                    .join(ParticipantRow, ParticipantRow.job_id == JobRow.job_id)
                    .where(
                        ParticipantRow.provider == self.me,
                        ParticipantRow.verifier.is_(False),
                        ParticipantRow.slashed.is_(None),
                        JobRow.state == JobState.AUDITING,
                    )
                    .distinct()
                )
            )
        if not ids:
            return
        head = self.market.w3.eth.block_number
        now = self._chain_time()
        for job_id in ids:
            job = self.market.job(job_id)
            if not job.needs_staffing or head < job.seed_block + wait or now > job.deadline:
                continue
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
        for duty in self.ledger.with_status("committed", "revealed", "copying", "ignored"):
            job = self.store.job(duty.job_id)
            if job is not None and job.state.terminal:
                self.ledger.update(duty.task_id, status="closed", note=f"job {job.state.name}")

    # ------------------------------------------------------------------ liveness

    def _heartbeat(self) -> bool:
        now = self.clock()
        if now - self._last_heartbeat < self.settings.heartbeat_interval:
            return False
        load = len(self.ledger.with_status("queued"))
        hb = sign_heartbeat(
            self.signer.account,
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            timestamp=int(now),
            load=load,
            capacity=self.settings.capacity,
            profiles=self.profiles,
        )
        try:
            response = self.http.post("/heartbeats", content=hb.model_dump_json())
        except httpx.TransportError as exc:
            log.warning("heartbeat not delivered to %s: %s", self.settings.relayer_url, exc)
            return False
        if response.status_code != 200:
            log.warning("heartbeat refused (%d): %s", response.status_code, response.text)
            return False
        self._last_heartbeat = now
        return True


def _made_up_digest(job_id: int) -> bytes:
    """The lazy test aid's digest: a value no real run produces."""
    return hashlib.sha256(b"depin-lazy-provider" + job_id.to_bytes(32, "big")).digest()


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
