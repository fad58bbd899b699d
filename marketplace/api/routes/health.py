"""GET /healthz: liveness of the API itself and what it is configured for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from marketplace.api.dependencies import Artifacts, Settings

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz(store: Artifacts, settings: Settings) -> dict[str, Any]:
    stats = store.stats()
    return {
        "status": "ok",
        "artifacts": stats.artifacts,
        "artifact_bytes": stats.bytes,
        "max_artifact_bytes": store.max_bytes,
        "chain_id": settings.chain_id,
        "market": settings.market_address,
    }
