"""GET /status: the listener's checkpoint and the number of jobs in each state (chain reads,
see marketplace.api.chain_routes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from marketplace.api.database import database_guard
from marketplace.api.dependencies import Reads
from marketplace.api.routes.jobs import STATES
from marketplace.protocol.client import JobState

__all__ = ["StatusOut", "router"]

router = APIRouter(dependencies=[Depends(database_guard)])


class StatusOut(BaseModel):
    chain_id: int | None
    market: str | None
    registry: str | None
    #: Last block whose events are all applied; null before the listener bound the store.
    block_number: int | None
    block_hash: str | None
    jobs: int
    #: Jobs per state name, every state listed.
    jobs_by_state: dict[str, int]
    providers: int


@router.get("/status", response_model=StatusOut)
def status(reads: Reads) -> StatusOut:
    overview = reads.store.overview()
    position, counts = overview.position, overview.jobs_by_state
    by_state = {name: counts.get(JobState[name.upper()], 0) for name in STATES}
    return StatusOut(
        chain_id=position.chain_id if position else None,
        market=position.market if position else None,
        registry=position.registry if position else None,
        block_number=position.block_number if position else None,
        block_hash=position.block_hash if position else None,
        jobs=sum(by_state.values()),
        jobs_by_state=by_state,
        providers=overview.providers,
    )
