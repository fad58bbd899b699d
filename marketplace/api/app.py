"""The relayer's HTTP API: artifacts, provider heartbeats, result notices, health and metrics.

Each area is a router in marketplace.api.routes (its module lists its endpoints and their
answers); what they read is this app's state, through marketplace.api.dependencies; what goes
wrong they raise, and the one handler of marketplace.api.errors answers it with JSON
``{"detail": "<what went wrong and what to do>"}``. Jobs and on-chain provider endpoints
belong to the relayer's store and index: they come in as `routers` (`chain_router`, included
after the routes above), so this module never serves data it does not own; with them comes the
web dashboard over the same index (marketplace.api.routes.dashboard: `/`, `/ui/...`).

`create_app()` with no arguments reads `ApiSettings` from the environment, so it also works as
``uvicorn --factory marketplace.api.app:create_app``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from marketplace.api.artifacts import open_store
from marketplace.api.chain_routes import ChainRouter
from marketplace.api.dependencies import ApiState, ProviderSource
from marketplace.api.errors import ProviderSourceUnavailable, install_error_handler
from marketplace.api.metrics import ApiMetrics, RequestMetrics
from marketplace.api.results import ResultIndex
from marketplace.api.routes import artifacts, health, heartbeats, metrics, results
from marketplace.api.settings import ApiSettings
from marketplace.protocol.heartbeat import LivenessBook, MemoryLivenessBook

__all__ = ["ProviderSource", "ProviderSourceUnavailable", "create_app"]


def create_app(
    settings: ApiSettings | None = None,
    *,
    provider_source: ProviderSource | None = None,
    liveness: LivenessBook | None = None,
    routers: Sequence[APIRouter] = (),
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API app. `liveness` is the book the matcher reads (a fresh in-memory one if None);
    `routers` are included after the built-in routes (jobs, providers from chain)."""
    settings = settings if settings is not None else ApiSettings()
    store = open_store(settings.artifact_root, settings, max_bytes=settings.max_artifact_bytes)
    book = liveness if liveness is not None else MemoryLivenessBook(settings.max_providers)
    api_metrics = ApiMetrics(store, book, settings, clock)
    chain = [r.reads for r in routers if isinstance(r, ChainRouter)]

    # /docs (Swagger UI) and /redoc from assets shipped in the fastapi-offline wheel: a relayer
    # on a network without a CDN, or a browser that blocks one, still shows its API.
    app = FastAPIOffline(
        title="depin-compute relayer API",
        summary="Artifacts, provider heartbeats and metrics of a depin-compute relayer.",
        version="1",
        static_url="/docs/static",
    )
    app.state.api = ApiState(
        settings=settings,
        store=store,
        liveness=book,
        metrics=api_metrics,
        results=ResultIndex(settings.artifact_root / "results"),
        clock=clock,
        provider_source=provider_source,
        chain=chain[-1] if chain else None,
    )
    app.add_middleware(RequestMetrics, metrics=api_metrics)
    install_error_handler(app)
    for area in (artifacts, heartbeats, health, metrics, results):
        app.include_router(area.router)
    # The include point for endpoints owned by other relayer parts (jobs, providers from chain).
    for router in routers:
        app.include_router(router)
    if chain:
        api_metrics.watch_market(chain[-1].store)
        # The dashboard reads the same index; imported here so an app without it never loads it.
        from fastapi.staticfiles import StaticFiles

        from marketplace.api.routes import dashboard

        app.include_router(dashboard.router)
        app.mount("/ui/static", StaticFiles(directory=dashboard.STATIC_DIR), name="ui-static")
    return app
