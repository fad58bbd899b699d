"""The market's web dashboard: server-rendered pages over the relayer's index (chain reads, see
marketplace.api.chain_routes), kept current by a server-sent event stream.

    GET /                          market overview: jobs per state, token totals, the credits
                                   check, throughput and latency chart, newest jobs, providers
    GET /ui/jobs                   jobs, newest first; filters ``state``, ``requester``,
                                   ``provider``; server-side pages of `PAGE_SIZE` (``page``)
    GET /ui/jobs/{id}              one job: participants, audit rounds, verdict, timeline of its
                                   events with their block and transaction
    GET /ui/providers              registered providers: stake, locks, terms, liveness, record
    GET /ui/providers/{address}    one provider, its jobs and the events that name it
    GET /ui/events                 ``text/event-stream``: a ``change`` event carrying the index's
                                   position whenever the listener moves it

Everything shown is read from the index the listener fills, so it is as current as its
checkpoint (shown on every page). Pages answer HTML; a malformed filter is shown on the page
with status 400, an unknown job or provider with 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from marketplace.api.database import database_guard
from marketplace.api.dependencies import ChainReads, Reads
from marketplace.api.errors import BadRequest
from marketplace.api.routes.jobs import STATES, verdict_of
from marketplace.api.routes.providers import checked_address
from marketplace.index.outages import database_unavailable, reason
from marketplace.index.store import JobTiming, Position, ProviderRow
from marketplace.protocol.client import JobState

__all__ = [
    "EVENT_POLL_SECONDS",
    "PAGE_SIZE",
    "STATIC_DIR",
    "TEMPLATE_DIR",
    "Chart",
    "chart",
    "router",
    "tokens",
    "version_of",
]

log = logging.getLogger(__name__)

#: Jobs per page of /ui/jobs.
PAGE_SIZE: Final = 50
#: How often the event stream reads the index's position (one primary-key read).
EVENT_POLL_SECONDS: Final = 1.0
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS: Final = 15.0
#: Columns of the throughput chart.
CHART_BUCKETS: Final = 24
TOKEN_DECIMALS: Final = 18

TEMPLATE_DIR: Final = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)
# Only the pages go through the guard: the event stream outlives a request's dependencies and
# handles an outage itself.
pages = APIRouter(dependencies=[Depends(database_guard)])
templates = Jinja2Templates(directory=TEMPLATE_DIR)


def tokens(amount: int | None, places: int = 6) -> str:
    """Base units as whole tokens, at most `places` decimals, trailing zeros dropped."""
    if amount is None:
        return "-"
    whole = Decimal(amount).scaleb(-TOKEN_DECIMALS)
    text = f"{whole:,.{places}f}".rstrip("0").rstrip(".")
    if text in ("0", "-0") and amount:
        return f"<{Decimal(1).scaleb(-places)}"
    return text


def _short(address: str | None) -> str:
    if not address:
        return "-"
    return f"{address[:6]}…{address[-4:]}"


templates.env.filters["tokens"] = tokens
templates.env.filters["short"] = _short
templates.env.globals["STATES"] = STATES


def version_of(position: Position | None) -> str:
    """What the event stream compares: the checkpoint block and hash ("" before binding)."""
    if position is None:
        return ""
    return f"{position.block_number}:{position.block_hash or ''}"


# ---------------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Bar:
    x: float
    created: int
    closed: int
    #: Mean blocks from creation to close of the jobs closed in this column; None without one.
    latency: float | None
    first_block: int
    last_block: int


@dataclass(frozen=True)
class Chart:
    """Jobs created and closed per column of blocks, and their mean latency in blocks."""

    bars: tuple[Bar, ...]
    width: float
    first_block: int
    last_block: int
    #: Largest created or closed count of a column (the bars' scale), at least 1.
    peak: int
    #: Largest latency of a column (the line's scale), at least 1.
    peak_latency: float

    def latency_points(self, height: float) -> str:
        """The latency line's SVG points, `height` pixels tall."""
        return " ".join(
            f"{b.x + self.width / 2:.1f},{height - b.latency / self.peak_latency * height:.1f}"
            for b in self.bars
            if b.latency is not None
        )


