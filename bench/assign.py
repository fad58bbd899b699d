"""Assignment throughput on Anvil: one assign transaction per job vs assignBatch, same run.

.venv/bin/python -m bench.assign
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, funded_account
from marketplace.protocol.chain import connect

RESULTS = Path(__file__).parent / "results" / "assign.json"
JOBS = 200
BATCH = 50


def main() -> dict[str, float]:
    with Anvil() as node:
        w3 = connect(node.url)
        cast = scenarios.setup(w3, funded_account(w3))
        alice = cast.providers["alice"].address
        request = scenarios.job_request(1)

        single_ids = cast.requester.create_jobs([request] * JOBS)
        start = time.perf_counter()
        for job in single_ids:
            cast.matcher.assign(job, [alice])
        single = time.perf_counter() - start

        batch_ids = cast.requester.create_jobs([request] * JOBS)
        start = time.perf_counter()
        for i in range(0, JOBS, BATCH):
            cast.matcher.assign_batch([(job, [alice]) for job in batch_ids[i : i + BATCH]])
        batched = time.perf_counter() - start
        assert all(cast.owner.state(j) == scenarios.JobState.ASSIGNED for j in batch_ids)

    result = {
        "jobs": JOBS,
        "batch": BATCH,
        "single_jobs_per_s": JOBS / single,
        "batched_jobs_per_s": JOBS / batched,
        "ratio": single / batched,
    }
    table = Table(title=f"assignments on Anvil, {JOBS} jobs (same run)")
    table.add_column("mode")
    table.add_column("jobs/s", justify="right")
    table.add_column("vs one tx per job", justify="right")
    table.add_row("one transaction per job", f"{result['single_jobs_per_s']:,.0f}", "1.00x")
    table.add_row(
        f"assignBatch, {BATCH} per transaction",
        f"{result['batched_jobs_per_s']:,.0f}",
        f"{result['ratio']:.2f}x",
    )
    Console().print(table)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
