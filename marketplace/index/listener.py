"""The chain listener: follows the JobMarket and ProviderRegistry events into the store.

Each poll:

1. reads the head; blocks up to `head - confirmations` are final enough to apply;
2. checks the checkpoint block's stored hash against the chain; on a mismatch walks the stored
   recent blocks back to the newest one the chain still has (the common ancestor), rolls the
   store back to it and continues from there (a reorg deeper than the stored window replays
   from the deployment block);
3. reads `eth_getLogs` over explicit block ranges of at most `batch_blocks` blocks for the two
   contract addresses (no node-side filters), fetches the headers of the range's recent blocks
   and checks that they chain by parent hash from the checkpoint and that every log's block hash
   is theirs (else the chain moved during the poll: stop, the next poll's check handles it);
4. applies the range's events in (block, log index) order and moves the checkpoint to the
   range's last block in the same database transaction.

Every RPC failure (refused, timed out, an error answer) raises `RPCUnavailable` before anything
of the failing range is written: retrying later neither loses nor repeats an event. Events are
also keyed by (chain id, tx hash, log index) in the store, so even overlapping ranges apply once.

The web3 provider's own retry policy (web3's HTTPProvider retries some methods with backoff by
default) runs before an error reaches the listener.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception
from web3.types import BlockData, FilterParams

from marketplace.index.store import CheckpointView, Store
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import ChainError, ConfigError
from marketplace.protocol.events import Decoder, RawLog
from marketplace.protocol.outage import Outage

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default widest `eth_getLogs` range.
BATCH_BLOCKS = 1_000
#: Default number of recent block hashes kept to find a reorg's common ancestor.
REORG_WINDOW = 128


class RPCUnavailable(ChainError):
    """The RPC endpoint failed or timed out; nothing of the failed step was applied: retry."""


class Listener:
    """Applies `deployment`'s events from `w3` to `store`."""

    def __init__(
        self,
        w3: Web3,
        deployment: Deployment,
        store: Store,
        *,
        confirmations: int,
        batch_blocks: int = BATCH_BLOCKS,
        reorg_window: int = REORG_WINDOW,
    ) -> None:
        if confirmations < 0 or batch_blocks < 1 or reorg_window < 1:
            raise ConfigError(
                "confirmations must be >= 0, batch_blocks and reorg_window >= 1; "
                f"got {confirmations}, {batch_blocks}, {reorg_window}"
            )
        self.w3 = w3
        self.deployment = deployment
        self.store = store
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.reorg_window = reorg_window
        self.decoder = Decoder(deployment)
        self.chain_id = deployment.chain_id
        self._chain_checked = False
        #: Reorgs this listener rolled its store back for: readers caching what the chain
        #: said (the keeper's views, the agent's duties) compare it to drop their caches.
        self.rollbacks = 0
        store.bind(deployment)

    # ------------------------------------------------------------------ polling

    def poll_once(self) -> int:
        """Applies what became final since the last poll; returns the number of new events."""
        self._check_chain()
        head = self._rpc("eth_blockNumber", lambda: int(self.w3.eth.block_number))
        target = head - self.confirmations
        checkpoint = self._resolve_reorg(head)
        applied = 0
        start = checkpoint.block_number + 1
        parent = checkpoint.block_hash
        while start <= target:
            end = min(start + self.batch_blocks - 1, target)
            result = self._process(start, end, head, parent)
            if result is None:  # the chain changed under this poll; the next one rolls back
                break
            count, parent = result
            applied += count
            start = end + 1
        return applied

    def run(
        self, stop: threading.Event, poll_interval: float = 2.0, max_backoff: float = 60.0
    ) -> None:
        """Polls until `stop` is set, backing off (doubling up to `max_backoff`) while the RPC
        is unavailable; an outage is logged once, its end once."""
        outage = Outage("the RPC", log, first_delay=poll_interval, max_delay=max_backoff)
        while not stop.is_set():
            try:
                applied = self.poll_once()
            except RPCUnavailable as exc:
                stop.wait(outage.failed(exc))
                continue
            outage.ok()
            if applied:
                log.info("applied %d events", applied)
            stop.wait(poll_interval)

    # ------------------------------------------------------------------ steps

    def _check_chain(self) -> None:
        if self._chain_checked:
            return
        chain_id = self._rpc("eth_chainId", lambda: int(self.w3.eth.chain_id))
        if chain_id != self.chain_id:
            raise ConfigError(
                f"the RPC serves chain {chain_id}, the deployment is on chain {self.chain_id}; "
                "point the relayer at the deployment's chain"
            )
        self._chain_checked = True

    def _resolve_reorg(self, head: int) -> CheckpointView:
        checkpoint = self.store.checkpoint(self.chain_id)
        if checkpoint is None:  # bound in __init__; only a dropped database gets here
            checkpoint = self.store.bind(self.deployment)
        if checkpoint.block_hash is None:
            return checkpoint
        if self._hash_at(checkpoint.block_number, head) == checkpoint.block_hash:
            return checkpoint
        ancestor, ancestor_hash = self.deployment.block - 1, None
        for number, stored in self.store.recent_blocks(self.chain_id):
            if number < checkpoint.block_number and self._hash_at(number, head) == stored:
                ancestor, ancestor_hash = number, stored
                break
        else:
            log.error(
                "reorg below the %d stored blocks: replaying from the deployment block %d",
                self.reorg_window,
                self.deployment.block,
            )
        log.warning(
            "reorg: block %d is no longer %s; common ancestor %d",
            checkpoint.block_number,
            checkpoint.block_hash,
            ancestor,
        )
        self.store.rollback(self.chain_id, ancestor, ancestor_hash, self.decoder)
        self.rollbacks += 1
        return CheckpointView(self.chain_id, ancestor, ancestor_hash)

    def _process(
        self, start: int, end: int, head: int, parent: str | None
    ) -> tuple[int, str] | None:
        """Applies blocks [start, end]; returns (new events, hash of `end`), or None when the
        chain changed while reading them."""
        first_recent = max(start, head - self.reorg_window + 1)
        headers = {n: self._header(n) for n in range(min(first_recent, end), end + 1)}
        previous = parent if first_recent == start else None
        for number in sorted(headers):
            header = headers[number]
            if header is None:
                return None
            if previous is not None and _hex(header["parentHash"]) != previous:
                log.info("block %d does not extend the stored chain; re-checking", number)
                return None
            previous = _hex(header["hash"])
        hashes = {n: _hex(h["hash"]) for n, h in headers.items() if h is not None}
        params: FilterParams = {
            "fromBlock": start,
            "toBlock": end,
            "address": self.decoder.addresses,
        }
        logs = self._rpc("eth_getLogs", lambda: self.w3.eth.get_logs(params))
        raws = [RawLog.from_rpc(entry) for entry in logs if not entry.get("removed", False)]
        for raw in raws:
            known = hashes.get(raw.block_number)
            if known is not None and known != raw.block_hash:
                log.info("logs of block %d are from another fork; re-checking", raw.block_number)
                return None
        events = self.decoder.decode_all(raws)
        applied = self.store.apply(
            self.chain_id,
            events,
            block_number=end,
            block_hash=hashes[end],
            blocks=hashes,
            keep_blocks_from=head - self.reorg_window + 1,
        )
        return applied, hashes[end]

    # ------------------------------------------------------------------ RPC

    def _header(self, number: int) -> BlockData | None:
        try:
            return self._rpc(
                f"eth_getBlockByNumber({number})", lambda: self.w3.eth.get_block(number)
            )
        except _Missing:
            return None

    def _hash_at(self, number: int, head: int) -> str | None:
        if number > head:
            return None
        header = self._header(number)
        return None if header is None else _hex(header["hash"])

    def _rpc(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except BlockNotFound as exc:
            raise _Missing(what) from exc
        except (OSError, Web3Exception) as exc:  # requests' errors are OSErrors
            raise RPCUnavailable(
                f"{what} failed at the RPC ({type(exc).__name__}: {exc}); "
                "nothing was applied from this range: retry when the node answers"
            ) from exc


class _Missing(Exception):
    """A block the node does not have (the chain got shorter)."""


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text
