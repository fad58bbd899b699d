"""Signing and sending transactions with a local key: nonce tracking, gas estimation, reverts
decoded into ContractRevert before anything is broadcast."""

from __future__ import annotations

import threading
import time
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import Nonce, TxParams, TxReceipt

from marketplace.protocol.errors import ChainError, TransactionFailed, decode_revert

#: Seconds a sent transaction may take to be mined before `transact` gives up on it.
RECEIPT_TIMEOUT = 120.0
#: Seconds between two checks that the node still knows a sent, unmined transaction.
_DROP_CHECK = 2.0


class TransactionDropped(ChainError):
    """The node no longer knows a sent transaction (it restarted, or a rollback dropped it);
    nothing was applied. Re-read the chain and send again: the nonce is re-read first."""


# Headroom over eth_estimateGas: storage refunds and warm/cold differences between the
# estimate and inclusion must not run a transaction out of gas.
_GAS_HEADROOM = 1.25


def connect(rpc_url: str, expected_chain_id: int | None = None) -> Web3:
    """A Web3 connected to `rpc_url`, checked to serve `expected_chain_id` when given."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        chain_id = w3.eth.chain_id
    except Exception as exc:  # requests raises several types; all mean unreachable
        raise ChainError(
            f"cannot reach the RPC at {rpc_url}: {exc}; start the node or fix the URL"
        ) from exc
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise ChainError(
            f"{rpc_url} serves chain {chain_id}, the deployment is on chain {expected_chain_id}; "
            "point at the right RPC or use that chain's deployment file"
        )
    return w3


def _no_gas_money(exc: Web3RPCError) -> bool:
    return "insufficient funds" in str(exc).lower()


class Signer:
    """Sends transactions from one local key in nonce order; safe to share between threads.

    The nonce of each transaction is the chain's pending count, read just before signing (one
    call). A nonce remembered here would outlive transactions the chain lost (a node restarted
    from an older state, a rollback) and queue every later transaction behind the gap."""

    def __init__(self, w3: Web3, account: LocalAccount) -> None:
        self.w3 = w3
        self.account = account
        self._lock = threading.Lock()
        self._nonce: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    def transact(
        self,
        call: ContractFunction | ContractConstructor,
        value: int = 0,
        *,
        min_gas: int = 0,
    ) -> TxReceipt:
        """Estimates, signs, sends and waits for `call`; raises ContractRevert on a revert.

        `min_gas` raises the estimate: a batched call that catches its items' reverts succeeds
        even when an item runs out of gas, so the node's estimate (the least gas with which the
        outer call succeeds) can starve the items; the caller passes what the items need."""
        with self._lock:
            params: TxParams = {"from": self.account.address, "value": Web3.to_wei(value, "wei")}
            try:
                gas = call.estimate_gas(params)
            except ContractLogicError as exc:
                raise (decode_revert(_revert_data(exc)) or TransactionFailed(str(exc))) from exc
            except Web3RPCError as exc:
                if _no_gas_money(exc):
                    raise self._unfunded() from exc
                raise
            if min_gas > gas:
                limit = int(self.w3.eth.get_block("latest")["gasLimit"])
                gas = min(min_gas, int(limit / _GAS_HEADROOM))
            self._nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
            params["gas"] = int(gas * _GAS_HEADROOM)
            params["nonce"] = Nonce(self._nonce)
            tx = call.build_transaction(params)
            signed = self.account.sign_transaction(dict(tx))  # type: ignore[arg-type]
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3RPCError as exc:
                if _no_gas_money(exc):
                    raise self._unfunded() from exc
                raise
            self._nonce += 1
        receipt = self._wait(tx_hash)
        if receipt["status"] != 1:
            raise TransactionFailed(
                f"transaction {tx_hash.hex()} reverted on-chain after a successful estimate; "
                "state changed in between: re-read the job and retry"
            )
        return receipt

    def _wait(self, tx_hash: Any) -> TxReceipt:
        """The receipt of `tx_hash`; TransactionDropped as soon as the node forgets it (a
        restart from an older state or a rollback), instead of waiting out the timeout."""
        started = time.monotonic()
        checked = started
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                pass
            now = time.monotonic()
            if now - checked >= _DROP_CHECK:
                checked = now
                try:
                    self.w3.eth.get_transaction(tx_hash)
                except TransactionNotFound:
                    self.reset_nonce()
                    raise TransactionDropped(
                        f"transaction {tx_hash.hex()} was dropped by the node (restart or "
                        "rollback) before it was mined; re-read the chain and send it again"
                    ) from None
            if now - started > RECEIPT_TIMEOUT:
                raise ChainError(
                    f"transaction {tx_hash.hex()} not mined after {RECEIPT_TIMEOUT:.0f} s; check "
                    "the node (is it mining?) and the gas price, then send again"
                )
            time.sleep(0.1)

    def _unfunded(self) -> TransactionFailed:
        return TransactionFailed(
            f"{self.address} has not enough ETH to pay for gas; send it ETH (on a devnet: "
            "`depin wallet faucet`) and run the command again"
        )

    def reset_nonce(self) -> None:
        """Forget the tracked nonce (after a node restart or an external send from this key)."""
        with self._lock:
            self._nonce = None


def _revert_data(exc: ContractLogicError) -> Any:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes wrap it: {"data": "0x..."}
        data = data.get("data")
    return data
