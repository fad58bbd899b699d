"""The requester SDK: submit jobs, follow them, fetch and verify their results.

`Requester` binds one wallet to one deployment and one relayer. The `depin job` commands are a
thin layer over it; scripts use it directly::

    with Requester.from_settings() as req:
        job = req.submit("matmul", parameters={"n": 256, "seed": 7}, max_price_per_unit=10**15)
        req.wait(job, timeout=600)
        print(req.result(job, out=Path("out.safetensors")).outputs["c"].shape)

Nothing here trusts the relayer with money or results: it stores artifacts (hash-checked on
both sides), indexes jobs and forwards result notices, while escrow goes straight to the
JobMarket and a result counts only when its digest matches the commitment the contract stores
for the provider that produced it.

Every check that can fail runs before the first transaction (inputs, kind, parameters, profile,
windows, chain id, token and ETH balance, relayer reachability while uploading), so a refused
submission moves no funds and creates no job.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import httpx
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3

from marketplace.protocol.artifact_client import (
    ArtifactClient,
    ArtifactError,
    ArtifactNotFound,
    RelayerUnreachable,
)
from marketplace.protocol.chain import FeePolicy
from marketplace.protocol.client import VALID_REPLICAS, Job, JobState, Market
from marketplace.protocol.deployment import MIN_WINDOW, Deployment, connect_deployment
from marketplace.protocol.errors import ConfigError, DepinError
from marketplace.protocol.relayer_http import RelayerClient, RelayerRefused
from marketplace.protocol.results import (
    ResultError,
    decrypt_result,
    failure_committed,
    failure_of,
    public_key_hex,
    verify_result,
)
from marketplace.protocol.spec import JobSpec, ParamValue
from marketplace.protocol.tokens import format_tokens
from marketplace.protocol.wakeup import Wakeup, following, ws_url_for
from marketplace.requester.errors import (
    InputError,
    InsufficientFunds,
    JobNotFound,
    NotRequester,
    ResultRejected,
    ResultUnavailable,
    WaitTimeout,
    WrongState,
)
from marketplace.requester.files import write_outputs
from marketplace.requester.inputs import DEFAULT_PROFILE, JobDraft, PreparedJob, prepare
from marketplace.requester.result import JobResult, ShardedResult
from marketplace.requester.settings import RequesterSettings, default_shard_dir
from marketplace.requester.shard import (
    PendingCreate,
    Resolution,
    ShardGroup,
    ShardRecord,
    ShardStore,
    merge_outputs,
    resolve_pending,
    resolve_resubmits,
    shard_drafts,
)
from marketplace.requester.status import (
    RESULT_STATES,
    Balances,
    JobStatus,
    JobSummary,
    ParticipantStatus,
    audit_rounds,
)

__all__ = ["Requester", "ShardPlan"]

#: Seconds a permit signed for `createJobsWithPermit` stays valid.
PERMIT_LIFETIME: Final = 3_600
#: Uploads in flight at once in `submit_many`.
UPLOAD_THREADS: Final = 8
#: Blocks per eth_getLogs request when scanning for the requester's jobs (public RPCs cap it).
LOG_CHUNK: Final = 10_000
#: Seconds `wait` first waits for a result notice once it sees the commit without one (then
#: twice as long each time, up to its poll interval).
NOTICE_POLL_FIRST: Final = 0.02

Until = Literal["result", "terminal"]


def _tx(receipt: Mapping[str, Any]) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


@dataclass(frozen=True)
class ShardPlan:
    """A sharded job before it is paid: each shard's validated job and the batch's escrow."""

    #: Pending folder of the shard inputs (adopted by the group once created).
    folder: Path
    jobs: tuple[PreparedJob, ...]
    #: What the whole batch locks in escrow, in base units (the most it can cost).
    escrow: int

    @property
    def units(self) -> list[int]:
        return [j.request.units for j in self.jobs]


def _rows(job: PreparedJob) -> int:
    """Sentences (embed) or batch rows (safetensors) of a shard's input."""
    (sha,) = job.spec.inputs
    data = job.artifacts[sha]
    if job.spec.kind == "embed":
        return len(json.loads(data))
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return max(
        (int(e["shape"][0]) for n, e in header.items() if n != "__metadata__" and e["shape"]),
        default=1,
    )


def _suffix(job: PreparedJob) -> str:
    return ".json" if job.spec.kind == "embed" else ".safetensors"


