"""Typed client for the contracts: every external function, batched forms included.

Reads need no key; writes go through a Signer, so reverts arrive as ContractRevert with the
decoded error and a hint.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Any

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from marketplace.protocol import abis, hashing
from marketplace.protocol.chain import FeePolicy, Signer
from marketplace.protocol.deployment import Deployment, MarketParams
from marketplace.protocol.errors import ConfigError, ContractRevert, decode_revert


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

    @classmethod
    def from_event(cls, value: Any) -> JobRequest:
        """From the `request` argument of a decoded JobCreated event."""
        return cls(
            spec_hash=bytes(value["specHash"]),
            units=int(value["units"]),
            max_price_per_unit=int(value["maxPricePerUnit"]),
            profile=int(value["profile"]),
            replicas=int(value["replicas"]),
            min_vram_gib=int(value["minVramGiB"]),
            accept_window=int(value["acceptWindow"]),
            exec_window=int(value["execWindow"]),
        )


# Job.flags bits: the only copy in Python of the Solidity constants, so a contract change is
# made here once and every reader of `Job.flags` (the keeper's plan included) follows.
#: JobMarket.FLAG_REOPENED: the job went back to Open once for reassignment.
FLAG_REOPENED = 1
#: JobMarket.FLAG_CHALLENGED: the requester challenged the committed result.
FLAG_CHALLENGED = 2
#: JobMarket.FLAG_DRAWN (= MarketLib.FLAG_DRAWN): the replicas = 1 audit draw ran and did not
#: select the job.
FLAG_DRAWN = 4
#: MarketLib.FLAG_RESEEDED: a draw found its seed block hash aged out and re-seeded from a
#: later block (Job.seed_block).
FLAG_RESEEDED = 8

#: Replica counts the contract accepts (odd, so replicas always have a majority).
VALID_REPLICAS = (1, 3, 5)


@dataclass(frozen=True)
class Job:
    """IJobMarket.Job as stored (three slots), in contract field order."""

    requester: str
    deadline: int
    flags: int
    state: JobState
    replicas: int
    participants: int
    profile: int
    collateral_multiple: int
    fee_bps: int
    max_price_per_unit: int
    clearing_price: int
    units: int
    min_vram_gib: int
    exec_window: int
    premium_bps: int
    commit_mask: int
    reveal_mask: int
    active_mask: int
    seed_block: int
    round: int
    seats: int
    verifiers_from: int
    draws: int
    min_fee: int

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Job:
        return cls(t[0], t[1], t[2], JobState(t[3]), *t[4:])

    @property
    def collateral(self) -> int:
        """Collateral each participant locks: multiple x units x clearing price (0 before
        assignment, when no clearing price exists yet)."""
        return self.collateral_multiple * self.units * self.clearing_price

    @property
    def pay(self) -> int:
        """What one upheld executor or verifier is paid: units x clearing price."""
        return self.units * self.clearing_price

    @property
    def escrow(self) -> int:
        return hashing.escrow_of(
            self.replicas,
            self.units,
            self.max_price_per_unit,
            self.fee_bps,
            self.min_fee,
            self.premium_bps,
        )

    @property
    def reopened(self) -> bool:
        return bool(self.flags & FLAG_REOPENED)

    @property
    def challenged(self) -> bool:
        return bool(self.flags & FLAG_CHALLENGED)

    @property
    def drawn_clear(self) -> bool:
        """The replicas = 1 audit draw ran and did not select the job."""
        return bool(self.flags & FLAG_DRAWN)

    @property
    def reseeded(self) -> bool:
        return bool(self.flags & FLAG_RESEEDED)

    @property
    def seats_filled(self) -> int:
        """Verifiers drawn so far in the current audit round (0 before any audit)."""
        if self.round == 0:
            return 0
        return self.participants - self.verifiers_from

    @property
    def staffed(self) -> bool:
        """Every seat of the current audit round is filled (False before any audit)."""
        return self.round > 0 and self.seats_filled >= self.seats

    @property
    def needs_staffing(self) -> bool:
        """Auditing with open seats: `staffAudit` can be called from the block after seedBlock."""
        return self.state == JobState.AUDITING and self.round > 0 and not self.staffed


@dataclass(frozen=True)
class Participant:
    provider: str
    commitment: int
    commit_block: int


@dataclass(frozen=True)
class Permit:
    """An ERC-2612 permit signature (v, r, s) for ComputeToken."""

    v: int
    r: bytes
    s: bytes


@dataclass(frozen=True)
class JobCreated:
    """A JobMarket JobCreated event."""

    job_id: int
    requester: str
    spec_hash: bytes
    request: JobRequest
    accept_by: int
    escrow: int


@dataclass(frozen=True)
class AuditStarted:
    """A JobMarket AuditStarted event; `block` and `log_index` order it among other events."""

    job_id: int
    round: int
    seats: int
    seed_block: int
    staff_by: int
    block: int
    log_index: int


@dataclass(frozen=True)
class ProviderAssigned:
    """A JobMarket ProviderAssigned event (`index` >= replicas: a verifier); `block` and
    `log_index` order it among other events."""

    job_id: int
    provider: str
    index: int
    price_per_unit: int
    deadline: int
    block: int
    log_index: int


@dataclass(frozen=True)
class ProviderSlashed:
    """A JobMarket ProviderSlashed event."""

    job_id: int
    provider: str
    amount: int


@dataclass(frozen=True)
class ResultCommitted:
    """A JobMarket ResultCommitted event: the hash and seal `provider` committed."""

    job_id: int
    provider: str
    result_hash: bytes
    seal: bytes


#: Largest uint32: a provider with this max_units takes jobs of any size.
UNLIMITED_UNITS = 2**32 - 1


@dataclass(frozen=True)
class ProviderTerms:
    """IProviderRegistry.Terms. `min_exec_window` is the shortest exec window (seconds) the
    provider accepts as an executor (0: only the protocol floor); `max_units` the most units per
    job it accepts as an executor (at least 1)."""

    profile_mask: int
    price_per_unit: int
    vram_gib: int = 0
    gpu_model: str = "cpu"
    endpoint: str = ""
    min_exec_window: int = 0
    max_units: int = UNLIMITED_UNITS

    def as_tuple(self) -> tuple[Any, ...]:
        model = self.gpu_model.encode()
        if len(model) > 32:
            raise ConfigError(f"gpu model name {self.gpu_model!r} exceeds 32 bytes; shorten it")
        if not 1 <= self.max_units <= UNLIMITED_UNITS:
            raise ConfigError(f"max_units {self.max_units} must be in 1..{UNLIMITED_UNITS}")
        if not 0 <= self.min_exec_window <= UNLIMITED_UNITS:
            raise ConfigError(f"min_exec_window {self.min_exec_window} must fit uint32 seconds")
        return (
            self.profile_mask,
            model.ljust(32, b"\0"),
            self.vram_gib,
            self.price_per_unit,
            self.endpoint,
            self.min_exec_window,
            self.max_units,
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
    min_exec_window: int = 0
    max_units: int = UNLIMITED_UNITS

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> ProviderRecord:
        model = t[10].rstrip(b"\0").decode(errors="replace")
        return cls(
            t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], model, t[11], t[12], t[13]
        )

    @property
    def free_stake(self) -> int:
        return self.stake - self.locked - self.unbonding


@cache
def _selectors() -> dict[bytes, str]:
    """4-byte selector -> function name, over the JobMarket ABI."""
    table: dict[bytes, str] = {}
    for entry in abis.load("JobMarket").abi:
        if entry["type"] == "function":
            types = ",".join(_canonical_type(p) for p in entry["inputs"])
            table[function_signature_to_4byte_selector(f"{entry['name']}({types})")] = entry["name"]
    return table


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def operation_name(selector: bytes | str) -> str:
    """The JobMarket function behind a 4-byte selector (hex of it when unknown)."""
    raw = bytes.fromhex(selector.removeprefix("0x")) if isinstance(selector, str) else selector
    return _selectors().get(bytes(raw[:4]), "0x" + bytes(raw[:4]).hex())


@dataclass(frozen=True)
class BatchSkip:
    """A BatchItemSkipped event: `operation` (e.g. "staffAudit") reverted for `job_id`."""

    job_id: int
    operation: str
    reason: ContractRevert | None
    reason_data: bytes

    @property
    def error(self) -> str:
        """The decoded custom error's name, or the raw revert data in hex."""
        return self.reason.name if self.reason is not None else "0x" + self.reason_data.hex()

    @classmethod
    def from_args(cls, args: Any) -> BatchSkip:
        data = bytes(args["reason"])
        return cls(
            job_id=int(args["jobId"]),
            operation=operation_name(bytes(args["operation"])),
            reason=decode_revert(data),
            reason_data=data,
        )

    def __str__(self) -> str:
        return f"{self.operation}({self.job_id}) skipped: {self.reason or self.error}"


