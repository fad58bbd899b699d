"""End to end through the marketplace vs raw Celery on the same Redis.

A devnet with one honest provider (one Celery worker, concurrency 1, audits off). N tiny matmul
jobs (n=8) are created in one `submit_many`; the time runs from the start of the submit to the
moment the tracker (bench/common.py) sees the last job committed on-chain with its result notice
at the relayer, i.e. downloadable by the requester. The baseline pushes the same N matmul +
digest computations as plain Celery tasks (bench/rawcelery.py) through the devnet's Redis to a
separate plain worker (prefork, concurrency 1), sent together, until the last result is back.
The raw batch runs before and after the marketplace batch; the mean of the two is the baseline.

    throughput ratio = marketplace jobs/s / raw Celery jobs/s        (goal >= 0.5)

Latency: one job at a time, submit -> result available as the requester's own `wait` sees it
(woken by new blocks over WebSocket; M jobs, p50/p95), vs one raw Celery round trip (send ->
result), and vs the same jobs on a second devnet whose relayer, agent and requester only poll
(every 0.25 s: the pipeline before the wake-ups). Settlement (commit -> JobClosed, which
includes the devnet's challenge window) is reported separately. One result is fetched and
verified at the end.

    .venv/bin/python -m bench.e2e [--jobs N] [--latency M]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from rich.console import Console
from rich.table import Table

from bench import rawcelery
from bench.common import (
    AUDIT_FLOOR,
    Tracker,
    devnet,
    percentile,
    ratio,
    requester,
    task_records,
    write_result,
)
from marketplace.devnet.manager import DEVNET_PARAMS, PRICE_PER_UNIT
from marketplace.requester import Requester
from marketplace.requester.inputs import JobDraft

ROOT = Path(__file__).resolve().parents[1]
N = 8
GOAL = 0.5
#: The devnet's poll interval: the requester's too in the polling baseline.
POLLING = 0.25
QUEUE = "bench-raw"


@dataclass
class RawWorker:
    proc: subprocess.Popen[bytes]
    app: Celery

    def batch(self, count: int, first_seed: int) -> float:
        """Seconds to send `count` tasks at once and collect every result."""
        start = time.perf_counter()
        results = [
            self.app.send_task(rawcelery.TASK_NAME, args=[N, first_seed + i], queue=QUEUE)
            for i in range(count)
        ]
        for r in results:
            r.get(timeout=300)
        return time.perf_counter() - start

    def round_trip(self, seed: int) -> float:
        start = time.perf_counter()
        self.app.send_task(rawcelery.TASK_NAME, args=[N, seed], queue=QUEUE).get(timeout=60)
        return time.perf_counter() - start

    def stop(self) -> None:
        # Results hold a pub/sub consumer on Redis: close it while Redis still runs.
        gc.collect()
        with contextlib.suppress(Exception):
            self.app.backend.result_consumer.stop()
        self.app.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_raw_worker(redis_url: str, log: Path) -> RawWorker:
    env = {**os.environ, "BENCH_RAW_BROKER_URL": redis_url, "BENCH_RAW_QUEUE": QUEUE}
    command = [
        sys.executable, "-m", "celery", "-A", "bench.rawcelery", "worker",
        "--queues", QUEUE, "--concurrency", "1", "--pool", "prefork",
        "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    app = Celery("bench-raw-client", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    worker = RawWorker(proc, app)
    worker.round_trip(0)  # waits for the worker; the first task also imports torch
    return worker


@dataclass
class Stages:
    """Where one job's latency went (wall clock, seconds)."""

    total: float
    #: Uploads, the create transaction and its receipt.
    submit: float
    #: From the create's receipt until the worker stored its result: the relayer's match and
    #: assignment, the agent's pick-up, the Celery hand-off and the execution.
    to_worker_done: float
    #: From the stored result until the requester's wait returned: the agent's wake-up and
    #: commit transaction, the requester's wake-up and its reads.
    to_result: float


def latencies(req: Requester, redis_url: str, count: int, first_seed: int) -> list[Stages]:
    """One job at a time, submit -> result available as `wait` sees it, split into stages by
    the submit's return and the time the worker stored the result (its Celery record)."""
    out = []
    for i in range(count):
        start = time.time()
        (job,) = req.submit_many([draft(first_seed + i)])
        submitted = time.time()
        req.wait(job, until="result", timeout=120)
        end = time.time()
        done = [r.done_at for r in task_records(redis_url) if r.job_id == job]
        done_at = min(done) if done else end
        out.append(Stages(end - start, submitted - start, done_at - submitted, end - done_at))
    return out


