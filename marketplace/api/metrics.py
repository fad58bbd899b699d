"""The relayer API's Prometheus metrics, kept by prometheus_client in one registry per app.

What happens is counted as it happens (requests, their latency, uploads, corrupt artifacts,
heartbeats); what the store and the liveness book hold is read at each scrape, so it is never
stale. `ApiMetrics.render()` is the /metrics body, in the text format of `CONTENT_TYPE`:

    # HELP depin_http_requests_total HTTP requests served, by route template, method and status.
    # TYPE depin_http_requests_total counter
    depin_http_requests_total{method="GET",route="/artifacts/{sha256}",status="200"} 3.0
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketplace.api.artifacts import ArtifactStore
from marketplace.api.settings import ApiSettings
from marketplace.protocol.client import JobState
from marketplace.protocol.heartbeat import LivenessBook

if TYPE_CHECKING:
    from marketplace.index.store import Store

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "ApiMetrics", "RequestMetrics"]

# Every name here is a classic one, so the body is exactly the 0.0.4 format; saying so keeps
# scrapers that pick a parser by the version on the path they have always taken.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
#: Latency buckets in seconds; `le` values are part of the series dashboards query.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ReadAtScrape:
    """The gauges computed from the store and the liveness book at each scrape."""

    def __init__(
        self,
        store: ArtifactStore,
        book: LivenessBook,
        live_window: int,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._book = book
        self._live_window = live_window
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        # Names without values: the registry refuses a clash at registration, and registering
        # does not read the store.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        stats = self._store.stats()
        snapshot = self._book.snapshot()
        now = int(self._clock())
        live = sum(1 for hb in snapshot.values() if now - hb.timestamp <= self._live_window)
        stored, stored_bytes, providers = self._families()
        stored.add_metric((), stats.artifacts)
        stored_bytes.add_metric((), stats.bytes)
        providers.add_metric(("all",), len(snapshot))
        providers.add_metric(("live",), live)
        return stored, stored_bytes, providers

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("depin_artifacts_stored", "Artifacts in the store.", labels=()),
            GaugeMetricFamily(
                "depin_artifact_stored_bytes", "Bytes of artifacts in the store.", labels=()
            ),
            GaugeMetricFamily(
                "depin_providers_heartbeating",
                "Providers with a recorded heartbeat (all), and those live now (live).",
                labels=("state",),
            ),
        )


class _WithoutCreated:
    """The registry's families less the `_created` samples prometheus_client adds to counters
    and histograms: in the 0.0.4 format they would be extra gauge series nobody asked for.
    Filtered here rather than switched off library-wide, which would reach other registries in
    the same process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            # collect() builds fresh Metric objects on every call, so trimming them is safe.
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class _MarketAtScrape:
    """The market's figures from the relayer's chain index, read at each scrape: jobs per
    state, the token totals of the events, and whether every closed job's payout was credited.
    While the index's database is unavailable the scrape leaves them out (the API's own
    figures still answer)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        from marketplace.index.outages import database_unavailable

        try:
            counts = self._store.state_counts()
            totals = self._store.market_totals()
        except Exception as exc:
            if database_unavailable(exc):
                return ()
            raise
        jobs, tokens, closed, balanced = self._families()
        for state in JobState:
            jobs.add_metric((state.name.lower(),), counts.get(state, 0))
        for kind in ("escrowed", "paid", "refunded", "fees", "burned", "slashed", "credited"):
            tokens.add_metric((kind,), getattr(totals, kind))
        tokens.add_metric(("released_fees",), totals.released_fees)
        closed.add_metric((), totals.closed)
        balanced.add_metric((), 1 if totals.credits_balance else 0)
        return jobs, tokens, closed, balanced

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
    ]:
        return (
            GaugeMetricFamily("depin_jobs", "Jobs in the index, by state.", labels=("state",)),
            GaugeMetricFamily(
                "depin_market_tokens",
                "Token totals of the market's events, in base units: escrowed at creation; "
                "paid, refunded, fees and burned at close; slashed collateral, release fees "
                "and credits.",
                labels=("kind",),
            ),
            GaugeMetricFamily("depin_jobs_closed", "Jobs with a JobClosed event.", labels=()),
            GaugeMetricFamily(
                "depin_market_credits_balanced",
                "1 when every closed job's paid + refunded equals its Credited events, else 0.",
                labels=(),
            ),
        )


class ApiMetrics:
    """One app's metrics. Each app has its own registry (never prometheus_client's global
    one), so apps created side by side in one process count separately."""

    def __init__(
        self,
        store: ArtifactStore,
        book: LivenessBook,
        settings: ApiSettings,
        clock: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "depin_http_requests_total",
            "HTTP requests served, by route template, method and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "depin_http_request_duration_seconds",
            "Time to serve an HTTP request, until the last body byte is sent, by route template.",
            ("route",),
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.uploaded = Counter(
            "depin_artifact_uploaded_bytes_total",
            "Bytes received in completed uploads.",
            registry=r,
        )
        self.corrupt = Counter(
            "depin_artifact_corrupt_total",
            "Stored artifacts found corrupt on read and quarantined.",
            registry=r,
        )
        self.accepted = Counter(
            "depin_heartbeats_accepted_total", "Provider heartbeats accepted.", registry=r
        )
        self.rejected = Counter(
            "depin_heartbeats_rejected_total",
            "Provider heartbeats rejected, by reason.",
            ("reason",),
            registry=r,
        )
        window = settings.heartbeat_interval * settings.heartbeat_missed
        r.register(_ReadAtScrape(store, book, window, clock))
        self._exposed = _WithoutCreated(r)

    def watch_market(self, store: Store) -> None:
        """Adds the market's figures read from the relayer's chain index at each scrape."""
        self.registry.register(_MarketAtScrape(store))

    def render(self) -> bytes:
        """The /metrics body (media type `CONTENT_TYPE`)."""
        return generate_latest(self._exposed)


#: The methods counted under their own name in depin_http_requests_total.
_HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)


class RequestMetrics:
    """ASGI middleware counting requests by route template and timing them."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # An error that escapes every handler is answered 500 by the outermost middleware.
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
