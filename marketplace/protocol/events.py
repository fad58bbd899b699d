"""Typed events of the JobMarket and the ProviderRegistry, decoded from raw `eth_getLogs` logs.

Decoding goes through web3's ABI event processing over the ABIs the SDK ships
(`marketplace.protocol.abis`); topics are computed from those ABIs, never written here.
Each event is a frozen dataclass carrying where it happened (block number and hash, transaction
hash, log index) and its arguments in snake case, with structs as the SDK's dataclasses, the job
state as `JobState`, addresses checksummed and bytes32 values as `bytes`.

Each event also keeps its `RawLog` (emitter, topics, data): the store records it, and rebuilding
the projections after a reorg decodes the same bytes again through `decode`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, cast

from eth_typing import ABIEvent, BlockNumber, ChecksumAddress, HexStr
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractEvent
from web3.types import LogReceipt

from marketplace.protocol import abis
from marketplace.protocol.client import JobRequest, JobState, ProviderTerms, operation_name
from marketplace.protocol.deployment import Deployment, MarketParams
from marketplace.protocol.errors import ContractRevert, decode_revert

#: The contracts whose events the relayer follows.
SOURCES = ("JobMarket", "ProviderRegistry")


def _hex(value: bytes | str) -> str:
    """`0x`-prefixed lowercase hex of a hash given as bytes or text."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = value.lower()
    return text if text.startswith("0x") else "0x" + text


@dataclass(frozen=True)
class RawLog:
    """One log as the node returned it: enough to decode it again and to key it."""

    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    tx_hash: str
    tx_index: int
    log_index: int

    @classmethod
    def from_rpc(cls, log: Mapping[str, Any]) -> RawLog:
        """From an `eth_getLogs` entry (web3-formatted or plain JSON-RPC)."""
        return cls(
            address=to_checksum_address(log["address"]),
            topics=tuple(_hex(t) for t in log["topics"]),
            data=_hex(log["data"]),
            block_number=_int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            tx_hash=_hex(log["transactionHash"]),
            tx_index=_int(log["transactionIndex"]),
            log_index=_int(log["logIndex"]),
        )

    def as_receipt(self) -> LogReceipt:
        """The web3 `LogReceipt` shape that contract event processing reads."""
        return {
            "address": ChecksumAddress(to_checksum_address(self.address)),
            "topics": [HexBytes(t) for t in self.topics],
            "data": HexBytes(self.data),
            "blockNumber": BlockNumber(self.block_number),
            "blockHash": HexBytes(self.block_hash),
            "transactionHash": HexBytes(self.tx_hash),
            "transactionIndex": self.tx_index,
            "logIndex": self.log_index,
            "removed": False,
        }


def _int(value: int | str) -> int:
    return value if isinstance(value, int) else int(value, 16)


@dataclass(frozen=True, kw_only=True)
class ChainEvent:
    """Where an event happened; every decoded event extends this."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    raw: RawLog = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """The event's name in the ABI."""
        return type(self).__name__

    @property
    def key(self) -> tuple[str, int]:
        """(tx_hash, log_index): with the chain id, what makes an event unique."""
        return self.tx_hash, self.log_index


# ---------------------------------------------------------------------- JobMarket


@dataclass(frozen=True, kw_only=True)
class JobCreated(ChainEvent):
    job_id: int
    requester: str
    spec_hash: bytes
    request: JobRequest
    accept_by: int
    escrow: int


@dataclass(frozen=True, kw_only=True)
class ProviderAssigned(ChainEvent):
    job_id: int
    provider: str
    index: int
    price_per_unit: int
    deadline: int


@dataclass(frozen=True, kw_only=True)
class ResultCommitted(ChainEvent):
    job_id: int
    provider: str
    result_hash: bytes
    seal: bytes


@dataclass(frozen=True, kw_only=True)
class AuditDrawn(ChainEvent):
    job_id: int
    audited: bool


@dataclass(frozen=True, kw_only=True)
class AuditReseeded(ChainEvent):
    """A draw (the replicas = 1 audit draw, or a round's verifier draw) found its block hash
    aged out and will use the hash of `seed_block` instead."""

    job_id: int
    seed_block: int


@dataclass(frozen=True, kw_only=True)
class AuditStarted(ChainEvent):
    """Audit round `round` began: `seats` verifiers are drawn on-chain from the hash of the
    block after `seed_block` until `staff_by`."""

    job_id: int
    round: int
    seats: int
    seed_block: int
    staff_by: int


