"""Verification cost: executions per accepted job with optimistic audits vs replicas=3.

A devnet with 1 + k honest providers (k = 3 verifiers, so an audit always finds them) and the
audit rate p (10 % by default). N replicas=1 jobs (matmul n=64) run to a terminal state; then
N / 2 replicas=3 jobs, the "replicate everything" baseline, on the same devnet. Executions are
counted twice, from two independent sources:

- commits: ResultCommitted events of the batch's jobs on-chain (one per executor or verifier
  that delivered a result);
- worker runs: `depin.execute` task results with status "done" in the Celery result backend
  (one per (job, round, role, provider); a re-delivered task overwrites its own result).

    executions per accepted job = executions / jobs that settled
    expected (optimistic)       = 1 + p * k          (1.3 at p = 10 %, k = 3)
    expected (replicas = 3)     = 3

With N = 40 the number of audited jobs is Binomial(40, 0.1): 4 on average, from 0 to 8 in 95 %
of runs, so the measured ratio moves by about +-0.15 from run to run; the table also shows the
expected value at the audit share actually drawn. --jobs raises N.

    .venv/bin/python -m bench.verification [--jobs N] [--audit-bps 1000]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Tracker, devnet, ratio, requester, task_records, write_result
from marketplace.devnet.manager import PRICE_PER_UNIT
from marketplace.protocol.client import JobState
from marketplace.requester.inputs import JobDraft
from marketplace.requester.sdk import Requester

VERIFIERS = 3


@dataclass
class Row:
    mode: str
    jobs: int
    settled: int
    audited: int
    commits: int
    worker_runs: int
    commits_per_accepted: float
    runs_per_accepted: float
    expected_per_job: float
    expected_at_drawn_rate: float
    wall_s: float


def run_batch(
    req: Requester, tracker: Tracker, count: int, replicas: int, first_seed: int
) -> tuple[list[int], float]:
    drafts = [
        JobDraft(
            "matmul",
            PRICE_PER_UNIT,
            parameters={"n": 64, "seed": first_seed + i},
            replicas=replicas,
        )
        for i in range(count)
    ]
    start = time.perf_counter()
    ids = req.submit_many(drafts)
    tracker.wait(ids, "closed", timeout=900)
    return ids, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40, help="replicas=1 jobs (40)")
    parser.add_argument("--audit-bps", type=int, default=1_000, help="audit rate p in bps (1000)")
    args = parser.parse_args(argv)
    p = args.audit_bps / 10_000
    console = Console(width=max(160, Console().width))
    rows: list[Row] = []
    with devnet(providers=1 + VERIFIERS, audit_bps=args.audit_bps) as net, requester(net) as req:
        tracker = Tracker.from_now(net)
        owner = net.owner()
        for mode, count, replicas, seed in (
            (f"optimistic p={p:.0%} k={VERIFIERS}", args.jobs, 1, 0),
            ("replicas=3", max(args.jobs // 2, 1), 3, 100_000),
        ):
            ids, wall = run_batch(req, tracker, count, replicas, seed)
            console.log(f"{mode}: {count} jobs closed in {wall:.1f} s")
            settled = [j for j in ids if owner.state(j) == JobState.SETTLED]
            wanted = set(ids)
            drawn_logs = owner.market.events.AuditDrawn().get_logs(from_block=tracker.start_block)
            audited = sum(
                1 for e in drawn_logs if e["args"]["audited"] and int(e["args"]["jobId"]) in wanted
            )
            commits = sum(tracker.jobs[j].commits for j in ids)
            runs = Counter(
                r.job_id
                for r in task_records(net.state.redis_url)
                if r.job_id in wanted and r.status == "done"
            )
            worker_runs = sum(runs.values())
            expected = 1 + p * VERIFIERS if replicas == 1 else float(replicas)
            drawn = 1 + audited / count * VERIFIERS if replicas == 1 else float(replicas)
            rows.append(
                Row(
                    mode=mode,
                    jobs=count,
                    settled=len(settled),
                    audited=audited,
                    commits=commits,
                    worker_runs=worker_runs,
                    commits_per_accepted=ratio(commits, len(settled)),
                    runs_per_accepted=ratio(worker_runs, len(settled)),
                    expected_per_job=expected,
                    expected_at_drawn_rate=drawn,
                    wall_s=wall,
                )
            )

    table = Table(
        title=f"verification cost: executions per accepted job, {1 + VERIFIERS} honest providers "
        "(same run)"
    )
    for column in (
        "mode",
        "jobs",
        "settled",
        "audited",
        "commits",
        "worker runs",
        "commits/job",
        "runs/job",
        "expected 1+p·k",
        "at drawn audits",
        "vs replicas=3",
    ):
        table.add_column(column, justify="right")
    base = rows[-1].runs_per_accepted
    for r in rows:
        table.add_row(
            r.mode,
            str(r.jobs),
            str(r.settled),
            str(r.audited),
            str(r.commits),
            str(r.worker_runs),
            f"{r.commits_per_accepted:.2f}",
            f"{r.runs_per_accepted:.2f}",
            f"{r.expected_per_job:.2f}",
            f"{r.expected_at_drawn_rate:.2f}",
            f"{ratio(r.runs_per_accepted, base):.2f}x",
        )
    console.print(table)
    result: dict[str, Any] = {
        "audit_bps": args.audit_bps,
        "verifiers": VERIFIERS,
        "providers": 1 + VERIFIERS,
        "rows": [asdict(r) for r in rows],
    }
    write_result("verification", result)
    return result


if __name__ == "__main__":
    main()
