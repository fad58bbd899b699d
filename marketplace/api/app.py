"""The relayer's HTTP API: artifacts, provider heartbeats, health and Prometheus metrics.

    PUT  /artifacts/{sha256}   store the body (streamed, size-limited); 201 new, 200 present,
                               400 malformed hash or hash mismatch, 413 too large
    GET  /artifacts/{sha256}   the bytes, verified before sending; 404 unknown, 400 malformed,
                               500 the stored copy failed its hash check (it is quarantined;
                               header X-Depin-Reason: corrupt); later requests get 404
    HEAD /artifacts/{sha256}   as GET without the body (messages in header X-Depin-Error)
    POST /heartbeats           a SignedHeartbeat; 200 accepted (or an exact duplicate),
                               422 malformed, 400 wrong chain / market / stale / future,
                               403 bad signature / signer / unregistered, 409 not newer,
                               413 body above 16 KiB, 503 no chain configured or the
                               registry index unavailable (Retry-After)
    GET  /providers/liveness   each provider's last heartbeat and whether it is live
    POST /results, GET /jobs/{id}/results
                               signed notices of where providers put their encrypted results
                               (marketplace.api.results)
    GET  /healthz              liveness of the API itself and what it is configured for
    GET  /metrics              Prometheus text exposition

Error bodies are JSON ``{"detail": "<what went wrong and what to do>"}``; heartbeat rejections
add ``"reason"`` (see HeartbeatError). Jobs and on-chain provider endpoints belong to the
relayer's store and index: they come in as `routers` (APIRouter instances included after the
routes above), so this module never serves data it does not own.

`create_app()` with no arguments reads `ApiSettings` from the environment, so it also works as
``uvicorn --factory marketplace.api.app:create_app``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketplace.api.artifacts import (
    ArtifactCorrupted,
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    PendingArtifact,
)
from marketplace.api.metrics import CONTENT_TYPE, ApiMetrics
from marketplace.api.results import results_router
from marketplace.api.settings import ApiSettings
from marketplace.protocol.artifact_client import REASON_HEADER, check_sha256
from marketplace.protocol.errors import DepinError
from marketplace.protocol.heartbeat import (
    HeartbeatError,
    LivenessBook,
    MemoryLivenessBook,
    SignedHeartbeat,
    verify_heartbeat,
)

__all__ = ["ProviderSource", "ProviderSourceUnavailable", "create_app"]

#: Upload bytes are handed to the store's worker thread in pieces of about this size.
_FLUSH_BYTES: Final = 1024 * 1024
#: Largest heartbeat body accepted (a heartbeat is about 400 bytes).
_MAX_HEARTBEAT_BYTES: Final = 16 * 1024
_OCTET: Final = "application/octet-stream"
#: Seconds a client is told to wait (Retry-After) when a dependency of the API is unavailable.
RETRY_AFTER: Final = 2

_HEARTBEAT_STATUS: Final[dict[str, int]] = {
    "malformed": 422,
    "chain": 400,
    "market": 400,
    "stale": 400,
    "future": 400,
    "signature": 403,
    "signer": 403,
    "unregistered": 403,
    "replay": 409,
}


class ProviderSourceUnavailable(DepinError, ConnectionError):
    """The provider source cannot answer now (its database is down); the heartbeat gets 503
    with Retry-After, and the provider sends it again."""


class ProviderSource(Protocol):
    """Which addresses are registered providers (the relayer's index of registry events).

    When given to `create_app`, heartbeats from other addresses are refused with 403, which
    also keeps the liveness book to registered providers. `is_registered` raises
    `ProviderSourceUnavailable` when it cannot tell.
    """

    def is_registered(self, address: str) -> bool: ...


#: The methods counted under their own name in depin_http_requests_total.
_HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)


class _RequestMetrics:
    """ASGI middleware counting requests by route template and timing them."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # The template, not the path: one series per endpoint, whatever the hash.
            label = str(getattr(route, "path", None) or "unmatched")
            method = str(scope["method"])
            # A client chooses the method: any but the standard ones is one series, so made-up
            # methods cannot grow the registry without bound.
            method = method if method in _HTTP_METHODS else "other"
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)


