"""The relayer service: one loop that follows the chain, matches, assigns and keeps.

Each `step()`:

1. the listener applies what became final since the last step;
2. provider views are built from the store (registry terms, free stake = stake - locked -
   unbonding, counters, load = participations in live jobs) and liveness (heartbeats, unless
   `require_heartbeats` is turned off: providers silent for `heartbeat_missed` intervals are
   not matched, DESIGN section 4);
3. the jobs the store shows Open (after the listener caught up) go to one `matcher.match`
   call; providers excluded from a job by an earlier no-show are excluded again, and so is the
   job's requester;
4. assignments go out through the `Submitter` (`assignBatch`; stale jobs, which the contract
   skips with BatchItemSkipped, are dropped);
5. the keeper reads the chain's view of every non-terminal job and submits the audit draws,
   the verifier staffing (`staffAudits`: the contract draws the verifiers on-chain; nobody
   names them, the relayer included), finalizations and expiries that are due. Items the
   contract keeps skipping for an unchanged job are not retried (`keeper.SkipBook`).

Nothing is assigned twice: jobs this relayer assigned stay out of matching until the listener's
checkpoint passes the block they were assigned in, and a job the store still shows Open but the
chain does not is dropped by the submitter with the contract's error. An assignment whose block
the chain no longer has (a node restarted from an older state dump, a reorg) leaves that book at
once, so the job is matched again as soon as the listener has rolled the store back.

Outages: `run` survives the RPC going away (refused, reset, timed out, a node restarted with a
shorter chain) and the database going away (locked, unreadable, a database server restarting).
Each outage is logged once (`marketplace.protocol.outage.Outage`: one warning, one recovery line
with its length), the loop backs off (doubling from `poll_interval` up to `max_backoff`) and
resumes by itself. A failed step writes nothing half-way: the listener applies a block range and
its checkpoint in one transaction, and the submitter re-reads the key's nonce from the chain at
every call. While only the database is down the keeper keeps going from the chain, over the live
jobs the store named last, so no audit goes unstaffed and no finalization or expiry waits for
the database; after any outage one step catches up on every call that fell due.

Leader and standby (marketplace.relayer.leader): on PostgreSQL several relayers can share one
database; each step first takes or checks the lead, and a relayer that does not lead does
nothing but let its API serve the shared index, until the leader dies and it takes over. On
SQLite the relayer always leads.

The HTTP API served next to the loop (`depin relayer run`) reads the same store and writes
heartbeats into the same liveness book; marketplace.cli.relayer wires the two together.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import BlockNotFound

from marketplace.index.listener import Listener
from marketplace.index.liveness import StoreLivenessBook
from marketplace.index.outages import RPC_ERRORS, database_unavailable, reason, safe_url
from marketplace.index.store import Store
from marketplace.matching.matcher import VALID_REPLICAS, OpenJob, ProviderView, match
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.deployment import Deployment, connect_deployment
from marketplace.protocol.errors import ConfigError
from marketplace.protocol.heartbeat import Heartbeat, LivenessBook
from marketplace.protocol.outage import Outage
from marketplace.protocol.wakeup import Wakeup, following
from marketplace.relayer import keeper
from marketplace.relayer.leader import Leadership
from marketplace.relayer.settings import RelayerSettings
from marketplace.relayer.submitter import Dropped, Submitter, read_job_views

__all__ = ["Relayer", "StepReport"]

log = logging.getLogger(__name__)

#: Seconds a cached view of a live job serves the keeper at most: bounds what a missed or
#: not yet confirmed event can leave stale (the chain decides every call anyway).
VIEW_REFRESH_SECONDS: Final = 10.0


@dataclass
class StepReport:
    """What one cycle did."""

    #: New events the listener applied.
    events: int = 0
    #: The listener's checkpoint block after the poll.
    checkpoint: int = 0
    #: Open jobs considered.
    open_jobs: int = 0
    #: Job ids whose executors landed on chain in this step.
    assigned: list[int] = field(default_factory=list)
    #: Keeper calls that landed (not skipped), per kind.
    drawn: list[int] = field(default_factory=list)
    staffed: list[int] = field(default_factory=list)
    finalized: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    #: Items the chain refused or skipped (stale or no longer valid), with the decoded error.
    dropped: list[Dropped] = field(default_factory=list)
    #: False when another relayer leads: this step did nothing.
    leading: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "checkpoint": self.checkpoint,
            "leading": self.leading,
            "open_jobs": self.open_jobs,
            "assigned": self.assigned,
            "drawn": self.drawn,
            "staffed": self.staffed,
            "finalized": self.finalized,
            "expired": self.expired,
            "dropped": [
                {"kind": d.kind, "job_id": d.job_id, "error": d.error} for d in self.dropped
            ],
        }


class Relayer:
    """The relayer of one deployment, configured by `settings` alone: its chain, matcher key,
    database and every knob. `liveness` is the heartbeat book it shares with the HTTP API
    (None: a `StoreLivenessBook` in its database, which relayers sharing that database share);
    `clock` tells liveness time; `on_lead(leading)` hears of each change of lead."""

    def __init__(
        self,
        settings: RelayerSettings,
        *,
        liveness: LivenessBook | None = None,
        clock: Callable[[], float] = time.time,
        on_lead: Callable[[bool], None] | None = None,
    ) -> None:
        self.settings = settings
        deployment = Deployment.load(settings.deployment_file)
        w3 = connect_deployment(settings.rpc_url, deployment)
        account: LocalAccount = settings.account()
        self.market = Market(w3, deployment, account, fees=settings.fee_policy())
        self.w3: Web3 = self.market.w3
        self.deployment = self.market.deployment
        self.store = _open_store(settings)
        #: Who leads among the relayers on this database (always this one on SQLite).
        self.leadership = Leadership(self.store, self.deployment, on_lead)
        self.liveness: LivenessBook = (
            liveness if liveness is not None else StoreLivenessBook(self.store)
        )
        self.clock = clock
        endpoint = getattr(self.w3.provider, "endpoint_uri", None) or "the chain"
        #: The RPC and the database, each logged once per outage (shared with the submitter).
        self.rpc_outage = Outage(
            f"RPC {endpoint}",
            log,
            first_delay=settings.poll_interval,
            max_delay=settings.backoff_limit,
        )
        self.db_outage = Outage(
            f"relayer database {safe_url(self.store.url)}",
            log,
            first_delay=settings.poll_interval,
            max_delay=settings.backoff_limit,
        )
        self.listener = Listener(
            self.w3, self.deployment, self.store, confirmations=settings.confirmations
        )
        self.submitter = Submitter(
            self.market, max_batch=settings.max_batch, outage=self.rpc_outage
        )
        #: Keeper items the contract skipped, so an unchanged job is not retried forever.
        self.skips = keeper.SkipBook(settings.max_skips)
        #: job id -> (block, block hash) its assignment landed in, until the listener's
        #: checkpoint passes that block or the chain turns out not to have it any more.
        self._in_flight: dict[int, tuple[int, str]] = {}
        #: The live job ids the store named last: the keeper's worklist while it is down.
        self._live_ids: list[int] = []
        #: job id -> when (monotonic) a staffing call for it last landed; the round may still
        #: be open (no eligible verifier), so it rests `keeper.STAFF_RETRY_SECONDS` before the
        #: next call.
        self._staffed_at: dict[int, float] = {}
        #: job id -> (the index's last event block for it when read, the chain's view of it):
        #: the keeper's reads of live jobs, which otherwise cost two calls per job per block.
        self._views: dict[int, tuple[int | None, keeper.JobView]] = {}
        self._views_read_at = 0.0
        self._rollbacks_seen = 0

    def close(self) -> None:
        try:
            self.leadership.release()
        except Exception as exc:  # the database is gone: so is the lock
            log.debug("releasing the lead: %s", exc)
        self.store.close()

    # ------------------------------------------------------------------ one cycle

    def step(self) -> StepReport:
        """One cycle: follow the chain, match, assign, keep. Raises what made it fail (an RPC
        or a database error) after doing what it could without the failed part: while the
        database is down the keeper still runs over the last known live jobs."""
        report = StepReport()
        try:
            if not self.leadership.check():
                # A standby: the leader writes the index and sends every transaction.
                self._live_ids = []
                report.leading = False
                return report
            self._follow_and_match(report)
            live = self.store.live_job_blocks()
        except Exception as exc:
            if database_unavailable(exc) and self._live_ids:
                # The chain is the keeper's truth; only its worklist came from the store.
                with contextlib.suppress(*RPC_ERRORS):
                    self._keep(report, self._live_ids)
            raise
        live_ids = list(live)
        self._live_ids = live_ids
        self.skips.forget(live_ids)
        self._keep(report, live_ids, live)
        return report

    def _follow_and_match(self, report: StepReport) -> None:
        report.events = self.listener.poll_once()
        if self.listener.rollbacks != self._rollbacks_seen:
            self._rollbacks_seen = self.listener.rollbacks
            self._views.clear()
        checkpoint = self.store.checkpoint(self.deployment.chain_id)
        report.checkpoint = checkpoint.block_number if checkpoint is not None else 0
        self._settle_in_flight(report.checkpoint)

        providers = self._provider_views()
        open_jobs = self._open_jobs()
        report.open_jobs = len(open_jobs)
        chosen = match(open_jobs, providers)

        executors = [(a.job_id, list(a.providers)) for a in chosen]
        if executors:
            result = self.submitter.submit_assignments(executors)
            for tx in result.landed:
                block_hash = _hex(tx.receipt["blockHash"])
                for job_id in tx.done_ids:
                    self._in_flight[job_id] = (tx.block, block_hash)
            report.assigned = result.landed_ids()
            report.dropped.extend(result.dropped)

    def _settle_in_flight(self, checkpoint: int) -> None:
        """Forgets assignments the listener has applied, and those whose block the chain lost
        (a restart from an older state, a reorg): their jobs are Open again."""
        self._in_flight = {j: b for j, b in self._in_flight.items() if b[0] > checkpoint}
        if not self._in_flight:
            return
        current: dict[int, str | None] = {}
        for block, _ in set(self._in_flight.values()):
            try:
                current[block] = _hex(self.w3.eth.get_block(block)["hash"])
            except BlockNotFound:
                current[block] = None
        lost = {j for j, (b, h) in self._in_flight.items() if current[b] != h}
        if lost:
            log.warning(
                "assignments of jobs %s are gone from the chain (node restarted from an older "
                "state or a reorg); they are matched again",
                sorted(lost),
            )
            self._in_flight = {j: b for j, b in self._in_flight.items() if j not in lost}

    def _keep(
        self,
        report: StepReport,
        live_ids: list[int],
        last_blocks: Mapping[int, int | None] | None = None,
    ) -> None:
        """The keeper's pass: every draw, staffing, finalization and expiry due now, read from
        the chain's view of `live_ids`, in one plan (so an outage is caught up in one pass).
        With `last_blocks` (the index's last event block per job) a job's view is read again
        only once that moves, the keeper acted on the job, or `VIEW_REFRESH_SECONDS` passed."""
        if not live_ids:
            return
        head = self.w3.eth.get_block("latest")
        views = self._job_views(live_ids, last_blocks)
        clock = time.monotonic()
        self._staffed_at = {
            j: t
            for j, t in self._staffed_at.items()
            if clock - t < keeper.STAFF_RETRY_SECONDS and j in live_ids
        }
        plan = keeper.plan(
            views,
            int(head["timestamp"]),
            int(head["number"]),
            self.settings.max_batch,
            self.skips,
            staff_resting=self._staffed_at.keys(),
        )
        if plan.empty:
            return
        for kind in keeper.KINDS:  # acted on: the chain decides what they are now
            for job_id in plan.ids(kind):
                self._views.pop(job_id, None)
        result = self.submitter.submit_keeper(plan)
        report.drawn += result.landed_ids("draw_audits")
        report.staffed += result.landed_ids("staff_audits")
        for job_id in result.landed_ids("staff_audits"):
            self._staffed_at[job_id] = clock
        report.finalized += result.landed_ids("finalize")
        report.expired += result.landed_ids("expire")
        report.dropped.extend(result.dropped)
        by_id = {v.job_id: v for v in views}
        for kind, skip in result.skipped():
            if skip.job_id in by_id:
                self.skips.record(by_id[skip.job_id], kind)
        for d in result.dropped:  # a single-item batch that reverted outright
            if d.job_id in by_id and not any(
                s.job_id == d.job_id for _, s in result.skipped(d.kind)
            ):
                self.skips.record(by_id[d.job_id], d.kind)

    def _job_views(
        self, live_ids: list[int], last_blocks: Mapping[int, int | None] | None
    ) -> list[keeper.JobView]:
        """The chain's views of `live_ids`: all read now without `last_blocks` (the database
        is down), else each read again only when its entry in `_views` is stale."""
        if last_blocks is None:
            self._views.clear()
            return read_job_views(self.market, live_ids)
        clock = time.monotonic()
        if clock - self._views_read_at > VIEW_REFRESH_SECONDS:
            self._views.clear()
            self._views_read_at = clock
        stale = [
            j
            for j in live_ids
            if (cached := self._views.get(j)) is None or cached[0] != last_blocks[j]
        ]
        for view in read_job_views(self.market, stale):
            self._views[view.job_id] = (last_blocks[view.job_id], view)
        live = set(live_ids)
        self._views = {j: v for j, v in self._views.items() if j in live}
        return [self._views[j][1] for j in live_ids]

    def run(self, stop: threading.Event) -> None:
        """Runs `step()` on every new block (`settings.heads_url()`) and at least every
        `poll_interval` seconds, until `stop` is set. An RPC or database
        outage is logged once; the loop backs off (up to `max_backoff`) and resumes when the
        dependency is back. Other errors (a bug, a misconfiguration) end the loop: the process
        exits and its supervisor restarts it."""
        with following(self.settings.heads_url()) as wakeup:
            self._run(stop, wakeup)

    def _run(self, stop: threading.Event, wakeup: Wakeup) -> None:
        while not stop.is_set():
            try:
                report = self.step()
            except Exception as exc:
                if database_unavailable(exc):
                    stop.wait(self.db_outage.failed(reason(exc)))
                    continue
                if isinstance(exc, RPC_ERRORS):
                    stop.wait(self.rpc_outage.failed(reason(exc)))
                    continue
                raise
            self.rpc_outage.ok()
            self.db_outage.ok()
            if any(
                (report.assigned, report.drawn, report.staffed, report.finalized, report.expired)
            ):
                log.info("step: %s", report.as_dict())
            wakeup.wait(stop, self.settings.poll_interval)

    # ------------------------------------------------------------------ inputs

    def _provider_views(self) -> list[ProviderView]:
        loads = self.store.provider_loads()
        now = int(self.clock())
        # One read of the book per cycle, not one per provider (it may be a database table).
        heard = self.liveness.snapshot() if self.settings.require_heartbeats else {}
        views = [
            p.view(
                live=self._live(heard.get(p.address), p.last_heartbeat, now),
                load=loads.get(p.address, 0),
            )
            for p in self.store.providers()
        ]
        return views

    def _live(self, hb: Heartbeat | None, last_heartbeat: float | None, now: int) -> bool:
        s = self.settings
        if not s.require_heartbeats:
            return True
        if hb is not None and now - hb.timestamp <= s.heartbeat_window:
            return True
        return last_heartbeat is not None and now - last_heartbeat <= s.heartbeat_window

    def _open_jobs(self) -> list[OpenJob]:
        jobs = [j for j in self.store.jobs(JobState.OPEN) if j.job_id not in self._in_flight]
        excluded = self.store.excluded(jobs)
        out: list[OpenJob] = []
        for j in jobs:
            if j.replicas not in VALID_REPLICAS:  # the contract refuses these at creation
                continue
            out.append(j.open_job(excluded.get(j.job_id, frozenset())))
        return out


def _hex(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _open_store(settings: RelayerSettings) -> Store:
    """The relayer database, its directory created for a SQLite file."""
    path = settings.sqlite_path()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {path.parent} for the relayer database ({exc}); "
                "fix DEPIN_RELAYER_DB_URL"
            ) from None
    return Store(settings.db_url)