@dataclass(frozen=True, kw_only=True)
class AuditStaffed(ChainEvent):
    """Every seat of round `round` is filled; its verifiers commit by `deadline`."""

    job_id: int
    round: int
    deadline: int


@dataclass(frozen=True, kw_only=True)
class BatchItemSkipped(ChainEvent):
    """A batched call skipped `job_id`: `operation` (a selector) reverted with `reason`."""

    job_id: int
    operation: bytes
    reason: bytes

    @property
    def operation_name(self) -> str:
        """The single-item function that reverted, e.g. "staffAudit"."""
        return operation_name(self.operation)

    @property
    def decoded(self) -> ContractRevert | None:
        return decode_revert(self.reason)

    @property
    def error(self) -> str:
        """The decoded custom error's name, or the raw reason in hex."""
        decoded = self.decoded
        return decoded.name if decoded is not None else "0x" + self.reason.hex()


@dataclass(frozen=True, kw_only=True)
class JobChallenged(ChainEvent):
    job_id: int
    requester: str
    bond: int


@dataclass(frozen=True, kw_only=True)
class RevealStarted(ChainEvent):
    job_id: int
    deadline: int


@dataclass(frozen=True, kw_only=True)
class ResultRevealed(ChainEvent):
    job_id: int
    provider: str
    digest: bytes


@dataclass(frozen=True, kw_only=True)
class ProviderSlashed(ChainEvent):
    job_id: int
    provider: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class ProviderReleased(ChainEvent):
    """Executor `provider` handed its seat back before the deadline: `fee` (units x clearing
    price) of its collateral went to the audit pool (the registry's Slashed event carries it),
    the rest was unlocked, and it cannot be assigned the job again."""

    job_id: int
    provider: str
    fee: int


@dataclass(frozen=True, kw_only=True)
class JobReopened(ChainEvent):
    job_id: int
    accept_by: int


@dataclass(frozen=True, kw_only=True)
class JobClosed(ChainEvent):
    job_id: int
    state: JobState
    digest: bytes
    paid: int
    refunded: int
    fees: int
    burned: int


@dataclass(frozen=True, kw_only=True)
class Credited(ChainEvent):
    job_id: int
    account: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class ParamsSet(ChainEvent):
    """Parameters changed; jobs snapshot `collateral_multiple`, `fee_bps` and `min_fee` (and the
    audit premium) at creation."""

    params: MarketParams


# ---------------------------------------------------------------------- ProviderRegistry


@dataclass(frozen=True, kw_only=True)
class ProviderRegistered(ChainEvent):
    provider: str
    terms: ProviderTerms


@dataclass(frozen=True, kw_only=True)
class TermsUpdated(ChainEvent):
    provider: str
    terms: ProviderTerms


@dataclass(frozen=True, kw_only=True)
class Staked(ChainEvent):
    provider: str
    amount: int
    stake: int


@dataclass(frozen=True, kw_only=True)
class UnbondRequested(ChainEvent):
    provider: str
    amount: int
    unbond_at: int


@dataclass(frozen=True, kw_only=True)
class UnbondCancelled(ChainEvent):
    provider: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class Unbonded(ChainEvent):
    provider: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class Slashed(ChainEvent):
    job_id: int
    provider: str
    amount: int


@dataclass(frozen=True, kw_only=True)
class ProfileAdded(ChainEvent):
    id: int
    descriptor: bytes


#: The decoded events per source contract; any other event of theirs is skipped.
EVENTS: dict[str, tuple[type[ChainEvent], ...]] = {
    "JobMarket": (
        JobCreated,
        ProviderAssigned,
        ResultCommitted,
        AuditDrawn,
        AuditReseeded,
        AuditStarted,
        AuditStaffed,
        BatchItemSkipped,
        JobChallenged,
        RevealStarted,
        ResultRevealed,
        ProviderSlashed,
        ProviderReleased,
        JobReopened,
        JobClosed,
        Credited,
        ParamsSet,
    ),
    "ProviderRegistry": (
        ProviderRegistered,
        TermsUpdated,
        Staked,
        UnbondRequested,
        UnbondCancelled,
        Unbonded,
        Slashed,
        ProfileAdded,
    ),
}


# ---------------------------------------------------------------------- decoding


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("gi_b", "gib")


