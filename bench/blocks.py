"""Latency of one job on a chain with real block times, against the limit the blocks set.

A devnet that mines a block every `--block-time` seconds and nothing else (no automine), with
the relayer and the provider agents `--confirmations` blocks behind the head. M tiny matmul jobs
(n=8) one at a time: submit -> result available, as the requester's own `wait` sees it (woken
by new blocks over WebSocket). Beside each figure, the least time the blocks allow
(docs/performance.md derives it):

    limit = N/2 + (2c + 2) * N        (N block time, c confirmations)

the create transaction waits for the next block (N/2 on average), the relayer acts c blocks
later and its assignment lands in the block after (c + 1 blocks), the agent acts c blocks after
that and its commit lands in the next block (c + 1 more; the work itself is far shorter than a
block), and the requester follows the head. The blocks each job spent per phase are read from
its events and set against the c + 1 per phase that phase needs.

    .venv/bin/python -m bench.blocks [--block-time 2] [--confirmations 2] [--latency 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import AUDIT_FLOOR, devnet, percentile, requester, write_result
from marketplace.devnet.manager import PRICE_PER_UNIT
from marketplace.requester.inputs import JobDraft

N = 8


def limit_s(block_time: float, confirmations: int) -> float:
    """The least mean latency, submit -> result available, the blocks allow."""
    return block_time / 2 + (2 * confirmations + 2) * block_time


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block-time", type=float, default=2.0, help="seconds per block (2)")
    parser.add_argument("--confirmations", type=int, default=2, help="blocks behind (2)")
    parser.add_argument("--latency", type=int, default=8, help="sequential jobs (8)")
    args = parser.parse_args(argv)
    console = Console(width=max(120, Console().width))
    block, conf = args.block_time, args.confirmations
    with (
        devnet(providers=1, audit_bps=AUDIT_FLOOR, block_time=block, confirmations=conf) as net,
        requester(net) as req,
    ):
        events = net.owner().market.events

        def draft(seed: int) -> JobDraft:
            return JobDraft("matmul", PRICE_PER_UNIT, parameters={"n": N, "seed": seed})

        (warm,) = req.submit_many([draft(999_999)])
        req.wait(warm, until="result", timeout=300)
        latencies, to_assign, to_commit = [], [], []
        for i in range(args.latency):
            start = time.perf_counter()
            (job,) = req.submit_many([draft(10_000 + i)])
            req.wait(job, until="result", timeout=300)
            latencies.append(time.perf_counter() - start)
            span = {"argument_filters": {"jobId": job}, "from_block": net.deployment.block}
            created = events.JobCreated().get_logs(**span)[0]["blockNumber"]
            assigned = events.ProviderAssigned().get_logs(**span)[0]["blockNumber"]
            committed = events.ResultCommitted().get_logs(**span)[0]["blockNumber"]
            to_assign.append(assigned - created)
            to_commit.append(committed - assigned)

    limit = limit_s(block, conf)
    p50 = statistics.median(latencies)
    result: dict[str, Any] = {
        "block_time_s": block,
        "confirmations": conf,
        "samples": args.latency,
        "latency_p50_s": p50,
        "latency_p95_s": percentile(latencies, 95),
        "limit_s": limit,
        "over_limit_blocks_p50": (p50 - limit) / block,
        "blocks_create_to_assign_p50": statistics.median(to_assign),
        "blocks_assign_to_commit_p50": statistics.median(to_commit),
        "blocks_per_phase_minimum": conf + 1,
    }
    table = Table(
        title=f"one job on a {block:g} s chain, {conf} confirmations ({args.latency} jobs, "
        "1 provider, matmul n=8)"
    )
    for column in ("figure", "measured", "limit", "over the limit"):
        table.add_column(column, justify="right")
    table.add_row(
        "submit -> result available, p50 s",
        f"{p50:.2f}",
        f"{limit:.2f}",
        f"{result['over_limit_blocks_p50']:+.2f} blocks",
    )
    for name, key in (
        ("blocks JobCreated -> ProviderAssigned, p50", "blocks_create_to_assign_p50"),
        ("blocks ProviderAssigned -> ResultCommitted, p50", "blocks_assign_to_commit_p50"),
    ):
        table.add_row(name, f"{result[key]:g}", str(conf + 1), f"{result[key] - conf - 1:+g}")
    console.print(table)
    within = "within" if result["over_limit_blocks_p50"] <= 1 else "MORE than"
    console.print(f"p50 is {within} one block of the limit")
    write_result(f"blocks-{block:g}s-{conf}c", result)
    return result


if __name__ == "__main__":
    main()
