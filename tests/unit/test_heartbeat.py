"""Signed heartbeats: the canonical message, every rejection, and the liveness book."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from marketplace.protocol.errors import DepinError
from marketplace.protocol.heartbeat import (
    HEARTBEAT_TYPE,
    Heartbeat,
    HeartbeatError,
    MemoryLivenessBook,
    SignedHeartbeat,
    sign_heartbeat,
    verify_heartbeat,
)

PROVIDER: LocalAccount = Account.from_key(bytes(31) + b"\x01")
OTHER: LocalAccount = Account.from_key(bytes(31) + b"\x02")
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = 31337
NOW = 1_700_000_000


def signed(account: LocalAccount = PROVIDER, **overrides: Any) -> SignedHeartbeat:
    fields: dict[str, Any] = {
        "chain_id": CHAIN,
        "market": MARKET,
        "timestamp": NOW,
        "load": 1,
        "capacity": 4,
        "profiles": [1, 0],
        "endpoint": "http://10.0.0.7:9000",
    }
    fields.update(overrides)
    return sign_heartbeat(account, **fields)


def verify(hb: SignedHeartbeat, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {"chain_id": CHAIN, "market": MARKET, "now": NOW, "max_skew": 60}
    kwargs.update(overrides)
    return verify_heartbeat(hb, **kwargs)


def rejection(hb: SignedHeartbeat, **overrides: Any) -> HeartbeatError:
    with pytest.raises(HeartbeatError) as caught:
        verify(hb, **overrides)
    return caught.value


def resigned(hb: Heartbeat, account: LocalAccount) -> SignedHeartbeat:
    """`hb` signed by `account`, whoever `hb.provider` names."""
    sig = account.sign_message(encode_defunct(primitive=hb.canonical_json())).signature
    return SignedHeartbeat(heartbeat=hb, signature="0x" + sig.hex())


# ---------------------------------------------------------------- valid round trip


def test_round_trip_over_the_wire_returns_the_provider() -> None:
    hb = signed()
    wire = hb.model_dump_json()
    assert verify(SignedHeartbeat.from_json(wire)) == PROVIDER.address
    assert verify(SignedHeartbeat.from_json(wire.encode())) == PROVIDER.address


def test_canonical_json_is_sorted_compact_and_normalised() -> None:
    hb = signed(market=MARKET.lower(), profiles=[3, 0, 1], endpoint=None).heartbeat
    raw = hb.canonical_json()
    data = json.loads(raw)
    assert list(data) == sorted(data)
    assert raw == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert data["type"] == HEARTBEAT_TYPE
    assert data["market"] == MARKET  # checksummed whatever case was given
    assert data["provider"] == PROVIDER.address
    assert data["profiles"] == [0, 1, 3]
    assert data["endpoint"] is None


def test_market_is_compared_case_insensitively() -> None:
    assert verify(signed(), market=MARKET.lower()) == PROVIDER.address


def test_lowercase_addresses_on_the_wire_verify() -> None:
    wire = json.loads(signed().model_dump_json())
    wire["heartbeat"]["provider"] = wire["heartbeat"]["provider"].lower()
    wire["heartbeat"]["market"] = wire["heartbeat"]["market"].lower()
    assert verify(SignedHeartbeat.from_json(json.dumps(wire))) == PROVIDER.address


@pytest.mark.parametrize("age", [-60, 0, 60])
def test_timestamps_within_the_skew_are_accepted(age: int) -> None:
    assert verify(signed(timestamp=NOW - age)) == PROVIDER.address


# ---------------------------------------------------------------- rejections


def test_error_is_a_depin_error_and_a_value_error() -> None:
    error = rejection(signed(chain_id=1))
    assert isinstance(error, DepinError)
    assert isinstance(error, ValueError)


def test_wrong_chain_is_rejected() -> None:
    error = rejection(signed(chain_id=1))
    assert error.reason == "chain"
    assert "chain 1" in str(error) and f"chain {CHAIN}" in str(error)


def test_wrong_market_is_rejected() -> None:
    error = rejection(signed(market=OTHER.address))
    assert error.reason == "market"
    assert OTHER.address in str(error) and MARKET in str(error)


def test_stale_heartbeat_is_rejected() -> None:
    error = rejection(signed(timestamp=NOW - 61))
    assert error.reason == "stale"
    assert "61 s old" in str(error) and "NTP" in str(error)


def test_future_heartbeat_is_rejected() -> None:
    error = rejection(signed(timestamp=NOW + 61))
    assert error.reason == "future"
    assert "61 s in the future" in str(error)


def test_max_skew_is_honoured() -> None:
    hb = signed(timestamp=NOW - 10)
    assert rejection(hb, max_skew=5).reason == "stale"
    assert verify(hb, max_skew=10) == PROVIDER.address


@pytest.mark.parametrize(
    "signature",
    ["0x", "0x1234", "not hex", "0x" + "00" * 65, "0x" + "ff" * 65],
)
def test_unusable_signature_is_rejected(signature: str) -> None:
    hb = SignedHeartbeat(heartbeat=signed().heartbeat, signature=signature)
    error = rejection(hb)
    assert error.reason in {"signature", "signer"}
    assert "sign" in str(error)


def test_signature_by_another_key_is_rejected() -> None:
    forged = resigned(signed().heartbeat, OTHER)
    error = rejection(forged)
    assert error.reason == "signer"
    assert OTHER.address in str(error) and PROVIDER.address in str(error)


def test_tampered_field_is_rejected() -> None:
    hb = signed()
    tampered = SignedHeartbeat(
        heartbeat=hb.heartbeat.model_copy(update={"load": 0}), signature=hb.signature
    )
    assert rejection(tampered).reason == "signer"


def test_signature_over_non_canonical_bytes_is_rejected() -> None:
    hb = signed().heartbeat
    pretty = json.dumps(hb.model_dump(mode="json"), indent=2).encode()
    sig = PROVIDER.sign_message(encode_defunct(primitive=pretty)).signature
    assert rejection(SignedHeartbeat(heartbeat=hb, signature="0x" + sig.hex())).reason == "signer"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"load": True}, "load"),
        ({"load": "1"}, "load"),
        ({"load": -1}, "load"),
        ({"capacity": 1.5}, "capacity"),
        ({"timestamp": -5}, "timestamp"),
        ({"chain_id": 0}, "chain_id"),
        ({"provider": "0x1234"}, "provider"),
        ({"market": "nowhere"}, "market"),
        ({"profiles": [1, 1]}, "profiles"),
        ({"profiles": [256]}, "profiles"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"endpoint": "http://a b"}, "endpoint"),
        ({"type": "depin-heartbeat/v0"}, "type"),
        ({"extra": 1}, "extra"),
    ],
)
def test_malformed_heartbeat_names_the_field(change: dict[str, Any], field: str) -> None:
    wire = json.loads(signed().model_dump_json())
    wire["heartbeat"].update(change)
    with pytest.raises(HeartbeatError) as caught:
        SignedHeartbeat.from_json(json.dumps(wire))
    assert caught.value.reason == "malformed"
    assert f"heartbeat.{field}" in str(caught.value)


@pytest.mark.parametrize("body", [b"", b"[]", b"{", b'{"heartbeat": {}}'])
def test_malformed_body_is_rejected(body: bytes) -> None:
    with pytest.raises(HeartbeatError) as caught:
        SignedHeartbeat.from_json(body)
    assert caught.value.reason == "malformed"
    assert "sign_heartbeat" in str(caught.value)


# ---------------------------------------------------------------- liveness book


def test_book_keeps_only_newer_heartbeats() -> None:
    book = MemoryLivenessBook()
    first = signed(timestamp=NOW).heartbeat
    assert book.record(PROVIDER.address, first)
    assert not book.record(PROVIDER.address, first)  # replay
    assert not book.record(PROVIDER.address, signed(timestamp=NOW - 1).heartbeat)
    newer = signed(timestamp=NOW + 1, load=3).heartbeat
    assert book.record(PROVIDER.address.lower(), newer)
    assert book.last(PROVIDER.address) == newer
    assert book.snapshot() == {PROVIDER.address: newer}


def test_book_liveness_window_is_missed_intervals() -> None:
    book = MemoryLivenessBook()
    book.record(PROVIDER.address, signed(timestamp=NOW).heartbeat)
    assert book.is_live(PROVIDER.address, NOW + 30, interval=10)
    assert not book.is_live(PROVIDER.address, NOW + 31, interval=10)
    assert book.is_live(PROVIDER.address, NOW + 50, interval=10, missed=5)
    assert not book.is_live(OTHER.address, NOW, interval=10)


def test_book_snapshot_is_a_copy() -> None:
    book = MemoryLivenessBook()
    book.record(PROVIDER.address, signed().heartbeat)
    snapshot = book.snapshot()
    snapshot.clear()
    assert len(book) == 1


def test_book_evicts_the_longest_silent_when_full() -> None:
    book = MemoryLivenessBook(max_providers=2)
    third: LocalAccount = Account.from_key(bytes(31) + b"\x03")
    book.record(PROVIDER.address, signed(PROVIDER, timestamp=NOW).heartbeat)
    book.record(OTHER.address, signed(OTHER, timestamp=NOW).heartbeat)
    book.record(PROVIDER.address, signed(PROVIDER, timestamp=NOW + 1).heartbeat)
    book.record(third.address, signed(third, timestamp=NOW + 1).heartbeat)
    assert set(book.snapshot()) == {PROVIDER.address, third.address}
