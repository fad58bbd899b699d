"""What the API's routes are given: the app's state, read through FastAPI dependencies.

`create_app` puts one `ApiState` on ``app.state.api``; a route names what it uses with the
`Annotated` aliases below (``store: Artifacts``), so a route module holds plain functions and
no closure over the app. The chain configuration and the body-size cap are dependencies too:
a route that needs them cannot run without them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol, cast

from fastapi import Depends, Request

from marketplace.api.artifacts import ArtifactStore
from marketplace.api.errors import BodyTooLarge, NoChainConfigured
from marketplace.api.metrics import ApiMetrics
from marketplace.api.results import ResultIndex
from marketplace.api.settings import ApiSettings
from marketplace.protocol.heartbeat import HEARTBEAT_INTERVAL, HEARTBEAT_MISSED, LivenessBook
from marketplace.protocol.outage import Outage

if TYPE_CHECKING:
    # Only apps that serve the chain reads load the index (and its database driver).
    from marketplace.index.store import Store

__all__ = [
    "ApiState",
    "Artifacts",
    "BodyCap",
    "Book",
    "ChainConfig",
    "ChainReads",
    "Clock",
    "Metrics",
    "ProviderSource",
    "Reads",
    "RequireChain",
    "Results",
    "Settings",
    "Source",
    "State",
]


class ProviderSource(Protocol):
    """Which addresses are registered providers (the relayer's index of registry events).

    When given to `create_app`, heartbeats from other addresses are refused with 403, which
    also keeps the liveness book to registered providers. `is_registered` raises
    `ProviderSourceUnavailable` when it cannot tell.
    """

    def is_registered(self, address: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ChainReads:
    """What the read endpoints over the relayer's index use (`marketplace.api.chain_routes`).

    `liveness` adds each provider's heartbeat state (live when its last heartbeat is within
    `heartbeat_missed` x `heartbeat_interval` s); `outage` tracks the database as these
    endpoints see it."""

    store: Store
    outage: Outage
    liveness: LivenessBook | None = None
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    heartbeat_missed: int = HEARTBEAT_MISSED
    clock: Callable[[], float] = time.time

    def is_live(self, address: str, now: int) -> bool | None:
        """Whether `address` heartbeated recently; None without a liveness book."""
        if self.liveness is None:
            return None
        return self.liveness.is_live(address, now, self.heartbeat_interval, self.heartbeat_missed)


@dataclass(frozen=True, slots=True)
class ApiState:
    """Everything the routes of one app read; it lives at ``app.state.api``."""

    settings: ApiSettings
    store: ArtifactStore
    liveness: LivenessBook
    metrics: ApiMetrics
    results: ResultIndex
    clock: Callable[[], float]
    provider_source: ProviderSource | None = None
    #: Present when the app serves the chain read endpoints.
    chain: ChainReads | None = None


async def _state(request: Request) -> ApiState:
    return cast(ApiState, request.app.state.api)


State = Annotated[ApiState, Depends(_state)]


async def _settings(state: State) -> ApiSettings:
    return state.settings


async def _artifacts(state: State) -> ArtifactStore:
    return state.store


async def _liveness(state: State) -> LivenessBook:
    return state.liveness


async def _metrics(state: State) -> ApiMetrics:
    return state.metrics


async def _results(state: State) -> ResultIndex:
    return state.results


async def _clock(state: State) -> Callable[[], float]:
    return state.clock


async def _source(state: State) -> ProviderSource | None:
    return state.provider_source


async def _reads(state: State) -> ChainReads:
    if state.chain is None:
        raise RuntimeError(
            "the chain read routes were included without what they read; pass "
            "chain_router(store, ...) to create_app(routers=...)"
        )
    return state.chain


Settings = Annotated[ApiSettings, Depends(_settings)]
Artifacts = Annotated[ArtifactStore, Depends(_artifacts)]
Book = Annotated[LivenessBook, Depends(_liveness)]
Metrics = Annotated[ApiMetrics, Depends(_metrics)]
Results = Annotated[ResultIndex, Depends(_results)]
Clock = Annotated[Callable[[], float], Depends(_clock)]
Source = Annotated[ProviderSource | None, Depends(_source)]
Reads = Annotated[ChainReads, Depends(_reads)]


# ---------------------------------------------------------------------- the chain configuration


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """The deployment signed messages must name."""

    chain_id: int
    market: str


class RequireChain:
    """Dependency: the configured deployment, or 503 saying how to configure one."""

    def __init__(self, what: str) -> None:
        self.what = what

    async def __call__(self, settings: Settings) -> ChainConfig:
        if settings.chain_id is None or settings.market_address is None:
            raise NoChainConfigured(
                f"this relayer has no chain configured, so it cannot check {self.what}; set "
                "DEPIN_API_CHAIN_ID and DEPIN_API_MARKET_ADDRESS (or DEPIN_API_DEPLOYMENT_FILE)"
            )
        return ChainConfig(settings.chain_id, settings.market_address)


# ---------------------------------------------------------------------- the body-size cap


class BodyCap:
    """Dependency: the request body, refused with 413 as soon as it passes `limit` bytes (read
    as it arrives, so a client cannot make the API hold more than that)."""

    def __init__(self, limit: int, refusal: str) -> None:
        self.limit = limit
        self.refusal = refusal

    async def __call__(self, request: Request) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.limit:
                raise BodyTooLarge(self.refusal)
        return bytes(body)