def _p50(stages: list[Stages], name: str) -> float:
    return float(statistics.median(float(getattr(s, name)) for s in stages))


def draft(seed: int) -> JobDraft:
    return JobDraft("matmul", PRICE_PER_UNIT, parameters={"n": N, "seed": seed})


def profile_execute(req: Any, ids: list[int], console: Console) -> None:
    """cProfile of `provider.execute.execute` (what a worker runs per task) in this process,
    against the devnet's relayer, plus the chain reads the task makes before it."""
    import cProfile
    import io
    import pstats

    import provider.runtime.determinism  # noqa: F401  (CPU profile environment first)
    from marketplace.protocol.artifact_client import ArtifactClient
    from provider.execute import execute
    from provider.runtime.device import profile_name

    profile = profile_name()
    hashes = {}
    for job in ids:
        logs = req.market.market.events.JobCreated().get_logs(
            argument_filters={"jobId": job}, from_block=req.deployment.block
        )
        hashes[job] = bytes(logs[0]["args"]["specHash"])
    with ArtifactClient(req.relayer_url) as artifacts:
        execute(ids[0], hashes[ids[0]], artifacts, profile)  # warm-up
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        for job in ids:
            execute(job, hashes[job], artifacts, profile)
            req.market.job(job)  # the task's one chain read (state and commit mask)
        profiler.disable()
        wall = time.perf_counter() - start
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    console.print(f"execute() + the task's chain read: {wall / len(ids) * 1e3:.1f} ms per job")
    console.print(out.getvalue())


