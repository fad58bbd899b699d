"""The guard of the read endpoints over the relayer's index: while its database is unavailable
(locked, unreadable, its server restarting) they answer 503 with Retry-After, and the outage is
logged once, and its end once."""

from __future__ import annotations

from collections.abc import AsyncIterator

from marketplace.api.dependencies import Reads
from marketplace.api.errors import RETRY_AFTER, DatabaseUnavailable
from marketplace.index.outages import database_unavailable, reason

__all__ = ["database_guard"]


async def database_guard(reads: Reads) -> AsyncIterator[None]:
    """Router dependency of the chain reads: a database error that is an outage becomes
    DatabaseUnavailable; any other error passes unchanged."""
    try:
        yield
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        reads.outage.failed(reason(exc))
        raise DatabaseUnavailable(
            "the relayer's database is unavailable (it is retried by itself); "
            f"retry in {RETRY_AFTER} s"
        ) from exc
    reads.outage.ok()
