"""The signer after a rollback, a dropped transaction or a base fee that outgrew a pending
transaction, on a real Anvil: no stall, no reused nonce, nothing applied twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint, TxReceipt

from marketplace.devnet.anvil import Anvil, funded_account
from marketplace.protocol import chain
from marketplace.protocol.chain import FeePolicy, Signer, TransactionDropped
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


def _pending(w3: Web3, address: str) -> list[dict[str, object]]:
    """The node's pool entries sent by `address`."""
    pool = w3.provider.make_request(RPCEndpoint("txpool_content"), [])["result"]["pending"]
    for sender, by_nonce in pool.items():
        if sender.lower() == address.lower():
            return list(by_nonce.values())
    return []


def _in_thread(action: Callable[[], TxReceipt]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(action())
        except Exception as exc:  # handed to the test's thread
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _until(what: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture()
def manual_mining(market: Market) -> Iterator[Web3]:
    w3 = market.w3
    w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    w3.provider.make_request(RPCEndpoint("evm_setIntervalMining"), [0])
    try:
        yield w3
    finally:
        w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])


def _mined(thread: threading.Thread, out: list[object]) -> TxReceipt:
    thread.join(30)
    (receipt,) = out
    assert not isinstance(receipt, BaseException), receipt
    assert receipt["status"] == 1  # type: ignore[index]
    return receipt  # type: ignore[return-value]


def test_a_transaction_pending_too_long_is_replaced_at_its_nonce(
    market: Market, manual_mining: Web3, monkeypatch: pytest.MonkeyPatch
) -> None:
    w3 = manual_mining
    assert market.signer is not None
    monkeypatch.setattr(market.signer, "fees", FeePolicy(priority_fee_wei=10**9, replace_after=0.5))
    someone = funded_account(w3)
    thread, out = _in_thread(lambda: market.mint(someone.address, 7))
    _until("the mint in the pool", lambda: bool(_pending(w3, market.address)))
    (first,) = _pending(w3, market.address)
    cap = int(str(first["maxFeePerGas"]), 16)
    # Nothing is mined: after half a second the signer outbids its own transaction.
    _until(
        "a replacement",
        lambda: any(int(str(t["maxFeePerGas"]), 16) > cap for t in _pending(w3, market.address)),
    )
    (replacement,) = _pending(w3, market.address)  # the same nonce: it took the old one's place
    assert replacement["nonce"] == first["nonce"]
    assert int(str(replacement["maxFeePerGas"]), 16) >= cap * 1.1
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    receipt = _mined(thread, out)
    assert "0x" + receipt["transactionHash"].hex().removeprefix("0x") != first["hash"]
    assert market.balance_of(someone.address) == 7  # minted once


def test_a_transaction_evicted_by_a_base_fee_jump_is_sent_again_priced_anew(
    market: Market, manual_mining: Web3
) -> None:
    w3 = manual_mining
    someone = funded_account(w3)
    thread, out = _in_thread(lambda: market.mint(someone.address, 5))
    _until("the mint in the pool", lambda: bool(_pending(w3, market.address)))
    (first,) = _pending(w3, market.address)
    cap = int(str(first["maxFeePerGas"]), 16)
    # The next block's base fee is past the transaction's cap: the node evicts it.
    w3.provider.make_request(RPCEndpoint("anvil_setNextBlockBaseFeePerGas"), [hex(cap * 4)])
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    assert not _pending(w3, market.address)
    _until("the mint sent again", lambda: bool(_pending(w3, market.address)), timeout=30)
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    receipt = _mined(thread, out)
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == int(
        str(first["nonce"]), 16
    )
    assert int(receipt["effectiveGasPrice"]) > cap
    assert market.balance_of(someone.address) == 5
    # The node keeps its next base fee across evm_revert: hand the next test a normal one.
    w3.provider.make_request(RPCEndpoint("anvil_setNextBlockBaseFeePerGas"), [hex(cap // 4)])
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])


def test_a_transaction_the_node_dropped_is_sent_again(market: Market, manual_mining: Web3) -> None:
    w3 = manual_mining
    someone = funded_account(w3)
    thread, out = _in_thread(lambda: market.mint(someone.address, 3))
    _until("the mint in the pool", lambda: bool(_pending(w3, market.address) or out))
    assert not out, out
    (sent,) = _pending(w3, market.address)
    w3.provider.make_request(RPCEndpoint("anvil_dropTransaction"), [sent["hash"]])
    assert not _pending(w3, market.address)
    _until("the mint sent again", lambda: bool(_pending(w3, market.address) or out))
    assert not out, out  # still waiting, not given up
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    _mined(thread, out)
    assert market.balance_of(someone.address) == 3
