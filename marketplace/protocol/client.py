"""Typed client for the three contracts: every external function, batched forms included.

Reads need no key; writes go through a Signer, so reverts arrive as ContractRevert with the
decoded error and a hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.protocol import artifacts, hashing
from marketplace.protocol.chain import Signer
from marketplace.protocol.deployment import Deployment, MarketParams
from marketplace.protocol.errors import ConfigError


class JobState(IntEnum):
    """IJobMarket.JobState."""

    NONE = 0  #: no such job
    OPEN = 1  #: escrowed, waiting for assignment
    ASSIGNED = 2  #: providers assigned, commits due
    COMMITTED = 3  #: replicas = 1: result committed, challenge window running
    AUDITING = 4  #: audit drawn or challenged
    REVEALING = 5  #: all commitments in, reveals due
    SETTLED = 6  #: result accepted, providers paid
    REFUNDED = 7  #: no acceptable result; requester refunded
    EXPIRED = 8  #: never executed; full refund

    @property
    def terminal(self) -> bool:
        return self >= JobState.SETTLED


@dataclass(frozen=True)
class JobRequest:
    """What a requester asks for (IJobMarket.JobRequest)."""

    spec_hash: bytes
    units: int
    max_price_per_unit: int
    profile: int = 0
    replicas: int = 1
    min_vram_gib: int = 0
    accept_window: int = 3_600
    exec_window: int = 3_600

    def as_tuple(self) -> tuple[Any, ...]:
        if len(self.spec_hash) != 32:
            raise ConfigError("spec_hash must be the 32-byte sha256 of the canonical job spec")
        return (
            self.spec_hash,
            self.units,
            self.max_price_per_unit,
            self.profile,
            self.replicas,
            self.min_vram_gib,
            self.accept_window,
            self.exec_window,
        )


@dataclass(frozen=True)
class Job:
    """IJobMarket.Job as stored."""

    requester: str
    deadline: int
    flags: int
    state: JobState
    replicas: int
    participants: int
    profile: int
    commit_mask: int
    reveal_mask: int
    collateral_multiple: int
    max_price_per_unit: int
    clearing_price: int
    units: int
    min_vram_gib: int
    exec_window: int
    fee_bps: int

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Job:
        return cls(t[0], t[1], t[2], JobState(t[3]), *t[4:])

    @property
    def collateral(self) -> int:
        return self.collateral_multiple * self.units * self.max_price_per_unit

    @property
    def escrow(self) -> int:
        return hashing.escrow_of(self.replicas, self.units, self.max_price_per_unit, self.fee_bps)


@dataclass(frozen=True)
class Participant:
    provider: str
    commitment: int
    commit_block: int


@dataclass(frozen=True)
class ProviderTerms:
    """IProviderRegistry.Terms."""

    profile_mask: int
    price_per_unit: int
    vram_gib: int = 0
    gpu_model: str = "cpu"
    endpoint: str = ""

    def as_tuple(self) -> tuple[Any, ...]:
        model = self.gpu_model.encode()
        if len(model) > 32:
            raise ConfigError(f"gpu model name {self.gpu_model!r} exceeds 32 bytes; shorten it")
        return (
            self.profile_mask,
            model.ljust(32, b"\0"),
            self.vram_gib,
            self.price_per_unit,
            self.endpoint,
        )


@dataclass(frozen=True)
class ProviderRecord:
    """IProviderRegistry.Provider."""

    stake: int
    locked: int
    jobs_done: int
    jobs_slashed: int
    price_per_unit: int
    vram_gib: int
    unbond_at: int
    registered: bool
    unbonding: int
    profile_mask: int
    gpu_model: str
    endpoint: str

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> ProviderRecord:
        model = t[10].rstrip(b"\0").decode(errors="replace")
        return cls(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], model, t[11])

    @property
    def free_stake(self) -> int:
        return self.stake - self.locked - self.unbonding


class Market:
    """The three contracts of one deployment, read and written through one optional key."""

    def __init__(
        self, w3: Web3, deployment: Deployment, account: LocalAccount | None = None
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.signer = Signer(w3, account) if account is not None else None
        self.token = self._contract("ComputeToken", deployment.token)
        self.registry = self._contract("ProviderRegistry", deployment.registry)
        self.market = self._contract("JobMarket", deployment.market)

    def _contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=artifacts.load(name).abi
        )

    def as_account(self, account: LocalAccount) -> Market:
        """The same deployment driven by another key."""
        return Market(self.w3, self.deployment, account)

    @property
    def address(self) -> str:
        return self._signer().address

    def _signer(self) -> Signer:
        if self.signer is None:
            raise ConfigError("this client has no key; load a wallet to send transactions")
        return self.signer

    def _send(self, call: Any) -> TxReceipt:
        return self._signer().transact(call)

    # ------------------------------------------------------------------ token

    def balance_of(self, account: str) -> int:
        return int(self.token.functions.balanceOf(to_checksum_address(account)).call())

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self._send(self.token.functions.approve(to_checksum_address(spender), amount))

    def mint(self, to: str, amount: int) -> TxReceipt:
        return self._send(self.token.functions.mint(to_checksum_address(to), amount))

    def total_supply(self) -> int:
        return int(self.token.functions.totalSupply().call())

    # ------------------------------------------------------------------ registry

    def register(self, terms: ProviderTerms) -> TxReceipt:
        return self._send(self.registry.functions.register(terms.as_tuple()))

    def update_terms(self, terms: ProviderTerms) -> TxReceipt:
        return self._send(self.registry.functions.updateTerms(terms.as_tuple()))

    def stake(self, amount: int) -> TxReceipt:
        """Approves the registry if needed, then stakes `amount`."""
        self._ensure_allowance(self.registry.address, amount)
        return self._send(self.registry.functions.stake(amount))

    def request_unbond(self, amount: int) -> TxReceipt:
        return self._send(self.registry.functions.requestUnbond(amount))

    def cancel_unbond(self) -> TxReceipt:
        return self._send(self.registry.functions.cancelUnbond())

    def withdraw_unbonded(self) -> TxReceipt:
        return self._send(self.registry.functions.withdrawUnbonded())

    def provider(self, account: str) -> ProviderRecord:
        return ProviderRecord.from_tuple(
            self.registry.functions.provider(to_checksum_address(account)).call()
        )

    def total_staked(self) -> int:
        return int(self.registry.functions.totalStaked().call())

    # ------------------------------------------------------------------ requester

    def escrow_for(self, request: JobRequest) -> int:
        return int(self.market.functions.escrowFor(request.as_tuple()).call())

    def create_job(self, request: JobRequest) -> int:
        """Approves the escrow if needed and creates the job; returns its id."""
        self._ensure_allowance(self.market.address, self.escrow_for(request))
        receipt = self._send(self.market.functions.createJob(request.as_tuple()))
        return self._created_ids(receipt)[0]

    def create_jobs(self, requests: Sequence[JobRequest]) -> list[int]:
        """Creates many jobs in one transaction with one token pull; returns their ids."""
        total = sum(self.escrow_for(r) for r in requests)
        self._ensure_allowance(self.market.address, total)
        receipt = self._send(self.market.functions.createJobs([r.as_tuple() for r in requests]))
        return self._created_ids(receipt)

    def cancel(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.cancel(job_id))

    def challenge(self, job_id: int) -> TxReceipt:
        """Approves the bond if needed and challenges a Committed job."""
        self._ensure_allowance(self.market.address, self.params().challenge_bond)
        return self._send(self.market.functions.challenge(job_id))

    def _created_ids(self, receipt: TxReceipt) -> list[int]:
        events = self.market.events.JobCreated().process_receipt(receipt, errors=DISCARD)
        return [int(e["args"]["jobId"]) for e in events]

    def _ensure_allowance(self, spender: str, amount: int) -> None:
        owner = self._signer().address
        if int(self.token.functions.allowance(owner, spender).call()) < amount:
            self._send(self.token.functions.approve(spender, 2**256 - 1))

    # ------------------------------------------------------------------ matcher

    def assign(self, job_id: int, providers: Sequence[str]) -> TxReceipt:
        return self._send(
            self.market.functions.assign(job_id, [to_checksum_address(p) for p in providers])
        )

    def assign_batch(self, assignments: Sequence[tuple[int, Sequence[str]]]) -> TxReceipt:
        ids = [job_id for job_id, _ in assignments]
        lists = [[to_checksum_address(p) for p in ps] for _, ps in assignments]
        return self._send(self.market.functions.assignBatch(ids, lists))

    def assign_verifiers(self, job_id: int, verifiers: Sequence[str]) -> TxReceipt:
        return self._send(
            self.market.functions.assignVerifiers(
                job_id, [to_checksum_address(v) for v in verifiers]
            )
        )

    # ------------------------------------------------------------------ providers

    def commit(self, job_id: int, digest: bytes) -> TxReceipt:
        """Commits `digest` as the caller's result: result hash and seal are derived here."""
        me = self._signer().address
        call = self.market.functions.commit(
            job_id, hashing.result_hash(job_id, digest), hashing.seal(me, job_id, digest)
        )
        return self._send(call)

    def commit_batch(self, results: Sequence[tuple[int, bytes]]) -> TxReceipt:
        me = self._signer().address
        ids = [job_id for job_id, _ in results]
        hashes = [hashing.result_hash(j, d) for j, d in results]
        seals = [hashing.seal(me, j, d) for j, d in results]
        return self._send(self.market.functions.commitBatch(ids, hashes, seals))

    def commit_raw(self, job_id: int, result_hash: bytes, seal: bytes) -> TxReceipt:
        """Commits given hash and seal as they are (what a copycat would do)."""
        return self._send(self.market.functions.commit(job_id, result_hash, seal))

    def reveal(self, job_id: int, digest: bytes) -> TxReceipt:
        return self._send(self.market.functions.reveal(job_id, digest))

    # ------------------------------------------------------------------ keepers

    def draw_audit(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.drawAudit(job_id))

    def draw_audits(self, job_ids: Sequence[int]) -> TxReceipt:
        return self._send(self.market.functions.drawAudits(list(job_ids)))

    def finalize(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.finalize(job_id))

    def finalize_batch(self, job_ids: Sequence[int]) -> TxReceipt:
        return self._send(self.market.functions.finalizeBatch(list(job_ids)))

    def expire(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.expire(job_id))

    def expire_batch(self, job_ids: Sequence[int]) -> TxReceipt:
        return self._send(self.market.functions.expireBatch(list(job_ids)))

    # ------------------------------------------------------------------ payouts

    def withdraw(self) -> int:
        """Withdraws the caller's credits; returns the amount (0 when nothing was credited)."""
        amount = self.credits(self._signer().address)
        if amount:
            self._send(self.market.functions.withdraw())
        return amount

    def withdraw_fees(self) -> TxReceipt:
        return self._send(self.market.functions.withdrawFees())

    # ------------------------------------------------------------------ owner

    def set_params(self, params: MarketParams) -> TxReceipt:
        return self._send(self.market.functions.setParams(params.as_tuple()))

    def set_matcher(self, matcher: str, allowed: bool = True) -> TxReceipt:
        return self._send(self.market.functions.setMatcher(to_checksum_address(matcher), allowed))

    # ------------------------------------------------------------------ views

    def state(self, job_id: int) -> JobState:
        return JobState(self.market.functions.state(job_id).call())

    def job(self, job_id: int) -> Job:
        return Job.from_tuple(self.market.functions.job(job_id).call())

    def participants(self, job_id: int) -> list[Participant]:
        return [Participant(*p) for p in self.market.functions.participants(job_id).call()]

    def credits(self, account: str) -> int:
        return int(self.market.functions.credits(to_checksum_address(account)).call())

    def params(self) -> MarketParams:
        return MarketParams(*self.market.functions.params().call())

    def audit_pool(self) -> int:
        return int(self.market.functions.auditPool().call())

    def protocol_fees(self) -> int:
        return int(self.market.functions.protocolFees().call())

    def total_bonds(self) -> int:
        return int(self.market.functions.totalBonds().call())

    def job_count(self) -> int:
        return int(self.market.functions.jobCount().call())

    def audit_selected(self, job_id: int) -> bool:
        return bool(self.market.functions.auditSelected(job_id).call())
