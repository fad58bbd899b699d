"""Provider heartbeats into the liveness book the matcher reads.

    POST /heartbeats           a SignedHeartbeat; 200 accepted (or an exact duplicate),
                               422 malformed, 400 wrong chain / market / stale / future,
                               403 bad signature / signer / unregistered, 409 not newer,
                               413 body above 16 KiB, 503 no chain configured or the
                               registry index unavailable (Retry-After)
    GET  /providers/liveness   each provider's last heartbeat and whether it is live

A refusal's body adds ``"reason"``, the tag of HeartbeatError.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.dependencies import (
    BodyCap,
    Book,
    ChainConfig,
    Clock,
    Metrics,
    RequireChain,
    Settings,
    Source,
)
from marketplace.api.errors import BodyTooLarge
from marketplace.protocol.heartbeat import HeartbeatError, SignedHeartbeat, verify_heartbeat

__all__ = ["MAX_HEARTBEAT_BYTES", "router"]

#: Largest heartbeat body accepted (a heartbeat is about 400 bytes).
MAX_HEARTBEAT_BYTES: Final = 16 * 1024

router = APIRouter()

_cap = BodyCap(
    MAX_HEARTBEAT_BYTES, f"a heartbeat is at most {MAX_HEARTBEAT_BYTES} bytes; send only its fields"
)


async def _body(request: Request, metrics: Metrics) -> bytes:
    try:
        return await _cap(request)
    except BodyTooLarge:
        metrics.rejected.labels("malformed").inc()
        raise


@router.post("/heartbeats")
async def post_heartbeat(
    # Checked first: without a deployment no body is read.
    chain: Annotated[ChainConfig, Depends(RequireChain("heartbeats"))],
    body: Annotated[bytes, Depends(_body)],
    settings: Settings,
    book: Book,
    source: Source,
    metrics: Metrics,
    clock: Clock,
) -> Response:
    try:
        signed = SignedHeartbeat.from_json(body)
        provider = verify_heartbeat(
            signed,
            chain_id=chain.chain_id,
            market=chain.market,
            now=int(clock()),
            max_skew=settings.heartbeat_max_skew,
        )
        # ProviderSourceUnavailable passes by: not a refusal, the provider sends it again.
        if source is not None and not await run_in_threadpool(source.is_registered, provider):
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
        metrics.rejected.labels(exc.reason).inc()
        raise
    metrics.accepted.inc()
    return JSONResponse(
        {
            "provider": provider,
            "status": "accepted",
            "live_until": hb.timestamp + settings.heartbeat_interval * settings.heartbeat_missed,
            # The one source of the pace: agents send at this interval (or faster).
            "interval": settings.heartbeat_interval,
        }
    )


@router.get("/providers/liveness")
async def providers_liveness(settings: Settings, book: Book, clock: Clock) -> dict[str, Any]:
    now = int(clock())
    window = settings.heartbeat_interval * settings.heartbeat_missed
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
            for address, hb in sorted(book.snapshot().items())
        ],
    }
