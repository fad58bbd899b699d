"""The relayer's transaction submitter: batches assignments and keeper calls from one key.

- One ordered queue per key: every Submitter sharing a key (the client's Signer address) takes
  the same lock, so that key's transactions go out one at a time, in call order.
- Batching: items are sent in batches of at most `max_batch` per transaction; a lone
  assignment goes out as a plain `assign` (one gas estimate instead of two).
- Skips: the JobMarket's batched calls skip an item that reverts and say so in a
  BatchItemSkipped event (its reason decoded from the ABI). Skipped items are dropped from the
  landed ids and returned with their decoded error, like items of a reverted batch.
- Reverts: a batch that still reverts (a single-item call, or one the contract refuses as a
  whole) with a decoded error naming one of its jobs loses that job; otherwise it is bisected
  until the offending items stand alone. Dropped items are logged with the decoded error and
  returned, and the rest are sent, so one stale job never blocks the others.
- Transient failures (connection refused or reset, node restarting, nonce too low / too high,
  receipt not found in time) are retried with exponential backoff after `signer.reset_nonce()`,
  so the next attempt reads the 'pending' nonce afresh. They are logged through an `Outage`
  (one warning per RPC outage, shared with the relayer loop when it passes its own), not once
  per attempt.
- Nonces: the Signer tracks them locally within one call; each `submit_*` call first re-reads
  the 'pending' count, so a new process, a gap left by a lost transaction, a send from another
  process with the same key, or a node restarted from an older state (its nonce rolled back
  with its chain) never meet a remembered nonce.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from marketplace.protocol.chain import Signer
from marketplace.protocol.client import BatchSkip, Market
from marketplace.protocol.errors import ChainError, ConfigError, ContractRevert, TransactionFailed
from marketplace.protocol.outage import Outage
from marketplace.relayer.keeper import JobView, KeeperPlan
from marketplace.relayer.settings import MAX_BATCH

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Substrings of node errors that mean "try again with a fresh nonce / in a moment".
_TRANSIENT_MESSAGES = (
    "nonce too low",
    "nonce too high",
    "nonce has already been used",
    "already known",
    "replacement transaction underpriced",
    "connection",
    "timed out",
)

_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


def _key_lock(address: str) -> threading.Lock:
    with _KEY_LOCKS_GUARD:
        return _KEY_LOCKS.setdefault(address.lower(), threading.Lock())


@dataclass(frozen=True)
class Landed:
    """One mined transaction: which call, which jobs, and its receipt."""

    kind: str
    job_ids: list[int]
    receipt: TxReceipt
    #: Items of the batch the contract skipped (BatchItemSkipped), with their decoded reasons.
    skipped: tuple[BatchSkip, ...] = ()

    @property
    def done_ids(self) -> list[int]:
        """The batch's ids the call went through for (skipped items left out)."""
        skipped = {s.job_id for s in self.skipped}
        return [j for j in self.job_ids if j not in skipped]

    @property
    def tx_hash(self) -> str:
        return "0x" + bytes(self.receipt["transactionHash"]).hex()

    @property
    def block(self) -> int:
        return int(self.receipt["blockNumber"])


@dataclass(frozen=True)
class Dropped:
    """An item left out: the decoded error name (or the failure type) and its message."""

    kind: str
    job_id: int
    error: str
    message: str


@dataclass
class SubmitResult:
    landed: list[Landed] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def receipts(self) -> list[TxReceipt]:
        return [tx.receipt for tx in self.landed]

    def landed_ids(self, kind: str | None = None) -> list[int]:
        """Ids whose call landed and was not skipped by the contract."""
        return [j for tx in self.landed if kind in (None, tx.kind) for j in tx.done_ids]

    def skipped(self, kind: str | None = None) -> list[tuple[str, BatchSkip]]:
        """(kind, skip) for every item the contract skipped."""
        return [(tx.kind, s) for tx in self.landed if kind in (None, tx.kind) for s in tx.skipped]

    def dropped_ids(self, kind: str | None = None) -> list[int]:
        return [d.job_id for d in self.dropped if kind in (None, d.kind)]

    def extend(self, other: SubmitResult) -> None:
        self.landed.extend(other.landed)
        self.dropped.extend(other.dropped)


class RetriesExhausted(ChainError):
    """A transaction kept failing for transient reasons after every retry."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` means the node was unreachable or the nonce is stale (retry after a reset)."""
    if isinstance(exc, ContractRevert | TransactionFailed | ConfigError):
        return False
    if isinstance(
        exc,
        requests.exceptions.RequestException
        | ConnectionError
        | TimeoutError
        | TimeExhausted
        | TransactionNotFound,
    ):
        return True
    if isinstance(exc, Web3RPCError | ValueError):
        text = str(exc).lower()
        return any(m in text for m in _TRANSIENT_MESSAGES)
    return False


