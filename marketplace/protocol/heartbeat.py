"""Signed provider heartbeats, and the liveness book the matcher reads.

A provider proves it is up by signing, every `interval` seconds, a small message with its
current load and capacity; the relayer checks it and records it, and providers silent for
`missed` intervals are not matched (DESIGN section 4). `HEARTBEAT_INTERVAL`,
`HEARTBEAT_MISSED` and `HEARTBEAT_MAX_SKEW` are the defaults of every role's settings.

The signed bytes are the canonical JSON of `Heartbeat` (sorted keys, no whitespace, UTF-8;
addresses checksummed, profiles sorted), signed as an EIP-191 personal message
(`eth_account.messages.encode_defunct`), the same scheme a wallet's `personal_sign` uses::

    {"capacity":4,"chain_id":31337,"endpoint":null,"load":1,
     "market":"0x5FbDB...","profiles":[0,1],"provider":"0xf39F...","timestamp":1700000000,
     "type":"depin-heartbeat/v1"}

`type` fixes the message kind and version, so a heartbeat signature is never valid as any other
depin message. `chain_id` and `market` bind it to one deployment, `timestamp` to a window of
`max_skew` seconds around the relayer's clock; inside the window a replay is harmless because
the book keeps only heartbeats newer than the last one it holds for that provider.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated, Final, Literal, Protocol

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from marketplace.protocol.errors import DepinError, validation_problems

__all__ = [
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_MAX_SKEW",
    "HEARTBEAT_MISSED",
    "HEARTBEAT_TYPE",
    "Heartbeat",
    "HeartbeatError",
    "LivenessBook",
    "MemoryLivenessBook",
    "SignedHeartbeat",
    "sign_heartbeat",
    "verify_heartbeat",
]

HEARTBEAT_TYPE: Final = "depin-heartbeat/v1"
#: Seconds between two heartbeats of a provider, unless a role's settings say otherwise.
HEARTBEAT_INTERVAL: Final = 15
#: Intervals a provider may stay silent and still be live: a heartbeat or two lost or late
#: must not take it out of matching.
HEARTBEAT_MISSED: Final = 3
#: Seconds a heartbeat's timestamp may differ from the relayer's clock either way: room for
#: clocks a little apart and for the trip, short enough that a captured heartbeat soon expires.
HEARTBEAT_MAX_SKEW: Final = 60
#: Profile ids are uint8 on-chain; the registry defines at most 64 of them.
MAX_PROFILE_ID: Final = 255
MAX_ENDPOINT_CHARS: Final = 256
_UINT32: Final = 2**32 - 1


class HeartbeatError(DepinError, ValueError):
    """A heartbeat is malformed, badly signed, for another deployment, or outside the window.

    `reason` is a short machine-readable tag: malformed, signature, signer, chain, market,
    stale, future, replay.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _address(value: object, field: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{field} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    return to_checksum_address(value)


class Heartbeat(BaseModel):
    """The signed fields of a heartbeat. Addresses are stored checksummed, profiles sorted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Fixed message kind and version.
    type: Literal["depin-heartbeat/v1"] = HEARTBEAT_TYPE
    #: The provider's registered address; must be the signer.
    provider: StrictStr
    #: Chain the provider is registered on.
    chain_id: Annotated[StrictInt, Field(ge=1, le=2**64 - 1)]
    #: The JobMarket the provider serves.
    market: StrictStr
    #: When the heartbeat was signed, unix seconds.
    timestamp: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    #: Jobs the provider is running now.
    load: Annotated[StrictInt, Field(ge=0, le=_UINT32)]
    #: Jobs the provider can run at once.
    capacity: Annotated[StrictInt, Field(ge=0, le=_UINT32)]
    #: Determinism profile ids the provider serves now (a subset of its registered ones).
    profiles: tuple[Annotated[StrictInt, Field(ge=0, le=MAX_PROFILE_ID)], ...]
    #: Where the provider can be reached, if it serves anything (http or https URL).
    endpoint: StrictStr | None = None

    @field_validator("provider", "market")
    @classmethod
    def _check_address(cls, value: str, info: ValidationInfo) -> str:
        return _address(value, info.field_name or "address")

    @field_validator("profiles")
    @classmethod
    def _check_profiles(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError("profiles must not repeat an id")
        return tuple(sorted(value))

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (
            len(value) > MAX_ENDPOINT_CHARS
            or not value.startswith(("http://", "https://"))
            or not all("\x21" <= c <= "\x7e" for c in value)
        ):
            raise ValueError(
                f"endpoint must be an http:// or https:// URL of at most {MAX_ENDPOINT_CHARS} "
                "printable ASCII characters without spaces, or null"
            )
        return value

    def canonical_json(self) -> bytes:
        """The bytes that are signed: sorted keys, no whitespace, UTF-8."""
        return json.dumps(
            self.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")


class SignedHeartbeat(BaseModel):
    """A heartbeat and its EIP-191 signature (65 bytes, 0x-prefixed hex). The wire format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat: Heartbeat
    signature: StrictStr

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedHeartbeat:
        """Parses the wire JSON, raising HeartbeatError (reason `malformed`) naming each problem."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = validation_problems(exc)
            raise HeartbeatError(
                "malformed",
                f"malformed heartbeat: {problems}; send "
                '{"heartbeat": {...}, "signature": "0x..."} as sign_heartbeat builds it',
            ) from None


def sign_heartbeat(
    account: LocalAccount,
    *,
    chain_id: int,
    market: str,
    timestamp: int,
    load: int,
    capacity: int,
    profiles: tuple[int, ...] | list[int],
    endpoint: str | None = None,
) -> SignedHeartbeat:
    """A heartbeat from `account` (the provider's key), signed with EIP-191."""
    heartbeat = Heartbeat(
        provider=account.address,
        chain_id=chain_id,
        market=market,
        timestamp=timestamp,
        load=load,
        capacity=capacity,
        profiles=tuple(profiles),
        endpoint=endpoint,
    )
    signed = account.sign_message(encode_defunct(primitive=heartbeat.canonical_json()))
    return SignedHeartbeat(heartbeat=heartbeat, signature="0x" + signed.signature.hex())


def verify_heartbeat(
    hb: SignedHeartbeat,
    *,
    chain_id: int,
    market: str,
    now: int,
    max_skew: int = HEARTBEAT_MAX_SKEW,
) -> str:
    """The provider's checksummed address if `hb` is valid at time `now`, else HeartbeatError.

    Checks, cheapest first: the deployment (chain id, market), the timestamp within `max_skew`
    seconds of `now` either way, then that the signature recovers to `hb.heartbeat.provider`.
    """
    msg = hb.heartbeat
    if msg.chain_id != chain_id:
        raise HeartbeatError(
            "chain",
            f"the heartbeat is for chain {msg.chain_id}; this relayer serves chain {chain_id}. "
            "Point the provider at this chain's deployment or at the right relayer",
        )
    if msg.market != to_checksum_address(market):
        raise HeartbeatError(
            "market",
            f"the heartbeat is for market {msg.market}; this relayer serves market "
            f"{to_checksum_address(market)}. Use this deployment's JobMarket address",
        )
    age = now - msg.timestamp
    if age > max_skew:
        raise HeartbeatError(
            "stale",
            f"the heartbeat is {age} s old, more than the {max_skew} s allowed; sign it just "
            "before sending and check the provider's clock (NTP)",
        )
    if -age > max_skew:
        raise HeartbeatError(
            "future",
            f"the heartbeat is dated {-age} s in the future, more than the {max_skew} s allowed; "
            "fix the provider's clock (NTP)",
        )
    try:
        signer = Account.recover_message(
            encode_defunct(primitive=msg.canonical_json()), signature=hb.signature
        )
    except Exception as exc:  # eth_keys raises several types for unusable signatures
        raise HeartbeatError(
            "signature",
            f"the heartbeat signature is unusable ({type(exc).__name__}: {exc}); send the 65-byte "
            "EIP-191 signature of Heartbeat.canonical_json() as 0x-prefixed hex",
        ) from None
    if signer != msg.provider:
        raise HeartbeatError(
            "signer",
            f"the heartbeat is signed by {signer}, not by provider {msg.provider}; sign it with "
            "the provider's own key, over exactly Heartbeat.canonical_json()",
        )
    return msg.provider


class LivenessBook(Protocol):
    """The last heartbeat of each provider. Written by the API, read by the matcher."""

    def record(self, address: str, hb: Heartbeat) -> bool:
        """Keeps `hb` as `address`'s latest if it is newer than the one held; returns whether."""
        ...

    def last(self, address: str) -> Heartbeat | None:
        """`address`'s latest heartbeat, or None."""
        ...

    def is_live(
        self, address: str, now: int, interval: int, missed: int = HEARTBEAT_MISSED
    ) -> bool:
        """Whether `address` heartbeated within the last `missed` intervals before `now`."""
        ...

    def snapshot(self) -> Mapping[str, Heartbeat]:
        """Each provider's latest heartbeat (checksummed address -> heartbeat), a copy."""
        ...


class MemoryLivenessBook:
    """A LivenessBook in memory, thread-safe, holding at most `max_providers` entries.

    When full, a new provider evicts the one whose heartbeat was recorded longest ago: anyone
    can sign valid heartbeats with fresh keys, so the book must be bounded (the API can also
    refuse unregistered providers, see `create_app(provider_source=...)`). After a restart it
    is empty; providers reappear within one interval.
    """

    def __init__(self, max_providers: int = 100_000) -> None:
        if max_providers < 1:
            raise ValueError(f"max_providers must be at least 1, got {max_providers}")
        self.max_providers = max_providers
        self._lock = threading.Lock()
        self._last: OrderedDict[str, Heartbeat] = OrderedDict()

    def record(self, address: str, hb: Heartbeat) -> bool:
        key = to_checksum_address(address)
        with self._lock:
            held = self._last.get(key)
            if held is not None and hb.timestamp <= held.timestamp:
                return False
            self._last[key] = hb
            self._last.move_to_end(key)
            while len(self._last) > self.max_providers:
                self._last.popitem(last=False)
        return True

    def last(self, address: str) -> Heartbeat | None:
        with self._lock:
            return self._last.get(to_checksum_address(address))

    def is_live(
        self, address: str, now: int, interval: int, missed: int = HEARTBEAT_MISSED
    ) -> bool:
        hb = self.last(address)
        return hb is not None and now - hb.timestamp <= interval * missed

    def snapshot(self) -> dict[str, Heartbeat]:
        with self._lock:
            return dict(self._last)

    def __len__(self) -> int:
        with self._lock:
            return len(self._last)
