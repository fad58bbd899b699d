"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

Counters, gauges (set, or computed at scrape time by a callback) and histograms, each with a
fixed tuple of label names, collected in a `Registry` whose `render()` is the /metrics body:

    # HELP depin_http_requests_total HTTP requests served, by route template, method and status.
    # TYPE depin_http_requests_total counter
    depin_http_requests_total{route="/artifacts/{sha256}",method="GET",status="200"} 3

Label values are escaped (backslash, double quote, newline); HELP text escapes backslash and
newline. Histograms write cumulative `_bucket{le=...}` series ending in `le="+Inf"`, then `_sum`
and `_count`. All updates are thread-safe.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets in seconds (the Prometheus client default).
DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_Labels = tuple[str, ...]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _check_name(name: str) -> None:
    ok = name and (name[0].isalpha() or name[0] in "_:")
    if not ok or not all(c.isalnum() or c in "_:" for c in name) or not name.isascii():
        raise ValueError(f"{name!r} is not a valid Prometheus metric or label name")


class _Metric:
    kind: str = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        _check_name(name)
        for label in labels:
            _check_name(label)
            if label == "le" or label.startswith("__"):
                raise ValueError(f"label name {label!r} is reserved in Prometheus")
        self.name = name
        self.help = help
        self.label_names: _Labels = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> _Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(
                f"{self.name} takes labels {self.label_names}, got {len(labels)} values"
            )
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up. By convention its name ends in `_total`."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[_Labels, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up; {self.name} got {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [
            f"{self.name}{_label_text(self.label_names, k)} {_format_value(v)}" for k, v in items
        ]


class Gauge(_Metric):
    """A value that goes up and down; set directly, or computed by `callback` at each scrape.

    A callback returns the samples as (label values, value) pairs.
    """

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callable[[], Iterable[tuple[_Labels, float]]] | None = None,
    ) -> None:
        super().__init__(name, help, labels)
        self._values: dict[_Labels, float] = {}
        self._callback = callback

    def set(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def samples(self) -> list[str]:
        if self._callback is not None:
            items = sorted((self._key(k), float(v)) for k, v in self._callback())
        else:
            with self._lock:
                items = sorted(self._values.items())
        return [
            f"{self.name}{_label_text(self.label_names, k)} {_format_value(v)}" for k, v in items
        ]


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds) or any(math.isnan(b) for b in bounds):
            raise ValueError(f"{name}: buckets must be distinct numbers, got {buckets}")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds: tuple[float, ...] = tuple(bounds)
        # Per label set: per-bucket (non-cumulative) counts, sum.
        self._counts: dict[_Labels, list[int]] = {}
        self._sums: dict[_Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        index = next(i for i, b in enumerate(self.bounds) if value <= b)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * len(self.bounds)
                self._sums[key] = 0.0
            counts[index] += 1
            self._sums[key] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), ()))

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(c), self._sums[k]) for k, c in self._counts.items())
        lines: list[str] = []
        names = (*self.label_names, "le")
        for key, counts, total in items:
            running = 0
            for bound, n in zip(self.bounds, counts, strict=True):
                running += n
                labels = _label_text(names, (*key, _format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {running}")
            plain = _label_text(self.label_names, key)
            lines.append(f"{self.name}_sum{plain} {_format_value(total)}")
            lines.append(f"{self.name}_count{plain} {running}")
        return lines


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """The metrics one /metrics endpoint exposes, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labels))

    def gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        callback: Callable[[], Iterable[tuple[_Labels, float]]] | None = None,
    ) -> Gauge:
        return self.register(Gauge(name, help, labels, callback=callback))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self.register(Histogram(name, help, labels, buckets=buckets))

    def render(self) -> str:
        """The exposition text: HELP, TYPE and samples of every metric, newline-terminated."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