def _job_created(args: Any) -> JobCreated:
    return JobCreated(
        job_id=int(args["jobId"]),
        requester=str(args["requester"]),
        spec_hash=bytes(args["specHash"]),
        request=JobRequest.from_event(args["request"]),
        accept_by=int(args["acceptBy"]),
        escrow=int(args["escrow"]),
    )


#: Gas added per batched item (the self-call and its event), per skipped item, and per batch.
_BATCH_ITEM_OVERHEAD = 15_000
_BATCH_SKIP_GAS = 40_000
_BATCH_BASE_GAS = 30_000


class Market:
    """The three contracts of one deployment, read and written through one optional key."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        account: LocalAccount | None = None,
        *,
        fees: FeePolicy | None = None,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.signer = Signer(w3, account, fees) if account is not None else None
        self.token = self._contract("ComputeToken", deployment.token)
        self.registry = self._contract("ProviderRegistry", deployment.registry)
        self.market = self._contract("JobMarket", deployment.market)

    def _contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abis.load(name).abi)

    def as_account(self, account: LocalAccount) -> Market:
        """The same deployment driven by another key."""
        fees = self.signer.fees if self.signer is not None else None
        return Market(self.w3, self.deployment, account, fees=fees)

    @property
    def address(self) -> str:
        return self._signer().address

    def _signer(self) -> Signer:
        if self.signer is None:
            raise ConfigError("this client has no key; load a wallet to send transactions")
        return self.signer

    def _send(self, call: Any, *, min_gas: int = 0) -> TxReceipt:
        return self._signer().transact(call, min_gas=min_gas)

    def _send_batch(self, call: Any, items: Sequence[Any]) -> TxReceipt:
        """Sends a batched call whose items run in their own sub-calls (a reverting item is
        skipped): gas is at least the sum of the items' own estimates, so no item is starved
        into a skip by the node's estimate of the batch."""
        need = _BATCH_BASE_GAS
        sender = {"from": self._signer().address}
        for item in items:
            try:
                need += int(item.estimate_gas(sender)) + _BATCH_ITEM_OVERHEAD
            except Exception:  # the item reverts: the batch skips it cheaply
                need += _BATCH_SKIP_GAS
        return self._send(call, min_gas=need)

    # ------------------------------------------------------------------ token

    def balance_of(self, account: str) -> int:
        return int(self.token.functions.balanceOf(to_checksum_address(account)).call())

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self._send(self.token.functions.approve(to_checksum_address(spender), amount))

    def mint(self, to: str, amount: int) -> TxReceipt:
        return self._send(self.token.functions.mint(to_checksum_address(to), amount))

    def token_owner(self) -> str:
        return str(self.token.functions.owner().call())

    def mint_as_owner(self, to: str, amount: int) -> TxReceipt:
        """Devnet only: mints as the token's owner through Anvil's account impersonation, so
        the owner's key need not be known (a devnet someone else started, a forked chain)."""
        owner = self.token_owner()
        response = self.w3.provider.make_request(RPCEndpoint("anvil_impersonateAccount"), [owner])
        if "error" in response:
            raise ConfigError(
                f"this node does not impersonate accounts ({response['error']}); mint with the "
                "token owner's key instead (`depin wallet faucet --minter-key`)"
            )
        try:
            call = self.token.functions.mint(to_checksum_address(to), amount)
            tx = call.transact({"from": owner})
            receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        finally:
            self.w3.provider.make_request(RPCEndpoint("anvil_stopImpersonatingAccount"), [owner])
        if receipt["status"] != 1:
            raise ConfigError(f"minting as the token owner {owner} reverted (tx {tx.hex()})")
        return receipt

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

    def withdraw_unbonded(self) -> int:
        """Withdraws the caller's unlocked unbonded stake; returns the amount moved (its
        Unbonded events)."""
        receipt = self._send(self.registry.functions.withdrawUnbonded())
        events = self.registry.events.Unbonded().process_receipt(receipt, errors=DISCARD)
        return sum(int(e["args"]["amount"]) for e in events)

    def provider(self, account: str) -> ProviderRecord:
        return ProviderRecord.from_tuple(
            self.registry.functions.provider(to_checksum_address(account)).call()
        )

    def total_staked(self) -> int:
        return int(self.registry.functions.totalStaked().call())

    # ------------------------------------------------------------------ requester

    def escrow_for(self, request: JobRequest) -> int:
        """JobMarket.escrowFor: payment + max(fee, minFee) + the audit premium (replicas = 1)."""
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

    def escrow_allowance(self, owner: str) -> int:
        """What `owner` has allowed the JobMarket to pull from its tokens."""
        return self.allowance(owner, self.market.address)

    def allowance(self, owner: str, spender: str) -> int:
        return int(
            self.token.functions.allowance(
                to_checksum_address(owner), to_checksum_address(spender)
            ).call()
        )

    def permit_signature(self, spender: str, value: int, deadline: int) -> Permit:
        """An ERC-2612 permit, signed with this client's key, letting `spender` pull `value`
        tokens until `deadline` (a chain timestamp); the domain and nonce come from the token."""
        signer = self._signer()
        token = self.token.functions
        _, name, version, chain_id, verifying, _, _ = token.eip712Domain().call()
        nonce = int(token.nonces(signer.address).call())
        typed = encode_typed_data(
            full_message={
                "types": {
                    "EIP712Domain": [
                        {"name": "name", "type": "string"},
                        {"name": "version", "type": "string"},
                        {"name": "chainId", "type": "uint256"},
                        {"name": "verifyingContract", "type": "address"},
                    ],
                    "Permit": [
                        {"name": "owner", "type": "address"},
                        {"name": "spender", "type": "address"},
                        {"name": "value", "type": "uint256"},
                        {"name": "nonce", "type": "uint256"},
                        {"name": "deadline", "type": "uint256"},
                    ],
                },
                "primaryType": "Permit",
                "domain": {
                    "name": name,
                    "version": version,
                    "chainId": chain_id,
                    "verifyingContract": verifying,
                },
                "message": {
                    "owner": signer.address,
                    "spender": to_checksum_address(spender),
                    "value": value,
                    "nonce": nonce,
                    "deadline": deadline,
                },
            }
        )
        signed = signer.account.sign_message(typed)
        return Permit(signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))

    def create_jobs_with_permit(
        self, requests: Sequence[JobRequest], value: int, deadline: int
    ) -> list[int]:
        """Creates many jobs in one transaction whose escrow `value` is authorised by a permit
        signed here (valid until `deadline`, a chain timestamp), with no approve transaction;
        returns their ids."""
        permit = self.permit_signature(self.market.address, value, deadline)
        call = self.market.functions.createJobsWithPermit(
            [r.as_tuple() for r in requests], value, deadline, permit.v, permit.r, permit.s
        )
        return self._created_ids(self._send(call))

    def cancel(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.cancel(job_id))

    def challenge_bond_for(self, job_id: int) -> int:
        """The bond `challenge(job_id)` pulls: verifiers x units x clearing price."""
        return self.params().verifiers * self.job(job_id).pay

    def challenge(self, job_id: int) -> TxReceipt:
        """Approves the bond (verifiers x units x clearing price) if needed and challenges a
        Committed job."""
        self._ensure_allowance(self.market.address, self.challenge_bond_for(job_id))
        return self._send(self.market.functions.challenge(job_id))

    def skipped(self, receipt: TxReceipt) -> list[BatchSkip]:
        """The items a batched call (assignBatch, drawAudits, staffAudits, finalizeBatch,
        expireBatch) skipped, with their decoded revert reasons."""
        events = self.market.events.BatchItemSkipped().process_receipt(receipt, errors=DISCARD)
        return [BatchSkip.from_args(e["args"]) for e in events]

    def _created_ids(self, receipt: TxReceipt) -> list[int]:
        events = self.market.events.JobCreated().process_receipt(receipt, errors=DISCARD)
        return [int(e["args"]["jobId"]) for e in events]

    def _ensure_allowance(self, spender: str, amount: int) -> None:
        owner = self._signer().address
        if self.allowance(owner, spender) < amount:
            self._send(self.token.functions.approve(spender, 2**256 - 1))

    # ------------------------------------------------------------------ matcher

    def assign(self, job_id: int, providers: Sequence[str]) -> TxReceipt:
        return self._send(
            self.market.functions.assign(job_id, [to_checksum_address(p) for p in providers])
        )

    def assign_batch(self, assignments: Sequence[tuple[int, Sequence[str]]]) -> TxReceipt:
        ids = [job_id for job_id, _ in assignments]
        lists = [[to_checksum_address(p) for p in ps] for _, ps in assignments]
        items = [self.market.functions.assign(j, ps) for j, ps in zip(ids, lists, strict=True)]
        return self._send_batch(self.market.functions.assignBatch(ids, lists), items)

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

    def release(self, job_id: int) -> TxReceipt:
        """Hands the caller's executor seat of an Assigned job back before its deadline, when its
        worker cannot run the job: units x clearing price of its collateral goes to the audit
        pool, the rest is unlocked, and it cannot be assigned the job again. Only before the
        caller's commit; verifiers cannot release."""
        return self._send(self.market.functions.release(job_id))

    # ------------------------------------------------------------------ keepers

    def draw_audit(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.drawAudit(job_id))

    def draw_audits(self, job_ids: Sequence[int]) -> TxReceipt:
        items = [self.market.functions.drawAudit(j) for j in job_ids]
        return self._send_batch(self.market.functions.drawAudits(list(job_ids)), items)

    def staff_audit(self, job_id: int) -> TxReceipt:
        """Draws the current audit round's verifiers on-chain (from the block after seedBlock);
        re-seeds instead when the seed block hash aged out (call again then)."""
        return self._send(self.market.functions.staffAudit(job_id))

    def staff_audits(self, job_ids: Sequence[int]) -> TxReceipt:
        items = [self.market.functions.staffAudit(j) for j in job_ids]
        return self._send_batch(self.market.functions.staffAudits(list(job_ids)), items)

    def finalize(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.finalize(job_id))

    def finalize_batch(self, job_ids: Sequence[int]) -> TxReceipt:
        items = [self.market.functions.finalize(j) for j in job_ids]
        return self._send_batch(self.market.functions.finalizeBatch(list(job_ids)), items)

    def expire(self, job_id: int) -> TxReceipt:
        return self._send(self.market.functions.expire(job_id))

    def expire_batch(self, job_ids: Sequence[int]) -> TxReceipt:
        items = [self.market.functions.expire(j) for j in job_ids]
        return self._send_batch(self.market.functions.expireBatch(list(job_ids)), items)

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

    def _logs(
        self, event: str, filters: dict[str, Any], *, from_block: int, chunk: int
    ) -> Iterator[Any]:
        """The market's `event` logs matching `filters` from `from_block` to the head, read in
        `chunk`-block ranges, as public RPCs cap a range."""
        head = int(self.w3.eth.block_number)
        start = from_block
        while start <= head:
            end = min(head, start + chunk - 1)
            yield from self.market.events[event]().get_logs(
                argument_filters=filters, from_block=start, to_block=end
            )
            start = end + 1

    def event_args(
        self, event: str, *, from_block: int, chunk: int = 10_000
    ) -> list[dict[str, Any]]:
        """The arguments of every market `event` (by its Solidity name) from `from_block` on,
        oldest first: for audits that weigh every event of a kind (double commits, double pays);
        a product path uses a typed method instead."""
        return [
            dict(log["args"]) for log in self._logs(event, {}, from_block=from_block, chunk=chunk)
        ]

    def upheld_digests(
        self, job_ids: Collection[int], *, from_block: int, chunk: int = 10_000
    ) -> dict[int, bytes]:
        """The digest each of `job_ids` upheld when it closed (its JobClosed event; 32 zero
        bytes: closed with no verdict); a job not closed yet is absent."""
        if not job_ids:
            return {}
        logs = self._logs(
            "JobClosed", {"jobId": sorted(set(job_ids))}, from_block=from_block, chunk=chunk
        )
        return {int(log["args"]["jobId"]): bytes(log["args"]["digest"]) for log in logs}

    def credited_by_job(
        self, account: str, *, from_block: int, chunk: int = 10_000
    ) -> dict[int, int]:
        """What the market credited `account` per job (payments, refunds, returned bonds,
        compensation: its Credited events)."""
        out: dict[int, int] = {}
        filters = {"account": to_checksum_address(account)}
        for log in self._logs("Credited", filters, from_block=from_block, chunk=chunk):
            job_id = int(log["args"]["jobId"])
            out[job_id] = out.get(job_id, 0) + int(log["args"]["amount"])
        return out

    def challenge_bonds(
        self, requester: str, *, from_block: int, chunk: int = 10_000
    ) -> dict[int, int]:
        """The bond `requester` posted per job it challenged (its JobChallenged events)."""
        filters = {"requester": to_checksum_address(requester)}
        logs = self._logs("JobChallenged", filters, from_block=from_block, chunk=chunk)
        return {int(log["args"]["jobId"]): int(log["args"]["bond"]) for log in logs}

    def jobs_created(
        self, requester: str, *, from_block: int, chunk: int = 10_000
    ) -> list[JobCreated]:
        """Every job `requester` created (its JobCreated events), oldest first."""
        filters = {"requester": to_checksum_address(requester)}
        return [
            _job_created(log["args"])
            for log in self._logs("JobCreated", filters, from_block=from_block, chunk=chunk)
        ]

    def audits_started(
        self, job_id: int, *, from_block: int, chunk: int = 10_000
    ) -> list[AuditStarted]:
        """Every audit round `job_id` started (its AuditStarted events), oldest first."""
        return [
            AuditStarted(
                job_id=int(log["args"]["jobId"]),
                round=int(log["args"]["round"]),
                seats=int(log["args"]["seats"]),
                seed_block=int(log["args"]["seedBlock"]),
                staff_by=int(log["args"]["staffBy"]),
                block=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
            )
            for log in self._logs(
                "AuditStarted", {"jobId": job_id}, from_block=from_block, chunk=chunk
            )
        ]

    def providers_assigned(
        self, job_id: int, *, from_block: int, chunk: int = 10_000
    ) -> list[ProviderAssigned]:
        """Every seat of `job_id` filled, executors and verifiers (its ProviderAssigned
        events), oldest first."""
        return [
            ProviderAssigned(
                job_id=int(log["args"]["jobId"]),
                provider=str(log["args"]["provider"]),
                index=int(log["args"]["index"]),
                price_per_unit=int(log["args"]["pricePerUnit"]),
                deadline=int(log["args"]["deadline"]),
                block=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
            )
            for log in self._logs(
                "ProviderAssigned", {"jobId": job_id}, from_block=from_block, chunk=chunk
            )
        ]

    def providers_slashed(
        self, job_id: int, *, from_block: int, chunk: int = 10_000
    ) -> list[ProviderSlashed]:
        """Every slash of a provider over `job_id` (its ProviderSlashed events), oldest first."""
        return [
            ProviderSlashed(
                job_id=int(log["args"]["jobId"]),
                provider=str(log["args"]["provider"]),
                amount=int(log["args"]["amount"]),
            )
            for log in self._logs(
                "ProviderSlashed", {"jobId": job_id}, from_block=from_block, chunk=chunk
            )
        ]

    def results_committed(
        self, job_id: int, *, from_block: int, chunk: int = 10_000
    ) -> list[ResultCommitted]:
        """Every commitment made to `job_id` (its ResultCommitted events), oldest first."""
        return [
            ResultCommitted(
                job_id=int(log["args"]["jobId"]),
                provider=str(log["args"]["provider"]),
                result_hash=bytes(log["args"]["resultHash"]),
                seal=bytes(log["args"]["seal"]),
            )
            for log in self._logs(
                "ResultCommitted", {"jobId": job_id}, from_block=from_block, chunk=chunk
            )
        ]

    def verifiers(self, job_id: int) -> list[Participant]:
        """The job's drawn verifiers of every round (participants from index `replicas` on)."""
        return self.participants(job_id)[self.job(job_id).replicas :]

    def credits(self, account: str) -> int:
        return int(self.market.functions.credits(to_checksum_address(account)).call())

    def params(self) -> MarketParams:
        return MarketParams(*self.market.functions.params().call())

    def audit_pool(self) -> int:
        return int(self.market.functions.auditPool().call())

    def protocol_fees(self) -> int:
        return int(self.market.functions.protocolFees().call())

    def challenge_bond(self, job_id: int) -> int:
        """Bond still held for the requester's challenge of `job_id` (0 if none)."""
        return int(self.market.functions.challengeBond(job_id).call())

    def revealed_digest(self, job_id: int, index: int) -> bytes:
        return bytes(self.market.functions.revealedDigest(job_id, index).call())

    def max_job_lifetime(self) -> int:
        return int(self.market.functions.maxJobLifetime().call())

    def free_stake(self, account: str) -> int:
        return int(self.registry.functions.freeStake(to_checksum_address(account)).call())

    def profile_stake(self, profile: int) -> int:
        return int(self.registry.functions.profileStake(profile).call())

    def draw_weight(self, profile: int, account: str) -> int:
        return int(self.registry.functions.drawWeight(profile, to_checksum_address(account)).call())

    def total_bonds(self) -> int:
        return int(self.market.functions.totalBonds().call())

    def job_count(self) -> int:
        return int(self.market.functions.jobCount().call())

    def audit_selected(self, job_id: int) -> bool:
        return bool(self.market.functions.auditSelected(job_id).call())
