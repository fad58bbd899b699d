"""The artifact store over HTTP.

    PUT  /artifacts/{sha256}   store the body (streamed, size-limited); 201 new, 200 present,
                               400 malformed hash or hash mismatch, 413 too large
    GET  /artifacts/{sha256}   the bytes, verified before sending; 404 unknown, 400 malformed,
                               500 the stored copy failed its hash check (it is quarantined;
                               header X-Depin-Reason: corrupt); later requests get 404
    HEAD /artifacts/{sha256}   as GET without the body (messages in header X-Depin-Error)

An artifact's name is the sha256 of its bytes, so the store (marketplace.api.artifacts) checks
every upload against its name and every stored copy before it is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Annotated, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from marketplace.api.artifacts import (
    ArtifactStore,
    ArtifactTooLarge,
    PendingArtifact,
    StoredArtifactCorrupted,
)
from marketplace.api.dependencies import Artifacts, Metrics
from marketplace.api.errors import BadRequest
from marketplace.api.metrics import ApiMetrics
from marketplace.protocol.artifact_client import check_sha256

__all__ = ["router"]

#: Upload bytes are handed to the store's worker thread in pieces of about this size.
_FLUSH_BYTES: Final = 1024 * 1024
_OCTET: Final = "application/octet-stream"

router = APIRouter()


async def _name(sha256: str) -> str:
    return check_sha256(sha256)


#: The artifact's name from the path, refused with 400 unless it is a sha256 in hex.
Name = Annotated[str, Depends(_name)]


async def _upload_name(sha256: Name, request: Request, store: Artifacts) -> str:
    """The name of an upload whose Content-Length, when given, is within the limit: refused
    before any byte is read otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a byte count")
        if int(declared) > store.max_bytes:
            raise ArtifactTooLarge(_too_large(int(declared), store.max_bytes))
    return sha256


UploadName = Annotated[str, Depends(_upload_name)]


@router.put("/artifacts/{sha256}", status_code=201)
async def put_artifact(
    sha256: UploadName, request: Request, store: Artifacts, metrics: Metrics
) -> Response:
    pending: PendingArtifact = await run_in_threadpool(store.begin, sha256)
    try:
        received = 0
        buffer = bytearray()
        async for chunk in request.stream():
            received += len(chunk)
            if received > store.max_bytes:
                raise ArtifactTooLarge(_too_large(received, store.max_bytes, streamed=True))
            buffer += chunk
            if len(buffer) >= _FLUSH_BYTES:
                await run_in_threadpool(pending.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await run_in_threadpool(pending.write, bytes(buffer))
        await run_in_threadpool(pending.commit)
    finally:
        pending.close()
    metrics.uploaded.inc(pending.size)
    return JSONResponse(
        {"sha256": sha256, "size": pending.size, "created": pending.created},
        status_code=201 if pending.created else 200,
        headers={"location": f"/artifacts/{sha256}"},
    )


@router.get("/artifacts/{sha256}", response_class=Response)
async def get_artifact(sha256: Name, store: Artifacts, metrics: Metrics) -> Response:
    f = await _open_verified(store, metrics, sha256)
    size = os.fstat(f.fileno()).st_size
    return StreamingResponse(_chunks(f), media_type=_OCTET, headers=_headers(sha256, size))


@router.head("/artifacts/{sha256}", response_class=Response)
async def head_artifact(sha256: Name, store: Artifacts, metrics: Metrics) -> Response:
    # Verified like GET, so a client that asks before uploading re-uploads a rotten copy.
    with await _open_verified(store, metrics, sha256) as f:
        size = os.fstat(f.fileno()).st_size
    return Response(status_code=200, media_type=_OCTET, headers=_headers(sha256, size))


async def _open_verified(store: ArtifactStore, metrics: ApiMetrics, sha256: str) -> IO[bytes]:
    try:
        return await run_in_threadpool(store.open_verified, sha256)
    except StoredArtifactCorrupted:
        metrics.corrupt.inc()
        raise


def _headers(sha256: str, size: int) -> dict[str, str]:
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


def _too_large(size: int, limit: int, *, streamed: bool = False) -> str:
    amount = f"more than {limit}" if streamed else f"{size}"
    return (
        f"the artifact is {amount} bytes, above this relayer's limit of {limit} bytes; split it "
        "into smaller artifacts or raise DEPIN_API_MAX_ARTIFACT_BYTES on the relayer"
    )
