"""Read endpoints over the relayer's store: jobs, providers and the listener's position.

    GET /jobs, GET /jobs/{id}                  marketplace.api.routes.jobs
    GET /providers, GET /providers/{address}   marketplace.api.routes.providers
    GET /status                                marketplace.api.routes.status

Everything comes from the store the listener fills, so it is as current as the checkpoint.
While the store's database is unavailable (locked, unreadable, its server restarting) every
endpoint here answers 503 with ``Retry-After``; the outage is logged once, and its end once.
The API serves them only over a store, so they come in as a router that carries what they read:

    app = create_app(settings, liveness=book, routers=[chain_router(store, book)])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter

from marketplace.api.dependencies import ChainReads
from marketplace.protocol.heartbeat import HEARTBEAT_INTERVAL, HEARTBEAT_MISSED, LivenessBook
from marketplace.protocol.outage import Outage

if TYPE_CHECKING:
    from marketplace.index.store import Store

__all__ = ["ChainRouter", "chain_router"]

log = logging.getLogger(__name__)


class ChainRouter(APIRouter):
    """The chain read endpoints and what they read; `create_app` puts `reads` on the app's
    state when it includes this router."""

    def __init__(self, reads: ChainReads) -> None:
        # Here, not at the top: an app without chain reads (`create_app` imports this module)
        # starts without loading the index, its database driver and the matcher.
        from marketplace.api.routes import jobs, providers, status

        super().__init__(tags=["chain"])
        self.reads = reads
        for area in (jobs, providers, status):
            self.include_router(area.router)


def chain_router(
    store: Store,
    liveness: LivenessBook | None = None,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    heartbeat_missed: int = HEARTBEAT_MISSED,
    clock: Callable[[], float] = time.time,
    outage: Outage | None = None,
) -> ChainRouter:
    """The read endpoints over `store`; `liveness` adds each provider's heartbeat state
    (live when its last heartbeat is within `heartbeat_missed` x `heartbeat_interval` s).
    `outage` tracks the database as these endpoints see it (one of its own when None)."""
    from marketplace.index.outages import safe_url

    return ChainRouter(
        ChainReads(
            store=store,
            outage=outage or Outage(f"relayer database {safe_url(store.url)} (API)", log),
            liveness=liveness,
            heartbeat_interval=heartbeat_interval,
            heartbeat_missed=heartbeat_missed,
            clock=clock,
        )
    )
