"""Whom the relayer's API takes heartbeats from: the providers its store shows registered."""

from __future__ import annotations

import logging

from eth_utils.address import to_checksum_address

from marketplace.api.errors import ProviderSourceUnavailable
from marketplace.index.outages import database_unavailable, reason, safe_url
from marketplace.index.store import Store
from marketplace.protocol.outage import Outage

__all__ = ["StoreProviders"]

log = logging.getLogger(__name__)


class StoreProviders:
    """The API's `ProviderSource` over the relayer's store: registered per the indexed events.

    Registrations seen are remembered, so while the database is unavailable heartbeats of
    providers already known keep being accepted (their liveness does not lapse because of the
    relayer's own outage); an address never seen gets `ProviderSourceUnavailable` (503)."""

    def __init__(self, store: Store, outage: Outage | None = None) -> None:
        self.store = store
        self.outage = outage or Outage(f"relayer database {safe_url(store.url)}", log)
        self._known: set[str] = set()

    def is_registered(self, address: str) -> bool:
        checksummed = to_checksum_address(address)
        try:
            row = self.store.provider(checksummed)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            self.outage.failed(reason(exc))
            if checksummed in self._known:
                return True
            raise ProviderSourceUnavailable(
                "the relayer's database is unavailable, so it cannot check that "
                f"{checksummed} is registered; retry in a few seconds"
            ) from exc
        self.outage.ok()
        registered = row is not None and bool(row.registered)
        if registered:
            self._known.add(checksummed)
        else:
            self._known.discard(checksummed)
        return registered