def _error(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _artifact_headers(sha256: str, size: int) -> dict[str, str]:
    return {
        "content-length": str(size),
        "etag": f'"{sha256}"',
        # Content-addressed: the bytes behind a name never change.
        "cache-control": "public, max-age=31536000, immutable",
    }


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(_FLUSH_BYTES):
            yield chunk


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
    store = ArtifactStore(settings.artifact_root, max_bytes=settings.max_artifact_bytes)
    book: LivenessBook = (
        liveness if liveness is not None else MemoryLivenessBook(settings.max_providers)
    )
    metrics = ApiMetrics(store, book, settings, clock)

    # /docs (Swagger UI) and /redoc from assets shipped in the fastapi-offline wheel: a relayer
    # on a network without a CDN, or a browser that blocks one, still shows its API.
    app = FastAPIOffline(
        title="depin-compute relayer API",
        summary="Artifacts, provider heartbeats and metrics of a depin-compute relayer.",
        version="1",
        static_url="/docs/static",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.liveness = book
    app.state.metrics = metrics.registry
    app.add_middleware(_RequestMetrics, metrics=metrics)

    # ---------------------------------------------------------------- artifacts

    def malformed(sha256: str) -> str | None:
        try:
            check_sha256(sha256)
        except ArtifactError as exc:
            return str(exc)
        return None

    def corrupt(exc: ArtifactCorrupted) -> JSONResponse:
        metrics.corrupt.inc()
        return _error(500, str(exc), headers={REASON_HEADER: "corrupt"})

    @app.put("/artifacts/{sha256}", status_code=201)
    async def put_artifact(sha256: str, request: Request) -> Response:
        if (bad := malformed(sha256)) is not None:
            return _error(400, bad)
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _error(400, f"Content-Length {declared!r} is not a byte count")
            if int(declared) > store.max_bytes:
                return _error(413, _too_large(int(declared), store.max_bytes))
        pending: PendingArtifact = await run_in_threadpool(store.begin, sha256)
        try:
            received = 0
            buffer = bytearray()
            async for chunk in request.stream():
                received += len(chunk)
                if received > store.max_bytes:
                    return _error(413, _too_large(received, store.max_bytes, streamed=True))
                buffer += chunk
                if len(buffer) >= _FLUSH_BYTES:
                    await run_in_threadpool(pending.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await run_in_threadpool(pending.write, bytes(buffer))
            await run_in_threadpool(pending.commit)
        except ArtifactTooLarge as exc:
            return _error(413, str(exc))
        except ArtifactCorrupted as exc:
            return _error(400, str(exc))
        except ClientDisconnect:
            return _error(400, "the client disconnected before the body was complete")
        finally:
            pending.close()
        metrics.uploaded.inc(pending.size)
        return JSONResponse(
            {"sha256": sha256, "size": pending.size, "created": pending.created},
            status_code=201 if pending.created else 200,
            headers={"location": f"/artifacts/{sha256}"},
        )

    @app.get("/artifacts/{sha256}", response_class=Response)
    async def get_artifact(sha256: str) -> Response:
        if (bad := malformed(sha256)) is not None:
            return _error(400, bad)
        try:
            f = await run_in_threadpool(store.open_verified, sha256)
        except ArtifactNotFound as exc:
            return _error(404, str(exc))
        except ArtifactCorrupted as exc:
            return corrupt(exc)
        size = os.fstat(f.fileno()).st_size
        return StreamingResponse(
            _chunks(f), media_type=_OCTET, headers=_artifact_headers(sha256, size)
        )

    @app.head("/artifacts/{sha256}", response_class=Response)
    async def head_artifact(sha256: str) -> Response:
        # HEAD has no body: the message goes in a header.
        if (bad := malformed(sha256)) is not None:
            return Response(status_code=400, headers={"x-depin-error": _header_text(bad)})
        try:
            f = await run_in_threadpool(store.open_verified, sha256)
        except ArtifactNotFound as exc:
            return Response(status_code=404, headers={"x-depin-error": _header_text(str(exc))})
        except ArtifactCorrupted as exc:
            metrics.corrupt.inc()
            return Response(
                status_code=500,
                headers={"x-depin-error": _header_text(str(exc)), REASON_HEADER: "corrupt"},
            )
        with f:
            size = os.fstat(f.fileno()).st_size
        return Response(status_code=200, media_type=_OCTET, headers=_artifact_headers(sha256, size))

    # ---------------------------------------------------------------- heartbeats

    def reject(exc: HeartbeatError) -> JSONResponse:
        metrics.rejected.labels(exc.reason).inc()
        return _error(_HEARTBEAT_STATUS.get(exc.reason, 400), str(exc), reason=exc.reason)

    window = settings.heartbeat_interval * settings.heartbeat_missed

    @app.post("/heartbeats")
    async def post_heartbeat(request: Request) -> Response:
        if settings.chain_id is None or settings.market_address is None:
            return _error(
                503,
                "this relayer has no chain configured, so it cannot check heartbeats; set "
                "DEPIN_API_CHAIN_ID and DEPIN_API_MARKET_ADDRESS (or DEPIN_API_DEPLOYMENT_FILE)",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_HEARTBEAT_BYTES:
                metrics.rejected.labels("malformed").inc()
                return _error(
                    413,
                    f"a heartbeat is at most {_MAX_HEARTBEAT_BYTES} bytes; send only its fields",
                )
        try:
            signed = SignedHeartbeat.from_json(bytes(body))
            provider = verify_heartbeat(
                signed,
                chain_id=settings.chain_id,
                market=settings.market_address,
                now=int(clock()),
                max_skew=settings.heartbeat_max_skew,
            )
            try:
                registered = provider_source is None or await run_in_threadpool(
                    provider_source.is_registered, provider
                )
            except ProviderSourceUnavailable as exc:
                return _error(503, str(exc), headers={"retry-after": str(RETRY_AFTER)})
            if not registered:
                raise HeartbeatError(
                    "unregistered",
                    f"{provider} is not a registered provider on this market; register it "
                    "(`depin provider register`) and wait for the relayer to index the event",
                )
            hb = signed.heartbeat
            if not book.record(provider, hb):
                held = book.last(provider)
                if held == hb:
                    return JSONResponse({"provider": provider, "status": "duplicate"})
                raise HeartbeatError(
                    "replay",
                    f"the relayer holds a heartbeat of {provider} dated "
                    f"{held.timestamp if held else '?'}, not older than this one "
                    f"({hb.timestamp}); sign each heartbeat with the current time",
                )
        except HeartbeatError as exc:
            return reject(exc)
        metrics.accepted.inc()
        return JSONResponse(
            {
                "provider": provider,
                "status": "accepted",
                "live_until": hb.timestamp + window,
                # The one source of the pace: agents send at this interval (or faster).
                "interval": settings.heartbeat_interval,
            }
        )

    @app.get("/providers/liveness")
    async def providers_liveness() -> dict[str, Any]:
        now = int(clock())
        snapshot = book.snapshot()
        return {
            "now": now,
            "interval": settings.heartbeat_interval,
            "missed": settings.heartbeat_missed,
            "providers": [
                {
                    "provider": address,
                    "live": now - hb.timestamp <= window,
                    "last_seen": hb.timestamp,
                    "heartbeat": hb.model_dump(mode="json"),
                }
                for address, hb in sorted(snapshot.items())
            ],
        }

    # ---------------------------------------------------------------- operations

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        stats = store.stats()
        return {
            "status": "ok",
            "artifacts": stats.artifacts,
            "artifact_bytes": stats.bytes,
            "max_artifact_bytes": store.max_bytes,
            "chain_id": settings.chain_id,
            "market": settings.market_address,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # ---------------------------------------------------------------- extensions

    app.include_router(results_router(settings))
    # The include point for endpoints owned by other relayer parts (jobs, providers from chain).
    for router in routers:
        app.include_router(router)

    return app


def _header_text(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:300]


def _too_large(size: int, limit: int, *, streamed: bool = False) -> str:
    amount = f"more than {limit}" if streamed else f"{size}"
    return (
        f"the artifact is {amount} bytes, above this relayer's limit of {limit} bytes; split it "
        "into smaller artifacts or raise DEPIN_API_MAX_ARTIFACT_BYTES on the relayer"
    )