def _terms(value: Mapping[str, Any]) -> ProviderTerms:
    return ProviderTerms(
        profile_mask=int(value["profileMask"]),
        price_per_unit=int(value["pricePerUnit"]),
        vram_gib=int(value["vramGiB"]),
        gpu_model=bytes(value["gpuModel"]).rstrip(b"\0").decode(errors="replace"),
        endpoint=str(value["endpoint"]),
        min_exec_window=int(value["minExecWindow"]),
        max_units=int(value["maxUnits"]),
    )


def _params(value: Mapping[str, Any]) -> MarketParams:
    return MarketParams(**{_snake(k): int(v) for k, v in value.items()})


# Struct and enum arguments by their Solidity internal type.
_STRUCTS: dict[str, Any] = {
    "struct IJobMarket.JobRequest": JobRequest.from_event,
    "struct IJobMarket.Params": _params,
    "struct IProviderRegistry.Terms": _terms,
    "enum IJobMarket.JobState": JobState,
}


def _convert(abi_input: Mapping[str, Any], value: Any) -> Any:
    convert = _STRUCTS.get(str(abi_input.get("internalType", "")))
    if convert is not None:
        return convert(value)
    kind = abi_input["type"]
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith("bytes"):
        return bytes(value)
    return value


@dataclass(frozen=True)
class _Entry:
    cls: type[ChainEvent]
    processor: ContractEvent
    inputs: tuple[Mapping[str, Any], ...]


@cache
def _table() -> dict[tuple[str, str], _Entry]:
    """(source contract, topic0 hex) -> how to decode it."""
    w3 = Web3()  # decoding only: no provider is ever asked anything
    table: dict[tuple[str, str], _Entry] = {}
    for source, classes in EVENTS.items():
        abi = abis.load(source).abi
        contract = w3.eth.contract(abi=abi)
        by_name = {e["name"]: e for e in abi if e["type"] == "event"}
        for cls in classes:
            event_abi = by_name[cls.__name__]
            wanted = {f.name for f in fields(cls)} - {f.name for f in fields(ChainEvent)}
            given = {_snake(i["name"]) for i in event_abi["inputs"]}
            if wanted != given:  # an ABI change must not silently drop or misname an argument
                raise RuntimeError(f"{cls.__name__} fields {wanted} != ABI inputs {given}")
            topic = _hex(event_abi_to_log_topic(cast(ABIEvent, event_abi)))
            table[(source, topic)] = _Entry(
                cls, contract.events[cls.__name__](), tuple(event_abi["inputs"])
            )
    return table


def topics(source: str) -> list[HexStr]:
    """topic0 of every event decoded from `source` (one of SOURCES)."""
    return [HexStr(topic) for (src, topic) in _table() if src == source]


class Decoder:
    """Decodes logs emitted by one deployment's JobMarket and ProviderRegistry."""

    def __init__(self, deployment: Deployment) -> None:
        self.sources: dict[str, str] = {
            to_checksum_address(deployment.market): "JobMarket",
            to_checksum_address(deployment.registry): "ProviderRegistry",
        }

    @property
    def addresses(self) -> list[ChecksumAddress]:
        return [ChecksumAddress(to_checksum_address(a)) for a in self.sources]

    def decode(self, log: RawLog | Mapping[str, Any]) -> ChainEvent | None:
        """The typed event of `log`, or None for another emitter or an event not followed."""
        raw = log if isinstance(log, RawLog) else RawLog.from_rpc(log)
        source = self.sources.get(raw.address)
        if source is None or not raw.topics:
            return None
        entry = _table().get((source, raw.topics[0]))
        if entry is None:
            return None
        args = entry.processor.process_log(raw.as_receipt())["args"]
        values = {_snake(i["name"]): _convert(i, args[i["name"]]) for i in entry.inputs}
        return entry.cls(
            block_number=raw.block_number,
            block_hash=raw.block_hash,
            tx_hash=raw.tx_hash,
            log_index=raw.log_index,
            raw=raw,
            **values,
        )

    def decode_all(self, logs: Iterable[RawLog | Mapping[str, Any]]) -> list[ChainEvent]:
        """The followed events among `logs`, in chain order (block, log index)."""
        decoded = [e for e in (self.decode(log) for log in logs) if e is not None]
        decoded.sort(key=lambda e: (e.block_number, e.log_index))
        return decoded
