"""Where each provider put its encrypted result of a job: signed notices, kept on disk.

    POST /results                 a SignedResultNotice; 200 recorded (or an exact duplicate),
                                  422 malformed, 400 wrong deployment, 403 bad signature,
                                  409 an older notice than the one held, 413 body above 16 KiB,
                                  503 no chain configured
    GET  /jobs/{job_id}/results   the notices held for the job, one per provider

The relayer is not trusted with results: a requester decrypts the artifact and checks its digest
against the commitment the contract stores for that provider. The index only saves requesters
from scanning the store. Notices are kept under ``<artifact root>/results/<job id>.json``,
written atomically (temp file + rename), so they survive relayer restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.settings import ApiSettings
from marketplace.protocol.results import ResultError, SignedResultNotice, verify_result_notice

__all__ = ["ResultIndex", "results_router"]

_MAX_NOTICE_BYTES: Final = 16 * 1024


class ResultIndex:
    """Signed result notices per job and provider, one JSON file per job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, job_id: int) -> Path:
        return self.root / f"{job_id}.json"

    def get(self, job_id: int) -> dict[str, SignedResultNotice]:
        try:
            data = json.loads(self._path(job_id).read_text())
        except FileNotFoundError:
            return {}
        return {p: SignedResultNotice.model_validate(n) for p, n in data.items()}

    def put(self, signed: SignedResultNotice) -> str:
        """Records `signed`; returns "recorded", "duplicate" or "older" (not recorded)."""
        notice = signed.notice
        with self._lock:
            held = self.get(notice.job_id)
            current = held.get(notice.provider)
            if current is not None:
                if current == signed:
                    return "duplicate"
                if current.notice.timestamp >= notice.timestamp:
                    return "older"
            held[notice.provider] = signed
            text = json.dumps({p: n.model_dump(mode="json") for p, n in sorted(held.items())})
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(notice.job_id))
            return "recorded"


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def results_router(settings: ApiSettings) -> APIRouter:
    """The result-notice endpoints over an index in `settings.artifact_root / "results"`."""
    index = ResultIndex(settings.artifact_root / "results")
    router = APIRouter()

    @router.post("/results")
    async def post_result(request: Request) -> Response:
        if settings.chain_id is None or settings.market_address is None:
            return _error(
                503,
                "this relayer has no chain configured, so it cannot check result notices; set "
                "DEPIN_API_DEPLOYMENT_FILE (or DEPIN_API_CHAIN_ID and DEPIN_API_MARKET_ADDRESS)",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_NOTICE_BYTES:
                return _error(413, f"a result notice is at most {_MAX_NOTICE_BYTES} bytes")
        try:
            signed = SignedResultNotice.from_json(bytes(body))
        except ResultError as exc:
            return _error(422, str(exc))
        try:
            provider = verify_result_notice(
                signed, chain_id=settings.chain_id, market=settings.market_address
            )
        except ResultError as exc:
            status = 400 if "this relayer serves" in str(exc) else 403
            return _error(status, str(exc))
        outcome = await run_in_threadpool(index.put, signed)
        if outcome == "older":
            return _error(
                409,
                f"the relayer holds a newer notice of {provider} for job "
                f"{signed.notice.job_id}; sign each notice with the current time",
            )
        return JSONResponse(
            {"job_id": signed.notice.job_id, "provider": provider, "status": outcome}
        )

    @router.get("/jobs/{job_id}/results")
    async def job_results(job_id: int) -> dict[str, Any]:
        held = await run_in_threadpool(index.get, job_id)
        return {
            "job_id": job_id,
            "results": [
                {**n.notice.model_dump(mode="json"), "signature": n.signature}
                for _, n in sorted(held.items())
            ],
        }

    return router