@dataclass
class Figures:
    jobs: int
    latency_samples: int
    raw_before_s: float
    raw_after_s: float
    raw_jobs_per_s: float
    market_to_commit_s: float
    market_to_result_s: float
    market_jobs_per_s: float
    throughput_ratio: float
    market_latency_p50_s: float
    market_latency_p95_s: float
    raw_latency_p50_s: float
    raw_latency_p95_s: float
    latency_ratio_p50: float
    #: The same single jobs on a devnet that only polls (no wake-ups on blocks or results).
    polling_latency_p50_s: float
    polling_latency_p95_s: float
    settle_last_s: float
    commit_to_close_p50_s: float
    challenge_window_s: int
    result_verified: bool


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs in the bulk batch (50)")
    parser.add_argument("--latency", type=int, default=10, help="sequential jobs for latency")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile a worker's execute() of 20 jobs"
    )
    args = parser.parse_args(argv)
    console = Console(width=max(150, Console().width))
    with devnet(providers=1, audit_bps=AUDIT_FLOOR) as net, requester(net) as req:
        raw = start_raw_worker(net.state.redis_url, net.dir / "logs" / "raw-worker.log")
        try:
            tracker = Tracker.from_now(net)

            tracker.wait(req.submit_many([draft(999_999)]), "result")  # warm-up
            raw_before = raw.batch(args.jobs, 1_000)

            t0 = time.perf_counter()
            ids = req.submit_many([draft(i) for i in range(args.jobs)])
            seen = tracker.wait(ids, "result")
            to_commit = max(m.committed or 0.0 for m in seen.values()) - t0
            to_result = max(m.result or 0.0 for m in seen.values()) - t0
            console.log(f"marketplace batch: {to_result:.2f} s to the last result")
            raw_after = raw.batch(args.jobs, 2_000)

            closed = tracker.wait(ids, "closed")
            settle_last = max(m.closed or 0.0 for m in closed.values()) - t0
            commit_to_close = [(m.closed or 0.0) - (m.committed or 0.0) for m in closed.values()]
            verified = req.result(ids[0]).ok

            market_stages = latencies(req, net.state.redis_url, args.latency, 10_000)
            market_lat = [st.total for st in market_stages]
            raw_lat = [raw.round_trip(20_000 + i) for i in range(max(args.latency, 20))]
            if args.profile:
                profile_execute(req, ids[:20], console)
        finally:
            raw.stop()

    # The same jobs on a devnet whose relayer, agent and requester only poll (every 0.25 s).
    with (
        devnet(providers=1, audit_bps=AUDIT_FLOOR, wake_on_events=False) as net,
        Requester(
            net.w3, net.deployment, net.requester_account(), net.api_url, poll_interval=POLLING
        ) as req,
    ):
        (warm,) = req.submit_many([draft(999_999)])
        req.wait(warm, until="result", timeout=120)
        polling_stages = latencies(req, net.state.redis_url, args.latency, 30_000)
        polling_lat = [st.total for st in polling_stages]

    raw_s = (raw_before + raw_after) / 2
    raw_rate = args.jobs / raw_s
    market_rate = args.jobs / to_result
    fig = Figures(
        jobs=args.jobs,
        latency_samples=args.latency,
        raw_before_s=raw_before,
        raw_after_s=raw_after,
        raw_jobs_per_s=raw_rate,
        market_to_commit_s=to_commit,
        market_to_result_s=to_result,
        market_jobs_per_s=market_rate,
        throughput_ratio=ratio(market_rate, raw_rate),
        market_latency_p50_s=statistics.median(market_lat),
        market_latency_p95_s=percentile(market_lat, 95),
        raw_latency_p50_s=statistics.median(raw_lat),
        raw_latency_p95_s=percentile(raw_lat, 95),
        latency_ratio_p50=ratio(statistics.median(market_lat), statistics.median(raw_lat)),
        polling_latency_p50_s=statistics.median(polling_lat),
        polling_latency_p95_s=percentile(polling_lat, 95),
        settle_last_s=settle_last,
        commit_to_close_p50_s=statistics.median(commit_to_close),
        challenge_window_s=DEVNET_PARAMS.challenge_window,
        result_verified=verified,
    )

    table = Table(
        title=f"end to end: {args.jobs} matmul jobs (n={N}) in bulk, 1 provider x 1 worker "
        "(ratio vs raw Celery on the same Redis, same run)"
    )
    for column in ("path", "batch s", "jobs/s", "vs raw Celery"):
        table.add_column(column, justify="right")
    table.add_row("raw Celery (mean of before/after)", f"{raw_s:.2f}", f"{raw_rate:.1f}", "1.00x")
    table.add_row(
        "marketplace, to last commit",
        f"{to_commit:.2f}",
        f"{args.jobs / to_commit:.1f}",
        f"{ratio(args.jobs / to_commit, raw_rate):.2f}x",
    )
    table.add_row(
        "marketplace, to last result available",
        f"{to_result:.2f}",
        f"{market_rate:.1f}",
        f"{fig.throughput_ratio:.2f}x",
    )
    console.print(table)
    lat = Table(title=f"latency of one job ({args.latency} sequential jobs)")
    for column in ("path", "p50 s", "p95 s", "p50 vs raw"):
        lat.add_column(column, justify="right")
    lat.add_row(
        "raw Celery round trip",
        f"{fig.raw_latency_p50_s:.3f}",
        f"{fig.raw_latency_p95_s:.3f}",
        "1x",
    )
    lat.add_row(
        "marketplace, polling only (0.25 s), submit -> result",
        f"{fig.polling_latency_p50_s:.3f}",
        f"{fig.polling_latency_p95_s:.3f}",
        f"{ratio(fig.polling_latency_p50_s, fig.raw_latency_p50_s):.0f}x",
    )
    lat.add_row(
        "marketplace submit -> result available",
        f"{fig.market_latency_p50_s:.3f}",
        f"{fig.market_latency_p95_s:.3f}",
        f"{fig.latency_ratio_p50:.0f}x",
    )
    console.print(lat)
    stages = Table(title="where one job's latency goes (p50 s of each stage, same jobs)")
    for column in ("stage", "polling only", "woken by events"):
        stages.add_column(column, justify="right")
    for name, label in (
        ("submit", "submit: uploads, create transaction"),
        ("to_worker_done", "match, assign, pick-up, Celery, execute"),
        ("to_result", "commit, requester's wake-up and reads"),
    ):
        stages.add_row(
            label, f"{_p50(polling_stages, name):.3f}", f"{_p50(market_stages, name):.3f}"
        )
    console.print(stages)
    console.print(
        f"settlement: last of {args.jobs} jobs closed {settle_last:.1f} s after the submit; "
        f"commit -> settled p50 {fig.commit_to_close_p50_s:.1f} s "
        f"(challenge window {fig.challenge_window_s} s); result verified: {verified}"
    )
    verdict = "meets" if fig.throughput_ratio >= GOAL else "MISSES"
    console.print(f"throughput ratio {fig.throughput_ratio:.2f} {verdict} the {GOAL} goal")
    result: dict[str, Any] = {
        "goal_ratio": GOAL,
        "matmul_n": N,
        **asdict(fig),
        "stages_p50_s": {
            kind: {name: _p50(st, name) for name in ("submit", "to_worker_done", "to_result")}
            for kind, st in (("events", market_stages), ("polling", polling_stages))
        },
    }
    write_result("e2e", result)
    return result


if __name__ == "__main__":
    main()
