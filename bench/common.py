"""Shared pieces of the benches that run a whole devnet: machine facts, result files, a devnet
with a requester, and a tracker that timestamps each job's milestones as the requester sees them.

The tracker polls, every `POLL` seconds, the JobMarket's logs over the new blocks (assignment,
commit, close) and the relayer's result notices of committed jobs; a milestone's time is when
the poll first saw it, so every figure carries up to one poll interval of delay (50 ms).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis

from marketplace.devnet.manager import DEVNET_PARAMS, Devnet, DevnetConfig
from marketplace.protocol.wakeup import ws_url_for
from marketplace.requester.sdk import Requester

RESULTS_DIR = Path(__file__).parent / "results"
#: Seconds between two polls of the tracker.
POLL = 0.05
#: The lowest audit rate the contract accepts at the devnet's collateral multiple
#: (auditBps x (1 + collateralMultiple) >= 10000): throughput benches audit as little as the
#: market allows.
AUDIT_FLOOR = -(-10_000 // (1 + DEVNET_PARAMS.collateral_multiple))


def machine() -> dict[str, Any]:
    """Facts about where a figure was measured."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in load],
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Writes bench/results/<name>.json with the machine facts added."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**result, "machine": machine()}, indent=2) + "\n")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    if q <= 0:
        return float(min(values))
    if q >= 100:
        return float(max(values))
    return float(cuts[int(q) - 1])


@contextlib.contextmanager
def devnet(config: DevnetConfig | None = None, **overrides: Any) -> Iterator[Devnet]:
    """A fresh devnet in a temporary directory, stopped and deleted at the end, also when the
    bench is stopped with SIGTERM (a leftover devnet's processes would load the next run)."""
    with tempfile.TemporaryDirectory(prefix="depin-bench-") as tmp, _exit_on_sigterm():
        base = config or DevnetConfig()
        values = {**base.__dict__, "dir": Path(tmp) / "devnet", **overrides}
        net = Devnet.up(DevnetConfig(**values))
        try:
            yield net
        finally:
            net.down()


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit inside the block, so its cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def requester(net: Devnet) -> Requester:
    """The devnet's requester, woken by new blocks as `depin job wait` is."""
    return Requester(
        net.w3,
        net.deployment,
        net.requester_account(),
        net.api_url,
        heads_url=ws_url_for(net.state.rpc_url),
    )


@dataclass
class Milestones:
    """perf_counter times at which the tracker first saw each step of one job."""

    assigned: float | None = None
    committed: float | None = None
    commits: int = 0
    result: float | None = None
    closed: float | None = None


@dataclass
class Tracker:
    """Follows jobs of one deployment from the requester's side (chain logs + relayer API)."""

    net: Devnet
    start_block: int
    jobs: dict[int, Milestones] = field(default_factory=dict)
    _next: int = 0

    @classmethod
    def from_now(cls, net: Devnet) -> Tracker:
        block = net.w3.eth.block_number
        return cls(net, block, _next=block)

    def add(self, job_ids: Iterable[int]) -> None:
        for job in job_ids:
            self.jobs.setdefault(job, Milestones())

    def wait(
        self, job_ids: Sequence[int], until: str = "result", timeout: float = 600.0
    ) -> dict[int, Milestones]:
        """Polls until every job of `job_ids` reached `until` ("commit", "result", "closed")."""
        self.add(job_ids)
        market = self.net.owner().market
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.net.api_url, timeout=10) as http:
            while True:
                now = time.perf_counter()
                head = self.net.w3.eth.block_number
                if head >= self._next:
                    span = {"from_block": self._next, "to_block": head}
                    for e in market.events.ProviderAssigned().get_logs(**span):
                        m = self.jobs.get(int(e["args"]["jobId"]))
                        if m is not None and m.assigned is None:
                            m.assigned = now
                    for e in market.events.ResultCommitted().get_logs(**span):
                        m = self.jobs.get(int(e["args"]["jobId"]))
                        if m is not None:
                            m.commits += 1
                            if m.committed is None:
                                m.committed = now
                    for e in market.events.JobClosed().get_logs(**span):
                        m = self.jobs.get(int(e["args"]["jobId"]))
                        if m is not None and m.closed is None:
                            m.closed = now
                    self._next = head + 1
                if until == "result":
                    for job in job_ids:
                        m = self.jobs[job]
                        if m.committed is not None and m.result is None:
                            results = http.get(f"/jobs/{job}/results").json().get("results")
                            if results:
                                m.result = now
                if all(_reached(self.jobs[j], until) for j in job_ids):
                    return {j: self.jobs[j] for j in job_ids}
                if time.monotonic() > deadline:
                    missing = [j for j in job_ids if not _reached(self.jobs[j], until)]
                    raise TimeoutError(f"jobs {missing[:10]} did not reach {until} in {timeout} s")
                time.sleep(POLL)


def _reached(m: Milestones, until: str) -> bool:
    if until == "commit":
        return m.committed is not None
    if until == "result":
        return m.result is not None
    return m.closed is not None


@dataclass(frozen=True)
class TaskRecord:
    """A finished `depin.execute` task as the Celery result backend holds it."""

    job_id: int
    role: str
    status: str
    #: Seconds `execute` took inside the worker (fetch, torch, digest, encrypt, upload).
    seconds: float
    #: Unix time the worker stored the result.
    done_at: float


def task_records(redis_url: str) -> list[TaskRecord]:
    """Every `depin.execute` result in the backend (one per task id: a re-run overwrites)."""
    client = redis.Redis.from_url(redis_url)
    out = []
    try:
        for key in client.scan_iter(match="celery-task-meta-depin:*", count=1000):
            raw = client.get(key)
            if raw is None:
                continue
            meta = json.loads(raw)
            parts = key.decode().split(":")
            value = meta.get("result")
            if not isinstance(value, dict):
                value = {}
            done = meta.get("date_done")
            done_at = datetime.fromisoformat(done).replace(tzinfo=UTC).timestamp() if done else 0.0
            out.append(
                TaskRecord(
                    job_id=int(parts[-4]),
                    role=parts[-2],
                    status=str(value.get("status", meta.get("status"))),
                    seconds=float(value.get("seconds", 0.0)),
                    done_at=done_at,
                )
            )
    finally:
        client.close()
    return out


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