class Submitter:
    """Sends the relayer's batched calls through `market`'s key."""

    def __init__(
        self,
        market: Market,
        *,
        max_batch: int = MAX_BATCH,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        outage: Outage | None = None,
    ) -> None:
        if market.signer is None:
            raise ConfigError("the submitter needs a client with a key (Market(..., account))")
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self.market = market
        self.signer: Signer = market.signer
        self.max_batch = max_batch
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._lock = _key_lock(self.signer.address)
        endpoint = getattr(market.w3.provider, "endpoint_uri", None) or "the chain"
        #: The RPC as the submitter sees it: one warning per outage, however many retries.
        self.outage = outage or Outage(
            f"RPC {endpoint}", log, first_delay=backoff, max_delay=max(backoff, max_backoff)
        )

    # ------------------------------------------------------------------ public

    def submit_assignments(self, assignments: Sequence[tuple[int, Sequence[str]]]) -> SubmitResult:
        """Assigns each job its providers with `assignBatch`, in batches."""
        providers = {job_id: list(ps) for job_id, ps in assignments}

        def send(ids: list[int]) -> TxReceipt:
            if len(ids) == 1:
                # A batch of one costs an estimate per item on top of the batch's own; the plain
                # call needs one, and its revert is handled as a one-item batch's would be.
                return self.market.assign(ids[0], providers[ids[0]])
            return self.market.assign_batch([(j, providers[j]) for j in ids])

        with self._lock:
            self.signer.reset_nonce()
            return self._submit("assign", [j for j, _ in assignments], send)

    def submit_keeper(self, plan: KeeperPlan) -> SubmitResult:
        """Sends a keeper plan: audit draws first (they are time-critical), then verifier
        staffing, finalizations, expiries; each list re-batched to `max_batch`."""
        result = SubmitResult()
        calls: list[tuple[str, Callable[[list[int]], TxReceipt]]] = [
            ("draw_audits", self.market.draw_audits),
            ("staff_audits", self.market.staff_audits),
            ("finalize", self.market.finalize_batch),
            ("expire", self.market.expire_batch),
        ]
        with self._lock:
            self.signer.reset_nonce()
            for kind, send in calls:
                ids = plan.ids(kind)
                if ids:
                    result.extend(self._submit(kind, ids, send))
        return result

    # ------------------------------------------------------------------ batching

    def _submit(
        self, kind: str, ids: list[int], send: Callable[[list[int]], TxReceipt]
    ) -> SubmitResult:
        result = SubmitResult()
        for start in range(0, len(ids), self.max_batch):
            self._send_batch(kind, ids[start : start + self.max_batch], send, result)
        return result

    def _send_batch(
        self,
        kind: str,
        ids: list[int],
        send: Callable[[list[int]], TxReceipt],
        result: SubmitResult,
    ) -> None:
        """Sends `ids` as one call; on a revert drops the offender(s) and sends the rest."""
        pending = list(ids)
        while pending:
            try:
                receipt = self._with_retries(lambda: send(pending))
            except (ContractRevert, TransactionFailed) as exc:
                culprit = _named_job(exc, pending)
                if len(pending) == 1 or culprit is not None:
                    bad = pending[0] if culprit is None else culprit
                    self._drop(kind, bad, exc, result)
                    pending.remove(bad)
                    continue
                mid = len(pending) // 2
                self._send_batch(kind, pending[:mid], send, result)
                self._send_batch(kind, pending[mid:], send, result)
                return
            skipped = tuple(s for s in self.market.skipped(receipt) if s.job_id in pending)
            tx = Landed(kind, list(pending), receipt, skipped)
            result.landed.append(tx)
            for skip in skipped:
                log.warning("%s skipped job %d: %s", kind, skip.job_id, skip)
                result.dropped.append(Dropped(kind, skip.job_id, skip.error, str(skip)))
            log.info("%s landed for jobs %s in block %s", kind, tx.done_ids, receipt["blockNumber"])
            return

    def _drop(self, kind: str, job_id: int, exc: Exception, result: SubmitResult) -> None:
        name = exc.name if isinstance(exc, ContractRevert) else type(exc).__name__
        log.warning("%s dropped job %d: %s", kind, job_id, exc)
        result.dropped.append(Dropped(kind, job_id, name, str(exc)))

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        delay = self.backoff
        for n in range(self.retries + 1):
            try:
                value = attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if n == self.retries:
                    raise RetriesExhausted(
                        f"gave up after {self.retries + 1} attempts: {exc}; "
                        "check that the RPC is up and the key's pending nonce"
                    ) from exc
                self.outage.failed(f"{type(exc).__name__}: {exc}")
                self.signer.reset_nonce()
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            self.outage.ok()
            return value
        raise AssertionError("unreachable")


def _named_job(exc: Exception, ids: list[int]) -> int | None:
    """The job a decoded revert names, when it is one of `ids`."""
    if isinstance(exc, ContractRevert):
        value: Any = exc.values.get("jobId")
        if isinstance(value, int) and value in ids:
            return value
    return None


def read_job_views(market: Market, job_ids: Sequence[int]) -> list[JobView]:
    """The keeper's inputs read from the contracts (`Market.job` and the executor's commit
    block for Committed jobs)."""
    views: list[JobView] = []
    for job_id in job_ids:
        job = market.job(job_id)
        commit_block = 0
        if job.commit_mask & 1:
            commit_block = market.participants(job_id)[0].commit_block
        views.append(JobView.of(job_id, job, commit_block))
    return views