class Requester:
    """One wallet's view of one deployment: submit, follow, fetch results, challenge, cancel."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: LocalAccount | str,
        relayer_url: str,
        *,
        poll_interval: float = 1.0,
        http_timeout: float = 30.0,
        heads_url: str | None = None,
        fees: FeePolicy | None = None,
        shard_dir: Path | None = None,
    ) -> None:
        """`account` is the wallet's key, or only its address for a watch-only requester
        (status, list, wait: no password needed; anything that signs or decrypts refuses).
        `heads_url` is a WebSocket endpoint whose new blocks end `wait`'s pauses at once
        (None: `wait` polls every `poll_interval` seconds); `fees` prices the wallet's
        transactions (default: `FeePolicy()`); `shard_dir` keeps the groups of sharded jobs
        (default: `default_shard_dir()`)."""
        self.w3 = w3
        self.deployment = deployment
        self._key: LocalAccount | None = None if isinstance(account, str) else account
        self._address = to_checksum_address(
            account if isinstance(account, str) else account.address
        )
        self.market = Market(w3, deployment, self._key, fees=fees)
        self.artifacts = ArtifactClient(relayer_url, timeout=http_timeout)
        self._kinds: dict[str, str] = {}
        self.relayer_url = relayer_url.rstrip("/")
        self.poll_interval = poll_interval
        self.heads_url = heads_url
        #: The relayer's JSON API: its job index, history and result notices.
        self.relayer = RelayerClient(
            relayer_url, timeout=http_timeout, url_setting="DEPIN_REQUESTER_RELAYER_URL"
        )
        #: The shard groups this requester submitted on this deployment.
        self.shard_store = ShardStore(
            shard_dir if shard_dir is not None else default_shard_dir(),
            deployment.chain_id,
            deployment.market,
        )

    @classmethod
    def connect(
        cls,
        *,
        rpc_url: str,
        deployment: Deployment | Path,
        account: LocalAccount | str,
        relayer_url: str,
        poll_interval: float = 1.0,
        ws_url: str = "",
        fees: FeePolicy | None = None,
        shard_dir: Path | None = None,
    ) -> Requester:
        """Connects to `rpc_url`, refusing a node that serves another chain than the deployment
        (ChainError naming both ids) or does not answer (ChainError). `ws_url` is as the
        `DEPIN_REQUESTER_WS_URL` setting: empty derives it from `rpc_url`, "off" polls only."""
        if isinstance(deployment, Path):
            deployment = Deployment.load(deployment)
        w3 = connect_deployment(rpc_url, deployment)
        return cls(
            w3,
            deployment,
            account,
            relayer_url,
            poll_interval=poll_interval,
            heads_url=ws_url_for(rpc_url, ws_url),
            fees=fees,
            shard_dir=shard_dir,
        )

    @classmethod
    def from_settings(
        cls, settings: RequesterSettings | None = None, *, account: LocalAccount | None = None
    ) -> Requester:
        """A requester configured from `DEPIN_REQUESTER_*` (or `settings`)."""
        settings = settings if settings is not None else RequesterSettings()
        return cls.connect(
            rpc_url=settings.rpc_url,
            deployment=settings.deployment_file,
            account=account if account is not None else settings.account(),
            relayer_url=settings.relayer_url,
            poll_interval=settings.poll_interval,
            ws_url=settings.ws_url,
            fees=settings.fee_policy(),
            shard_dir=settings.shard_dir,
        )

    def close(self) -> None:
        self.artifacts.close()
        self.relayer.close()

    def __enter__(self) -> Requester:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    @property
    def account(self) -> LocalAccount:
        """The wallet's key; a watch-only requester has none."""
        if self._key is None:
            raise ConfigError(
                f"this needs the key of {self._address} (to sign or to decrypt its results); "
                "give the wallet's password (--password-file or DEPIN_REQUESTER_KEYSTORE_PASSWORD)"
            )
        return self._key

    # ---------------------------------------------------------------- submit

    def prepare(self, draft: JobDraft) -> PreparedJob:
        """Validates `draft` into a spec, its artifacts and the on-chain request (no I/O but
        reading input files)."""
        return prepare(
            draft, public_key=public_key_hex(self.account), profiles=self.deployment.profiles
        )

    def submit(
        self,
        kind: str,
        *,
        max_price_per_unit: int,
        inputs: Sequence[Path] = (),
        sentences: Sequence[str] | None = None,
        model: str | Path | None = None,
        parameters: Mapping[str, ParamValue] | None = None,
        units: int | None = None,
        replicas: int = 1,
        profile: str = DEFAULT_PROFILE,
        accept_window: int = 3_600,
        exec_window: int = 3_600,
        min_vram_gib: int = 0,
        use_permit: bool = True,
    ) -> int:
        """Uploads the job's inputs and spec, escrows its payment and creates it; returns its id.

        See `marketplace.requester.inputs` for what each kind takes and its default units."""
        draft = JobDraft(
            kind=kind,
            max_price_per_unit=max_price_per_unit,
            inputs=tuple(Path(p) for p in inputs),
            sentences=None if sentences is None else tuple(sentences),
            model=model,
            parameters=dict(parameters or {}),
            units=units,
            replicas=replicas,
            profile=profile,
            accept_window=accept_window,
            exec_window=exec_window,
            min_vram_gib=min_vram_gib,
        )
        return self.submit_many([draft], use_permit=use_permit)[0]

    def submit_many(self, drafts: Sequence[JobDraft], *, use_permit: bool = True) -> list[int]:
        """Creates every job of `drafts` in one transaction (one token pull); returns their ids.

        All checks run first, for every draft; a failure raises before anything is paid. With
        `use_permit` the escrow is authorised by an ERC-2612 permit signed here and passed to
        `createJobsWithPermit`, saving the approve transaction; an existing allowance that
        covers the escrow is used as it is."""
        if not drafts:
            raise InputError("no jobs to submit")
        return self._create([self.prepare(d) for d in drafts], use_permit=use_permit)

    def _create(
        self,
        jobs: Sequence[PreparedJob],
        *,
        use_permit: bool,
        before_send: Callable[[int, int], None] | None = None,
    ) -> list[int]:
        """Checks, uploads and creates prepared jobs in one transaction; returns their ids.
        `before_send(nonce, head block)` runs once nothing but the createJobs transaction is
        left to send, with the nonce that transaction takes (a record written there survives a
        crash between sending and reading the receipt)."""
        self._check_windows(jobs)
        total = sum(self.market.escrow_for(j.request) for j in jobs)
        self._check_funds(total)
        self._upload(jobs)
        requests = [j.request for j in jobs]
        allowance = self.market.escrow_allowance(self.address)
        permit = use_permit and allowance < total
        if not permit and allowance < total:
            # Approved first, so the nonce announced below is the createJobs transaction's.
            self.market.approve(self.deployment.market, 2**256 - 1)
        deadline = (
            int(self.w3.eth.get_block("latest")["timestamp"]) + PERMIT_LIFETIME if permit else 0
        )
        if before_send is not None:
            before_send(
                int(self.w3.eth.get_transaction_count(self.address, "pending")),
                int(self.w3.eth.block_number),
            )
        if not permit:
            return self.market.create_jobs(requests)
        return self.market.create_jobs_with_permit(requests, total, deadline)

    def _check_windows(self, jobs: Sequence[PreparedJob]) -> None:
        params = self.market.params()
        for job in jobs:
            r = job.request
            if r.replicas not in VALID_REPLICAS:
                raise InputError(
                    f"replicas must be 1, 3 or 5 (an odd count always has a majority), got "
                    f"{r.replicas}; use 1 for an audited single run or 3 or 5 replicas"
                )
            if r.accept_window < MIN_WINDOW:
                raise InputError(
                    f"the accept window of {r.accept_window} s is below the market's minimum of "
                    f"{MIN_WINDOW} s; lengthen it"
                )
            if r.exec_window < params.min_exec_window:
                raise InputError(
                    f"the exec window of {r.exec_window} s is below the market's minimum of "
                    f"{params.min_exec_window} s; lengthen it (providers may ask for more: "
                    "each registers its own minimum)"
                )
            if r.accept_window > params.max_accept_window:
                raise InputError(
                    f"the accept window of {r.accept_window} s exceeds the market's maximum of "
                    f"{params.max_accept_window} s; shorten it"
                )
            if r.exec_window > params.max_exec_window:
                raise InputError(
                    f"the exec window of {r.exec_window} s exceeds the market's maximum of "
                    f"{params.max_exec_window} s; shorten it"
                )

    def _check_funds(self, escrow: int, what: str = "the escrow") -> None:
        tokens = self.market.balance_of(self.address)
        if tokens < escrow:
            raise InsufficientFunds(
                f"{self.address} holds {format_tokens(tokens)} tokens but {what} is "
                f"{format_tokens(escrow)}; fund the wallet (`depin wallet faucet` on a devnet) "
                "or lower the max price, units or replicas"
            )
        if self.w3.eth.get_balance(to_checksum_address(self.address)) == 0:
            raise InsufficientFunds(
                f"{self.address} has no ETH to pay gas; send it some (`depin wallet faucet` on "
                "a devnet)"
            )

    def _upload(self, jobs: Sequence[PreparedJob]) -> None:
        """Puts every input and spec in the relayer's store (idempotent: content-addressed),
        several at a time: each upload waits mostly on the store's fsync."""
        for job in jobs:
            for sha in job.referenced:
                if not self.artifacts.exists(sha):
                    raise InputError(
                        f"artifact {sha} is not in the relayer's store at {self.relayer_url}; "
                        "pass the module file itself so it is uploaded"
                    )
        blobs: dict[str, bytes] = {}
        for job in jobs:
            blobs.update(job.artifacts)
            blobs[job.spec.spec_hash().hex()] = job.spec_bytes

        def put(item: tuple[str, bytes]) -> None:
            sha, data = item
            stored = self.artifacts.put(data)
            if stored != sha:  # the client hashes what it sends; a mismatch is a bug here
                raise ArtifactError(f"uploaded artifact {stored} was expected as {sha}")

        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            list(pool.map(put, blobs.items()))

    # ---------------------------------------------------------------- shards

    def plan_shards(self, draft: JobDraft, shards: int) -> ShardPlan:
        """Splits `draft`'s input set into `shards` jobs (see `marketplace.requester.shard`),
        validates each and quotes the batch: nothing is uploaded or paid. The shard inputs are
        written to a pending folder of the shard store; `submit_shards` adopts it."""
        folder = self.shard_store.pending()
        try:
            drafts = shard_drafts(draft, shards, folder)
            jobs = [self.prepare(d) for d in drafts]
            escrow = sum(self.market.escrow_for(j.request) for j in jobs)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return ShardPlan(folder=folder, jobs=tuple(jobs), escrow=escrow)

    def submit_shards(self, plan: ShardPlan, *, use_permit: bool = True) -> ShardGroup:
        """Creates every shard of `plan` in one transaction and records the group, named by its
        first job id, in the shard store; returns it. The record is written, marked pending,
        before the transaction is sent and completed after its receipt (see
        `marketplace.requester.shard`): a submit that dies in between loses nothing, and the
        next `recover_shards` (run by every group command) completes it from the chain."""
        self.recover_shards()
        first = plan.jobs[0]
        request, spec = first.request, first.spec
        group = ShardGroup(
            group=0,
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            requester=self.address,
            kind=spec.kind,
            model=spec.model,
            parameters=dict(spec.parameters),
            max_price_per_unit=request.max_price_per_unit,
            replicas=request.replicas,
            profile=spec.profile,
            accept_window=request.accept_window,
            exec_window=request.exec_window,
            min_vram_gib=request.min_vram_gib,
            shards=[
                ShardRecord(
                    index=i,
                    job_id=0,
                    rows=_rows(job),
                    input=f"shard-{i}{_suffix(job)}",
                    units=job.request.units,
                )
                for i, job in enumerate(plan.jobs)
            ],
        )

        def record(nonce: int, block: int) -> None:
            group.pending = PendingCreate(
                nonce=nonce,
                after_block=block,
                spec_hashes=[j.spec.spec_hash().hex() for j in plan.jobs],
                inputs=[j.spec.inputs[0] for j in plan.jobs],
                recorded_at=time.time(),
            )
            self.shard_store.record_pending(plan.folder, group)

        try:
            ids = self._create(plan.jobs, use_permit=use_permit, before_send=record)
        except BaseException:
            if group.pending is not None and self._unsent(group.pending.nonce):
                # Refused before it reached the node (a revert on estimate): back to a plan
                # that may be submitted again, with no record to settle.
                self.shard_store.forget_pending(plan.folder)
            raise
        for shard, job_id in zip(group.shards, ids, strict=True):
            shard.job_id = job_id
        group.group, group.pending = ids[0], None
        self.shard_store.adopt(plan.folder, group)
        return group

    def _unsent(self, nonce: int) -> bool:
        """Whether no transaction with `nonce` reached the node (mined or in its pool); False
        when the node cannot tell, so a record is kept rather than lost."""
        try:
            return int(self.w3.eth.get_transaction_count(self.address, "pending")) <= nonce
        except Exception:  # the node is unreachable: keep the record, recovery settles it
            return False

    def recover_shards(self) -> list[Resolution]:
        """Settles the groups of this store whose submit stopped between sending the
        transaction and recording its jobs: completed from the chain, set aside when they were
        never created (nothing paid), or left pending while their transaction may still be
        mined (see `marketplace.requester.shard.resolve_pending`). Returns what happened."""
        if not self.shard_store.unresolved():
            return []
        return resolve_pending(self.shard_store, self.market, self.address, chunk=LOG_CHUNK)

    def submit_sharded(
        self, draft: JobDraft, shards: int, *, use_permit: bool = True
    ) -> ShardGroup:
        """`plan_shards` then `submit_shards`: `shards` jobs in one transaction."""
        return self.submit_shards(self.plan_shards(draft, shards), use_permit=use_permit)

    def shard_group(self, group: int) -> ShardGroup:
        """The recorded group whose first job is `group` (JobNotFound when none is kept, naming
        any submit still pending)."""
        try:
            found = self.shard_store.load(group)
        except JobNotFound as exc:
            waiting = [r for r in self.recover_shards() if r.outcome == "pending"]
            try:
                found = self.shard_store.load(group)
            except JobNotFound:
                if waiting:
                    raise JobNotFound(f"{exc}; besides, {waiting[0].message}") from None
                raise
        if found.requester != self.address:
            raise NotRequester(
                f"shard group {group} belongs to {found.requester}; load that wallet instead"
            )
        if any(s.pending is not None for s in found.shards):
            resolve_resubmits(self.shard_store, self.market, found, chunk=LOG_CHUNK)
        return found

    def shard_states(self, group: int) -> list[JobState]:
        """The on-chain state of each shard's current job, in shard order."""
        return [self._job(j).state for j in self.shard_group(group).job_ids]

    def wait_shards(
        self,
        group: int,
        *,
        until: Until = "terminal",
        timeout: float = 3_600.0,
        poll_interval: float | None = None,
        on_progress: Callable[[list[JobState]], None] | None = None,
    ) -> list[JobState]:
        """Polls until every shard's job is terminal (`until="result"`: terminal or with a
        result announced); `on_progress` gets the shards' states whenever one changes. Raises
        WaitTimeout after `timeout` seconds."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        deadline = time.monotonic() + timeout
        seen: list[JobState] | None = None
        while True:
            ids = self.shard_group(group).job_ids  # a resubmission may change them meanwhile
            states = [self._job(j).state for j in ids]
            if states != seen:
                seen = states
                if on_progress is not None:
                    on_progress(states)
            if all(self._shard_done(j, s, until) for j, s in zip(ids, states, strict=True)):
                return states
            if time.monotonic() >= deadline:
                pending = [i for i, s in enumerate(states) if not s.terminal]
                raise WaitTimeout(
                    f"shards {pending} of group {group} are not done after {timeout:.0f} s; "
                    f"wait longer, or cancel an open shard and `depin job resubmit-shard {group} "
                    "INDEX` it"
                )
            time.sleep(interval)

    def _shard_done(self, job_id: int, state: JobState, until: Until) -> bool:
        if state.terminal:
            return True
        if until != "result" or state not in RESULT_STATES:
            return False
        try:
            return bool(self._notices(job_id))
        except (RelayerUnreachable, RelayerRefused):
            return False

    def resubmit_shard(self, group: int, index: int, *, use_permit: bool = True) -> int:
        """Submits shard `index` of `group` again, alone, when its job ended without a usable
        result (refunded, expired, or settled on a failure); records the new job in the group
        and returns its id."""
        found = self.shard_group(group)
        if not 0 <= index < len(found.shards):
            raise InputError(
                f"group {group} has shards 0 to {len(found.shards) - 1}; no shard {index}"
            )
        shard = found.shards[index]
        if shard.pending is not None:
            raise WrongState(
                f"shard {index} of group {group} has a resubmission whose transaction (nonce "
                f"{shard.pending.nonce} of {self.address}) is not mined yet; wait for it, then "
                f"`depin job wait-group {group}`"
            )
        job = self._job(shard.job_id)
        if not job.state.terminal:
            raise WrongState(
                f"shard {index} (job {shard.job_id}) is {job.state.name.lower()}; resubmit only "
                f"a shard whose job ended without a result (cancel it first while it is open: "
                f"`depin job cancel {shard.job_id}`)"
            )
        if (
            job.state is JobState.SETTLED
            and self._failures({shard.job_id: job})[shard.job_id] is None
        ):
            raise WrongState(
                f"shard {index} (job {shard.job_id}) settled with a result; nothing to resubmit "
                f"(`depin job result {group} --group` merges it)"
            )
        folder = self.shard_store.group_folder(group)
        prepared = self.prepare(found.draft(index, folder))

        def record(nonce: int, block: int) -> None:
            shard.pending = PendingCreate(
                nonce=nonce,
                after_block=block,
                spec_hashes=[prepared.spec.spec_hash().hex()],
                inputs=[prepared.spec.inputs[0]],
                recorded_at=time.time(),
            )
            self.shard_store.save(found)

        try:
            (job_id,) = self._create([prepared], use_permit=use_permit, before_send=record)
        except BaseException:
            if shard.pending is not None and self._unsent(shard.pending.nonce):
                shard.pending = None
                self.shard_store.save(found)
            raise
        shard.replaced.append(shard.job_id)
        shard.job_id, shard.pending = job_id, None
        self.shard_store.save(found)
        return job_id

    def shard_result(self, group: int, out: Path | None = None) -> ShardedResult:
        """Every shard's result, each downloaded, decrypted and verified against its own job's
        commitment (`result`), merged in shard order; written to `out` when given (see
        `write_outputs`). ResultUnavailable names a shard without a usable result and how to
        get one."""
        found = self.shard_group(group)
        results: list[JobResult] = []
        for shard in found.shards:
            job = self._job(shard.job_id)
            if job.state in (JobState.REFUNDED, JobState.EXPIRED):
                raise ResultUnavailable(
                    f"shard {shard.index} (job {shard.job_id}) was {job.state.name.lower()} "
                    f"without a result; resubmit it alone (`depin job resubmit-shard {group} "
                    f"{shard.index}`), then merge again"
                )
            result = self.result(shard.job_id)
            if not result.ok:
                raise ResultUnavailable(
                    f"shard {shard.index} (job {shard.job_id}) failed: {result.failure} "
                    f"({result.message}); fix the input and resubmit the job, or resubmit the "
                    f"shard (`depin job resubmit-shard {group} {shard.index}`)"
                )
            results.append(result)
        outputs, unmerged = merge_outputs([r.outputs for r in results])
        path = None
        if out is not None:
            path = write_outputs(
                outputs,
                out,
                job_id=group,
                metadata={
                    "shard_group": str(group),
                    "job_ids": ",".join(str(r.job_id) for r in results),
                    "digests": ",".join("0x" + r.digest.hex() for r in results),
                    "profile": found.profile,
                },
            )
        return ShardedResult(
            group=group,
            job_ids=tuple(r.job_id for r in results),
            outputs=outputs,
            unmerged=unmerged,
            shards=tuple(results),
            path=path,
        )

    # ---------------------------------------------------------------- follow

    def _job(self, job_id: int) -> Job:
        job = self.market.job(job_id)
        if job.state is JobState.NONE:
            raise JobNotFound(
                f"no job {job_id} on chain {self.deployment.chain_id} at market "
                f"{self.deployment.market}; check the id (`depin job list`)"
            )
        return job

    def _notices(self, job_id: int) -> list[dict[str, Any]]:
        """The relayer's result notices of the job (RelayerUnreachable when it does not answer,
        RelayerRefused when it answers with an error)."""
        body = self.relayer.get_json(f"/jobs/{job_id}/results", what=f"the results of job {job_id}")
        results = body.get("results", []) if isinstance(body, dict) else []
        return [n for n in results if isinstance(n, dict)]

    def status(self, job_id: int) -> JobStatus:
        """The job's state from the chain, with the relayer's history and result notices when
        it answers (without them when it does not: the chain alone is authoritative)."""
        job = self._job(job_id)
        on_chain = self.market.participants(job_id)
        rounds = audit_rounds(job, [p.provider for p in on_chain])
        round_of = {v: r.round for r in rounds for v in r.verifiers}
        participants = tuple(
            ParticipantStatus(
                provider=p.provider,
                executor=i < job.replicas,
                committed=p.commitment != 0,
                round=0 if i < job.replicas else round_of.get(p.provider, job.round),
            )
            for i, p in enumerate(on_chain)
        )
        results: tuple[str, ...] | None
        history: tuple[Mapping[str, Any], ...] | None = None
        digest: str | None = None
        waiting: str | None = None
        try:
            results = tuple(str(n.get("provider")) for n in self._notices(job_id))
            response = self.relayer.get(f"/jobs/{job_id}")
            if response.status_code == 200:
                detail = response.json()
                history = tuple(detail.get("history", []))
                verdict = detail.get("verdict") or {}
                digest = verdict.get("digest") if isinstance(verdict, dict) else None
                why = detail.get("waiting")
                if isinstance(why, dict) and job.state is JobState.OPEN:
                    waiting = str(why.get("reason"))
        except (RelayerUnreachable, RelayerRefused, ValueError):
            results = None
        return JobStatus(
            job_id=job_id,
            state=job.state,
            requester=job.requester,
            deadline=job.deadline,
            replicas=job.replicas,
            units=job.units,
            max_price_per_unit=job.max_price_per_unit,
            clearing_price=job.clearing_price,
            escrow=job.escrow,
            profile=self._profile_name(job.profile),
            participants=participants,
            rounds=rounds,
            challenged=job.challenged,
            digest=digest,
            results=results,
            history=history,
            waiting=waiting,
            failure=self._failures({job_id: job})[job_id]
            if job.state is JobState.SETTLED
            else None,
        )

    def _failures(self, jobs: Mapping[int, Job]) -> dict[int, str | None]:
        """For each settled job of `jobs`, its failure code, or None when its upheld result is
        a real one: from the chain alone (JobClosed's digest, or for a job settled without a
        reveal its executor's commitment), so neither the relayer nor the artifact matters."""
        settled = {i: j for i, j in jobs.items() if j.state is JobState.SETTLED}
        upheld = self.market.upheld_digests(
            settled, from_block=self.deployment.block, chunk=LOG_CHUNK
        )
        out: dict[int, str | None] = {}
        for job_id, job in settled.items():
            profile = self._profile_name(job.profile)
            digest = upheld.get(job_id, bytes(32))
            if any(digest):
                out[job_id] = failure_of(profile, digest)
                continue
            executor = self.market.participants(job_id)[0]
            out[job_id] = failure_committed(profile, job_id, executor.provider, executor.commitment)
        return out

    def _profile_name(self, profile_id: int) -> str:
        profiles = self.deployment.profiles
        return profiles[profile_id] if profile_id < len(profiles) else f"#{profile_id}"

    def wait(
        self,
        job_id: int,
        *,
        until: Until = "result",
        timeout: float = 3_600.0,
        poll_interval: float | None = None,
        on_state: Callable[[JobState], None] | None = None,
    ) -> JobStatus:
        """Reads the chain on each new block (and at least every `poll_interval` seconds) until
        the job's result is available (`until="result"`: an executor committed and its notice
        reached the relayer) or the job is terminal (either way, a terminal state ends the
        wait). `on_state` is called with each new state. Raises
        WaitTimeout after `timeout` seconds."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        with following(self.heads_url) as wakeup:
            return self._wait(job_id, until, timeout, interval, on_state, wakeup)

    def _wait(
        self,
        job_id: int,
        until: Until,
        timeout: float,
        interval: float,
        on_state: Callable[[JobState], None] | None,
        wakeup: Wakeup,
    ) -> JobStatus:
        deadline = time.monotonic() + timeout
        seen: JobState | None = None
        never = threading.Event()
        #: Relayer reads since the commit was seen without its notice.
        misses = 0
        while True:
            state = self._job(job_id).state
            if state != seen:
                seen = state
                if on_state is not None:
                    on_state(state)
            if state.terminal:
                break
            wait = interval
            if until == "result" and state in RESULT_STATES:
                try:
                    if self._notices(job_id):
                        break
                except (RelayerUnreachable, RelayerRefused):
                    pass  # the relayer may come back before the timeout
                else:
                    # The provider posts its notice right after its commit lands: the next
                    # block may be a second away, the notice only milliseconds.
                    wait = min(interval, NOTICE_POLL_FIRST * 2**misses)
                    misses += 1
            if time.monotonic() >= deadline:
                what = "a result" if until == "result" else "a terminal state"
                raise WaitTimeout(
                    f"job {job_id} is still {state.name.lower()} after {timeout:.0f} s waiting "
                    f"for {what}; wait longer (`depin job status {job_id}`) or cancel it while "
                    "it is open"
                )
            wakeup.wait(never, min(wait, max(deadline - time.monotonic(), 0.0)))
        return self.status(job_id)

    # ---------------------------------------------------------------- results

    def result(self, job_id: int, out: Path | None = None) -> JobResult:
        """Downloads, decrypts and verifies the job's result; writes its outputs to `out` when
        given (see `write_outputs`).

        Each announced result is tried, executors first: it must decrypt with this wallet's key
        and its digest must equal what that provider committed on-chain under the job's
        profile. The first that verifies is returned; ResultRejected lists why each failed. A
        job that could not run as specified returns a result with `failure` set (nothing is
        written)."""
        job = self._job(job_id)
        if job.requester != self.address:
            raise NotRequester(
                f"job {job_id} belongs to {job.requester}; its result is encrypted to that "
                "wallet's key, load it instead"
            )
        if job.state not in RESULT_STATES and not job.state.terminal:
            raise ResultUnavailable(
                f"job {job_id} is {job.state.name.lower()}: no result committed yet; wait for "
                f"it (`depin job status {job_id}`)"
            )
        profile = self._profile_name(job.profile)
        participants = self.market.participants(job_id)
        committed = {p.provider: p.commitment for p in participants if p.commitment != 0}
        order = {p.provider: i for i, p in enumerate(participants)}
        notices = [n for n in self._notices(job_id) if isinstance(n.get("provider"), str)]
        if not notices:
            raise ResultUnavailable(
                f"no provider has announced a result of job {job_id} yet (state "
                f"{job.state.name.lower()}); wait for it (`depin job wait`)"
            )
        notices.sort(key=lambda n: order.get(to_checksum_address(n["provider"]), len(order)))
        rejected: list[tuple[str, str]] = []
        for notice in notices:
            provider = to_checksum_address(notice["provider"])
            commitment = committed.get(provider)
            if commitment is None:
                rejected.append((provider, "not a participant with a commitment on this job"))
                continue
            try:
                artifact = str(notice.get("artifact"))
                payload = decrypt_result(self.account, self.artifacts.get(artifact))
                digest = verify_result(
                    payload,
                    job_id=job_id,
                    provider=provider,
                    commitment=commitment,
                    profile=profile,
                )
            except (ResultError, ArtifactError, ArtifactNotFound) as exc:
                rejected.append((provider, str(exc)))
                continue
            path = None
            if out is not None and not payload.failure:
                path = write_outputs(
                    payload.outputs,
                    out,
                    job_id=job_id,
                    metadata={
                        "job_id": str(job_id),
                        "provider": provider,
                        "digest": "0x" + digest.hex(),
                        "profile": profile,
                    },
                )
            return JobResult(
                job_id=job_id,
                provider=provider,
                digest=digest,
                outputs=payload.outputs,
                failure=payload.failure,
                message=payload.message,
                path=path,
                rejected=tuple(rejected),
            )
        reasons = "; ".join(f"{p}: {r}" for p, r in rejected)
        raise ResultRejected(
            f"no announced result of job {job_id} verifies ({reasons}); wait for another "
            f"provider's result, or challenge the job (`depin job challenge {job_id}`) while it "
            "is committed"
        )

    # ---------------------------------------------------------------- act

    def challenge(self, job_id: int) -> str:
        """Challenges a committed job (replicas = 1), posting a bond of verifiers x units x
        clearing price (approved here when the allowance is short); returns the tx hash.

        Verifiers drawn on-chain re-run the job. The bond pays them if they uphold the result;
        what is left of it returns at close (with compensation if the executor is caught)."""
        job = self._mine(job_id, "challenge")
        if job.state is not JobState.COMMITTED:
            raise WrongState(
                f"job {job_id} is {job.state.name.lower()}; only a committed job (replicas = 1, "
                "within its challenge window) can be challenged"
            )
        if int(self.w3.eth.get_block("latest")["timestamp"]) > job.deadline:
            raise WrongState(
                f"the challenge window of job {job_id} closed at {job.deadline}; it settles as "
                "committed"
            )
        bond = self.market.params().verifiers * job.pay
        self._check_funds(bond, "the challenge bond (verifiers x units x clearing price)")
        return _tx(self.market.challenge(job_id))  # approves the bond first when needed

    def cancel(self, job_id: int) -> str:
        """Cancels an open job; its full escrow is credited back (see `withdraw`). Returns the
        tx hash."""
        job = self._mine(job_id, "cancel")
        if job.state is not JobState.OPEN:
            raise WrongState(
                f"job {job_id} is {job.state.name.lower()}; only an open (unassigned) job can be "
                "cancelled"
            )
        return _tx(self.market.cancel(job_id))

    def withdraw(self) -> int:
        """Moves the wallet's market credits (refunds, returned bonds) to the wallet; returns
        the amount (0 when nothing was credited)."""
        return self.market.withdraw()

    def _mine(self, job_id: int, action: str) -> Job:
        job = self._job(job_id)
        if job.requester != self.address:
            raise NotRequester(
                f"job {job_id} belongs to {job.requester}; only its requester may {action} it"
            )
        return job

    # ---------------------------------------------------------------- read

    def balances(self, address: str | None = None) -> Balances:
        """ETH, token balance and market credits of `address` (default: this wallet)."""
        who = to_checksum_address(address or self.address)
        return Balances(
            address=who,
            eth=int(self.w3.eth.get_balance(who)),
            tokens=self.market.balance_of(who),
            credits=self.market.credits(who),
        )

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        limit: int = 50,
        source: Literal["auto", "relayer", "chain"] = "auto",
    ) -> list[JobSummary]:
        """This wallet's jobs, newest first. From the relayer's index (GET /jobs?requester=)
        when it serves one, else (`auto`) by scanning the market's JobCreated logs for this
        requester; states come from the chain either way."""
        jobs: list[JobSummary] | None = None
        if source != "chain":
            try:
                jobs = self._jobs_from_relayer(limit)
            except (RelayerUnreachable, RelayerRefused):
                if source == "relayer":
                    raise
        if jobs is None:
            jobs = self._jobs_from_chain()
        shown = [j for j in jobs if state is None or j.state is state][:limit]
        settled = {j.job_id: self._job(j.job_id) for j in shown if j.state is JobState.SETTLED}
        failures = self._failures(settled)
        costs = self._costs([j for j in shown if j.state.terminal])
        return [
            j.model_copy(
                update={
                    "failure": failures.get(j.job_id),
                    "kind": self._kind(j.spec_hash),
                    "cost": costs.get(j.job_id),
                }
            )
            for j in shown
        ]

    def _kind(self, spec_hash: str) -> str | None:
        """The kind of the spec stored under `spec_hash` (cached: specs never change)."""
        if spec_hash not in self._kinds:
            try:
                self._kinds[spec_hash] = JobSpec.from_json(self.artifacts.get(spec_hash)).kind
            except (DepinError, httpx.HTTPError, ValueError):
                return None  # not cached: the relayer may answer next time
        return self._kinds[spec_hash]

    def _costs(self, jobs: Sequence[JobSummary]) -> dict[int, int]:
        """Escrow plus challenge bond less credits, per terminal job of `jobs`."""
        if not jobs:
            return {}
        start = self.deployment.block
        credited = self.market.credited_by_job(self.address, from_block=start, chunk=LOG_CHUNK)
        bonds = self.market.challenge_bonds(self.address, from_block=start, chunk=LOG_CHUNK)
        return {
            j.job_id: j.escrow + bonds.get(j.job_id, 0) - credited.get(j.job_id, 0) for j in jobs
        }

    def _jobs_from_relayer(self, limit: int) -> list[JobSummary]:
        body = self.relayer.get_json(
            "/jobs",
            what="this requester's jobs (GET /jobs, the relayer's job index)",
            requester=self.address,
            limit=min(limit, 500),
        )
        out: list[JobSummary] = []
        for j in body.get("jobs", []) if isinstance(body, dict) else []:
            job_id = int(j["job_id"])
            out.append(
                JobSummary(
                    job_id=job_id,
                    state=self.market.state(job_id),
                    units=int(j["units"]),
                    replicas=int(j["replicas"]),
                    max_price_per_unit=int(j["max_price_per_unit"]),
                    escrow=int(j["escrow"]),
                    spec_hash=str(j["spec_hash"]).removeprefix("0x"),
                )
            )
        return out

    def _jobs_from_chain(self) -> list[JobSummary]:
        created = self.market.jobs_created(
            self.address, from_block=self.deployment.block, chunk=LOG_CHUNK
        )
        out = [
            JobSummary(
                job_id=c.job_id,
                state=self.market.state(c.job_id),
                units=c.request.units,
                replicas=c.request.replicas,
                max_price_per_unit=c.request.max_price_per_unit,
                escrow=c.escrow,
                spec_hash=c.spec_hash.hex(),
            )
            for c in created
        ]
        out.sort(key=lambda j: j.job_id, reverse=True)
        return out
