"""The liveness book of a relayer with a store: heartbeats kept in the index database.

Relayers sharing one database (a leader and its standby on PostgreSQL) read and write the
same book, so a standby that takes the lead matches the providers the old leader heard from
at once, without waiting for their next heartbeat. Each provider has one row, updated in place
(`Store.save_heartbeat`), so the database does not grow with heartbeats; the row moves only
forward in time, which keeps the replay rule of `MemoryLivenessBook`.

While the database is unavailable the book keeps working from memory: heartbeats are held
there (and accepted), reads merge them with what the database held, and the outage is logged
once. Heartbeats are written again as they arrive, so the database catches up within one
interval of its return.
"""

from __future__ import annotations

import logging

from eth_utils.address import to_checksum_address

from marketplace.index.outages import database_unavailable, reason, safe_url
from marketplace.index.store import Store
from marketplace.protocol.heartbeat import HEARTBEAT_MISSED, Heartbeat, MemoryLivenessBook
from marketplace.protocol.outage import Outage

__all__ = ["StoreLivenessBook"]

log = logging.getLogger(__name__)


class StoreLivenessBook:
    """A `LivenessBook` in `store`'s database, with a memory book (at most `max_providers`
    entries) standing in while the database is unavailable (see the module)."""

    def __init__(
        self, store: Store, *, max_providers: int = 100_000, outage: Outage | None = None
    ) -> None:
        self.store = store
        self.outage = outage or Outage(f"relayer database {safe_url(store.url)} (heartbeats)", log)
        self._memory = MemoryLivenessBook(max_providers)

    def record(self, address: str, hb: Heartbeat) -> bool:
        key = to_checksum_address(address)
        try:
            saved = self.store.save_heartbeat(key, hb.timestamp, hb.canonical_json().decode())
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            self.outage.failed(reason(exc))
            return self._memory.record(key, hb)
        self.outage.ok()
        # The memory copy serves reads during an outage; it must not refuse a newer one then.
        self._memory.record(key, hb)
        return saved

    def last(self, address: str) -> Heartbeat | None:
        return self._read(address).get(to_checksum_address(address))

    def is_live(
        self, address: str, now: int, interval: int, missed: int = HEARTBEAT_MISSED
    ) -> bool:
        hb = self.last(address)
        return hb is not None and now - hb.timestamp <= interval * missed

    def snapshot(self) -> dict[str, Heartbeat]:
        return self._read(None)

    def __len__(self) -> int:
        return len(self.snapshot())

    def _read(self, address: str | None) -> dict[str, Heartbeat]:
        if address is None:
            held = self._memory.snapshot()
        else:
            mine = self._memory.last(address)
            held = {} if mine is None else {to_checksum_address(address): mine}
        try:
            saved = self.store.saved_heartbeats(address)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            self.outage.failed(reason(exc))
            return held
        self.outage.ok()
        for key, message in saved.items():
            hb = Heartbeat.model_validate_json(message)
            mine = held.get(key)
            if mine is None or hb.timestamp > mine.timestamp:
                held[key] = hb
        return held
