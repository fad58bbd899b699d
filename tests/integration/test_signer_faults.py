"""The signer after a rollback or a dropped transaction, on a real Anvil: no stall, no reused
nonce."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from marketplace.devnet.anvil import Anvil, funded_account
from marketplace.protocol import chain
from marketplace.protocol.chain import Signer, TransactionDropped
from marketplace.protocol.client import Market
from marketplace.protocol.deployment import deploy
from tests.conftest import reverted


@pytest.fixture(scope="module")
def _deployed(anvil: Anvil) -> Iterator[Market]:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    with reverted(w3):
        owner = funded_account(w3)
        yield Market(w3, deploy(w3, owner), owner)


@pytest.fixture()
def market(_deployed: Market) -> Iterator[Market]:
    """What a test does to the chain is undone after it."""
    with reverted(_deployed.w3):
        yield _deployed


def _mint(market: Market, to: LocalAccount) -> None:
    market.mint(to.address, 1)


def test_a_rollback_does_not_leave_the_signer_on_a_lost_nonce(market: Market) -> None:
    w3 = market.w3
    someone = funded_account(w3)
    snapshot = w3.provider.make_request(RPCEndpoint("evm_snapshot"), [])["result"]
    _mint(market, someone)
    _mint(market, someone)
    # Both mints and their nonces are gone.
    w3.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])
    started = time.monotonic()
    receipt = market.mint(someone.address, 5)
    assert receipt["status"] == 1
    assert time.monotonic() - started < 10
    assert market.balance_of(someone.address) == 5


def test_a_dropped_transaction_is_reported_in_seconds(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    w3 = market.w3
    assert market.signer is not None
    signer: Signer = market.signer
    w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    w3.provider.make_request(RPCEndpoint("evm_setIntervalMining"), [0])
    try:
        sent: list[bytes] = []
        original = w3.eth.send_raw_transaction

        def send_then_drop(raw: bytes) -> bytes:
            tx_hash = original(raw)
            sent.append(bytes(tx_hash))
            drop = RPCEndpoint("anvil_dropTransaction")
            w3.provider.make_request(drop, ["0x" + bytes(tx_hash).hex()])
            return tx_hash

        monkeypatch.setattr(w3.eth, "send_raw_transaction", send_then_drop)
        started = time.monotonic()
        with pytest.raises(TransactionDropped, match="dropped by the node"):
            market.mint(signer.address, 1)
        assert time.monotonic() - started < chain.RECEIPT_TIMEOUT / 10
        assert sent
    finally:
        monkeypatch.undo()
        w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
    assert market.mint(signer.address, 1)["status"] == 1
