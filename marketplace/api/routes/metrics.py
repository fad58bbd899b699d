"""GET /metrics: the app's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from marketplace.api.dependencies import Metrics
from marketplace.api.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(metrics: Metrics) -> Response:
    return Response(metrics.render(), media_type=CONTENT_TYPE)