def chart(timings: Sequence[JobTiming], head: int, columns: int = CHART_BUCKETS) -> Chart | None:
    """The throughput chart over the blocks from the first job to `head`; None without jobs."""
    if not timings:
        return None
    first = min(t.created_block for t in timings)
    last = max(head, max(t.closed_block or t.created_block for t in timings))
    span = max(last - first + 1, 1)
    per = max(-(-span // columns), 1)  # blocks per column, rounded up
    count = -(-span // per)
    created = [0] * count
    closed = [0] * count
    waited = [0] * count
    for t in timings:
        created[(t.created_block - first) // per] += 1
        if t.closed_block is not None:
            column = (t.closed_block - first) // per
            closed[column] += 1
            waited[column] += t.closed_block - t.created_block
    width = 600 / count
    bars = tuple(
        Bar(
            x=i * width,
            created=created[i],
            closed=closed[i],
            latency=waited[i] / closed[i] if closed[i] else None,
            first_block=first + i * per,
            last_block=min(first + (i + 1) * per - 1, last),
        )
        for i in range(count)
    )
    latencies = [b.latency for b in bars if b.latency is not None]
    return Chart(
        bars=bars,
        width=width,
        first_block=first,
        last_block=last,
        peak=max(1, *created, *closed),
        peak_latency=max([1.0, *latencies]),
    )


# ---------------------------------------------------------------------- pages


def _page(
    request: Request, reads: ChainReads, template: str, status: int = 200, **context: Any
) -> HTMLResponse:
    position = reads.store.position()
    base: dict[str, Any] = {
        "position": position,
        "version": version_of(position),
        "head": position.block_number if position else 0,
        "seated": {},
    }
    return templates.TemplateResponse(request, template, base | context, status_code=status)


def _provider_facts(reads: ChainReads, rows: Sequence[ProviderRow]) -> list[dict[str, Any]]:
    now = int(reads.clock())
    profiles = reads.store.profiles()
    credits = reads.store.credited_totals()
    loads = reads.store.provider_loads()
    return [
        {
            "row": row,
            "live": reads.is_live(row.address, now),
            "credited": credits.get(row.address, 0),
            "load": loads.get(row.address, 0),
            "profiles": [
                profiles.get(i, str(i))[:10]
                for i in range(row.profile_mask.bit_length())
                if row.profile_mask >> i & 1
            ],
        }
        for row in rows
    ]


@pages.get("/", response_class=HTMLResponse)
def overview(request: Request, reads: Reads) -> HTMLResponse:
    store = reads.store
    counts = store.state_counts()
    position = store.position()
    head = position.block_number if position else 0
    providers = _provider_facts(reads, store.providers())
    newest = store.jobs_page(limit=10).jobs
    return _page(
        request,
        reads,
        "overview.html",
        counts={name: counts.get(JobState[name.upper()], 0) for name in STATES},
        total=sum(counts.values()),
        totals=store.market_totals(),
        chart=chart(store.job_timings(), head),
        newest=newest,
        seated=store.seats([j.job_id for j in newest]),
        providers=providers,
        live=sum(1 for p in providers if p["live"]),
        slashed=[p for p in providers if p["row"].jobs_slashed],
    )


@pages.get("/ui/jobs", response_class=HTMLResponse)
def jobs(
    request: Request,
    reads: Reads,
    state: str | None = None,
    requester: str | None = None,
    provider: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    # An empty form field means "any".
    filters = {"state": state or "", "requester": requester or "", "provider": provider or ""}
    try:
        wanted = _state(filters["state"])
        by_requester = _address(filters["requester"], "requester")
        by_provider = _address(filters["provider"], "provider")
    except BadRequest as exc:
        return _page(request, reads, "jobs.html", 400, error=str(exc), filters=filters, found=None)
    found = reads.store.jobs_page(
        state=wanted,
        requester=by_requester,
        provider=by_provider,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    pages_total = max(-(-found.total // PAGE_SIZE), 1)
    query = {k: v for k, v in filters.items() if v}
    return _page(
        request,
        reads,
        "jobs.html",
        error=None,
        filters=filters,
        found=found,
        page=page,
        pages=pages_total,
        query=query,
        seated=reads.store.seats([j.job_id for j in found.jobs]),
    )


def _state(name: str) -> JobState | None:
    if not name:
        return None
    if name.lower() not in STATES:
        raise BadRequest(f"unknown job state {name!r}; use one of {', '.join(STATES)}")
    return JobState[name.upper()]


def _address(value: str, what: str) -> str | None:
    return checked_address(value.strip(), what) if value.strip() else None


@pages.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job(request: Request, reads: Reads, job_id: int) -> HTMLResponse:
    store = reads.store
    row = store.job(job_id)
    if row is None:
        return _page(request, reads, "missing.html", 404, what=f"job {job_id}")
    participants = store.participants(job_id)
    return _page(
        request,
        reads,
        "job.html",
        job=row,
        participants=participants,
        rounds=store.audit_rounds(job_id),
        verdict=verdict_of(row, participants),
        history=store.history(job_id),
        skipped=store.skipped(job_id),
    )


@pages.get("/ui/providers", response_class=HTMLResponse)
def providers(request: Request, reads: Reads) -> HTMLResponse:
    return _page(
        request, reads, "providers.html", providers=_provider_facts(reads, reads.store.providers())
    )


@pages.get("/ui/providers/{address}", response_class=HTMLResponse)
def provider(
    request: Request, reads: Reads, address: str, page: Annotated[int, Query(ge=1)] = 1
) -> HTMLResponse:
    try:
        checked = checked_address(address, "provider")
    except BadRequest as exc:
        return _page(request, reads, "missing.html", 400, what=str(exc))
    row = reads.store.provider(checked)
    if row is None:
        return _page(request, reads, "missing.html", 404, what=f"provider {checked}")
    found = reads.store.jobs_page(provider=checked, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return _page(
        request,
        reads,
        "provider.html",
        p=_provider_facts(reads, [row])[0],
        found=found,
        page=page,
        pages=max(-(-found.total // PAGE_SIZE), 1),
        seated=reads.store.seats([j.job_id for j in found.jobs]),
        events=reads.store.account_history(checked),
    )


router.include_router(pages)


# ---------------------------------------------------------------------- live updates


@router.get("/ui/events")
async def events(request: Request, reads: Reads) -> StreamingResponse:
    """One ``change`` event now and one each time the index's position moves."""
    return StreamingResponse(
        _changes(request, reads),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _changes(request: Request, reads: ChainReads) -> AsyncIterator[str]:
    # A browser reconnects by itself after an error; tell it how soon.
    yield f"retry: {int(EVENT_POLL_SECONDS * 2000)}\n\n"
    sent: str | None = None
    quiet = 0.0
    while not await request.is_disconnected():
        try:
            position = await asyncio.to_thread(reads.store.position)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # The pages answer 503 meanwhile; the stream waits for the database to return.
            reads.outage.failed(reason(exc))
        else:
            reads.outage.ok()
            version = version_of(position)
            if version != sent:
                sent, quiet = version, 0.0
                yield f"event: change\ndata: {version}\n\n"
        await asyncio.sleep(EVENT_POLL_SECONDS)
        quiet += EVENT_POLL_SECONDS
        if quiet >= KEEPALIVE_SECONDS:
            quiet = 0.0
            yield ": keepalive\n\n"
