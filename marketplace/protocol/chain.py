"""Signing and sending transactions with a local key: nonce tracking, gas estimation, reverts
decoded into ContractRevert before anything is broadcast, EIP-1559 fees from the chain's base
fee, and the two ways a sent transaction misbehaves on a real chain: it sits pending because the
base fee rose past its cap (replaced at the same nonce with higher fees), or the node drops it
from its pool (sent again while its nonce is still free)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from marketplace.protocol.errors import ChainError, TransactionFailed, decode_revert

#: Seconds a sent transaction may take to be mined before `transact` gives up on it.
RECEIPT_TIMEOUT = 120.0
#: Seconds between two checks that the node still knows a sent, unmined transaction.
_DROP_CHECK = 2.0
#: Times a transaction the node dropped is sent again before `transact` gives up on it.
_RESENDS: Final = 3
#: Least raise of both fee caps for a replacement: nodes refuse one below 10 %.
_BUMP: Final = 1.125


@dataclass(frozen=True)
class FeePolicy:
    """How a signer prices its transactions (EIP-1559).

    The fee cap is twice the latest base fee plus the tip, so a transaction survives the base
    fee doubling (six full blocks in a row) before it is stuck; a transaction still pending
    after `replace_after` seconds is signed again at the same nonce with both caps raised by at
    least 12.5 % and at least to what the chain asks now, up to `max_fee_wei`."""

    #: The tip, in wei; None asks the node (`eth_maxPriorityFeePerGas`).
    priority_fee_wei: int | None = None
    #: Seconds a sent transaction may stay pending before it is replaced with higher fees.
    replace_after: float = 30.0
    #: The most this signer pays per gas, tip included; None: no ceiling.
    max_fee_wei: int | None = None

    def __post_init__(self) -> None:
        if self.replace_after <= 0:
            raise ValueError("replace_after must be positive")
        if self.priority_fee_wei is not None and self.priority_fee_wei < 0:
            raise ValueError("priority_fee_wei must not be negative")

    def fees(self, w3: Web3) -> tuple[int, int]:
        """(max fee, tip) per gas for a transaction sent now."""
        base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        tip = self.priority_fee_wei if self.priority_fee_wei is not None else _node_tip(w3)
        return self._capped(2 * base + tip, tip)

    def bumped(self, w3: Web3, max_fee: int, tip: int) -> tuple[int, int]:
        """The caps of a replacement for a transaction priced (max_fee, tip)."""
        now_fee, now_tip = self.fees(w3)
        new_tip = max(int(tip * _BUMP) + 1, now_tip)
        return self._capped(max(int(max_fee * _BUMP) + 1, now_fee, new_tip), new_tip)

    def _capped(self, max_fee: int, tip: int) -> tuple[int, int]:
        if self.max_fee_wei is not None:
            max_fee = min(max_fee, self.max_fee_wei)
        return max_fee, min(tip, max_fee)


def _node_tip(w3: Web3) -> int:
    try:
        return int(w3.eth.max_priority_fee)
    except Web3RPCError:  # a node without the call: the common 1 gwei
        return 10**9


class TransactionDropped(ChainError):
    """The node no longer knows a sent transaction (it restarted, or a rollback dropped it);
    nothing was applied. Re-read the chain and send again: the nonce is re-read first."""


# Headroom over eth_estimateGas: storage refunds and warm/cold differences between the
# estimate and inclusion must not run a transaction out of gas.
_GAS_HEADROOM = 1.25


def connect(rpc_url: str, expected_chain_id: int | None = None) -> Web3:
    """A Web3 connected to `rpc_url`, checked to serve `expected_chain_id` when given."""
    # web3's HTTPProvider keeps one requests.Session (kept-alive connections) per thread.
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    # web3's validation middleware asks the node for its chain id before every eth_call and
    # eth_estimateGas (a second round trip each), only to check a chainId field these calls
    # never carry; the chain id is checked once below, and signed transactions carry it.
    w3.middleware_onion.remove("validation")
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

    def __init__(self, w3: Web3, account: LocalAccount, fees: FeePolicy | None = None) -> None:
        self.w3 = w3
        self.account = account
        #: How transactions are priced and when a pending one is replaced.
        self.fees = fees if fees is not None else FeePolicy()
        self._lock = threading.Lock()
        self._nonce: int | None = None
        #: The chain's id, read at the first transaction (a node on another chain behind the
        #: same URL refuses a transaction signed for this one).
        self._chain_id: int | None = None

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
            if self.w3.eth.generate_gas_price(params) is None:
                max_fee, tip = self.fees.fees(self.w3)
                if max_fee == 0:
                    # A chain without fees (a devnet with a zero base fee and gas price): web3
                    # reads zero caps as missing ones; a legacy price of 0 says it plainly.
                    params["gasPrice"] = Wei(0)
                else:
                    params["maxFeePerGas"] = Wei(max_fee)
                    params["maxPriorityFeePerGas"] = Wei(tip)
            # else: the caller's Web3 has its own gas price strategy (legacy pricing), which
            # build_transaction applies; such a transaction is never replaced.
            if self._chain_id is None:
                self._chain_id = int(self.w3.eth.chain_id)
            params["chainId"] = self._chain_id
            tx = dict(call.build_transaction(params))
            tx_hash = self._broadcast(tx)
            self._nonce += 1
        receipt = self._wait(tx, tx_hash)
        if receipt["status"] != 1:
            raise TransactionFailed(
                f"transaction {receipt['transactionHash'].hex()} reverted on-chain after a "
                "successful estimate; state changed in between: re-read the job and retry"
            )
        return receipt

    def _broadcast(self, tx: dict[str, Any]) -> Any:
        signed = self.account.sign_transaction(tx)
        try:
            return self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Web3RPCError as exc:
            if _no_gas_money(exc):
                raise self._unfunded() from exc
            raise

    def _wait(self, tx: dict[str, Any], tx_hash: Any) -> TxReceipt:
        """The receipt of `tx` or of a replacement of it (same nonce, higher fees, sent once it
        is pending longer than `fees.replace_after`). A transaction the node dropped is sent
        again while its nonce is free; TransactionDropped once the nonce was taken by another
        or after `_RESENDS` tries (a restart from an older state, a rollback)."""
        hashes = [tx_hash]
        started = time.monotonic()
        checked = priced = started
        resends = 0
        while True:
            for sent in reversed(hashes):
                try:
                    return self.w3.eth.get_transaction_receipt(sent)
                except TransactionNotFound:
                    pass
            now = time.monotonic()
            if now - checked >= _DROP_CHECK:
                checked = now
                try:
                    self.w3.eth.get_transaction(hashes[-1])
                except TransactionNotFound:
                    if resends >= _RESENDS or not self._nonce_free(tx["nonce"]):
                        self.reset_nonce()
                        raise TransactionDropped(
                            f"transaction {hashes[-1].hex()} was dropped by the node (restart or "
                            "rollback) before it was mined; re-read the chain and send it again"
                        ) from None
                    resends += 1
                    hashes.append(self._resend(tx))
                    continue
            if now - priced >= self.fees.replace_after:
                priced = now
                replacement = self._replace(tx)
                if replacement is not None:
                    hashes.append(replacement)
                    continue
            if now - started > RECEIPT_TIMEOUT:
                raise ChainError(
                    f"transaction {hashes[-1].hex()} not mined after {RECEIPT_TIMEOUT:.0f} s; "
                    "check the node (is it mining?) and the fee settings, then send again"
                )
            time.sleep(0.1)

    def _nonce_free(self, nonce: int) -> bool:
        return int(self.w3.eth.get_transaction_count(self.account.address, "latest")) <= nonce

    def _resend(self, tx: dict[str, Any]) -> Any:
        """Sends a dropped `tx` again, priced anew when the chain's fees outgrew it (nodes evict
        transactions whose cap fell below the base fee)."""
        max_fee, tip = self.fees.fees(self.w3)
        if "maxFeePerGas" in tx and max_fee > int(tx["maxFeePerGas"]):
            tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = max_fee, tip
        try:
            return self._broadcast(tx)
        except Web3RPCError as exc:
            raise TransactionDropped(
                f"the node dropped transaction nonce {tx['nonce']} and refused it again ({exc}); "
                "re-read the chain and send it again"
            ) from exc

    def _replace(self, tx: dict[str, Any]) -> Any | None:
        """Signs `tx` again with higher fee caps and sends it; None when the node keeps the
        old one (an older one was mined meanwhile, or the raise was not enough: next time)."""
        if "maxFeePerGas" not in tx:
            return None  # a chain without fees: nothing to outbid
        max_fee, tip = self.fees.bumped(
            self.w3, int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])
        )
        if max_fee <= int(tx["maxFeePerGas"]):
            return None  # at the ceiling: wait for the base fee to fall
        tx["maxFeePerGas"], tx["maxPriorityFeePerGas"] = max_fee, tip
        try:
            return self._broadcast(tx)
        except Web3RPCError:
            return None

    def _unfunded(self) -> TransactionFailed:
        return TransactionFailed(
            f"{self.address} has not enough ETH to pay for gas; send it ETH (on a devnet: "
            "`depin wallet faucet`) and run the command again"
        )

    def reset_nonce(self) -> None:
        """Forget the tracked nonce and chain id (after a node restart or an external send
        from this key)."""
        with self._lock:
            self._nonce = None
            self._chain_id = None


def _revert_data(exc: ContractLogicError) -> Any:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes wrap it: {"data": "0x..."}
        data = data.get("data")
    return data
