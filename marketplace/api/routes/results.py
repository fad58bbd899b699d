"""Signed notices of where providers put their encrypted results (marketplace.api.results).

    POST /results                 a SignedResultNotice; 200 recorded (or an exact duplicate),
                                  422 malformed, 400 wrong deployment, 403 bad signature,
                                  409 an older notice than the one held, 413 body above 16 KiB,
                                  503 no chain configured
    GET  /jobs/{job_id}/results   the notices held for the job, one per provider

A notice is checked against the configured deployment and its signer, nothing more: the
requester checks the result itself against the commitment on chain.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from marketplace.api.dependencies import BodyCap, ChainConfig, RequireChain, Results
from marketplace.api.errors import BadRequest, Conflict, Forbidden, MalformedBody
from marketplace.protocol.results import ResultError, SignedResultNotice, verify_result_notice

__all__ = ["MAX_NOTICE_BYTES", "router"]

#: Largest result notice accepted (a notice is about 400 bytes).
MAX_NOTICE_BYTES: Final = 16 * 1024

router = APIRouter()


@router.post("/results")
async def post_result(
    # Checked first: without a deployment no body is read.
    chain: Annotated[ChainConfig, Depends(RequireChain("result notices"))],
    body: Annotated[
        bytes,
        Depends(BodyCap(MAX_NOTICE_BYTES, f"a result notice is at most {MAX_NOTICE_BYTES} bytes")),
    ],
    index: Results,
) -> Response:
    try:
        signed = SignedResultNotice.from_json(body)
    except ResultError as exc:
        raise MalformedBody(str(exc)) from exc
    try:
        provider = verify_result_notice(signed, chain_id=chain.chain_id, market=chain.market)
    except ResultError as exc:
        # A notice for another deployment is misdirected; any other failure is its signature.
        refusal = BadRequest if "this relayer serves" in str(exc) else Forbidden
        raise refusal(str(exc)) from exc
    outcome = await run_in_threadpool(index.put, signed)
    if outcome == "older":
        raise Conflict(
            f"the relayer holds a newer notice of {provider} for job "
            f"{signed.notice.job_id}; sign each notice with the current time"
        )
    return JSONResponse({"job_id": signed.notice.job_id, "provider": provider, "status": outcome})


@router.get("/jobs/{job_id}/results")
async def job_results(job_id: int, index: Results) -> dict[str, Any]:
    held = await run_in_threadpool(index.get, job_id)
    return {
        "job_id": job_id,
        "results": [
            {**n.notice.model_dump(mode="json"), "signature": n.signature}
            for _, n in sorted(held.items())
        ],
    }
