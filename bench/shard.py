"""Sharded embed through the marketplace vs one direct run, in one bench.

A devnet with four honest providers (each one Celery worker, concurrency 1). A corpus of
synthetic sentences (10,000 by default) is embedded:

- directly, in this process, on one torch thread (what one worker does with one job);
- through the marketplace as 1, 2 and 4 shards (`Requester.submit_sharded`): the time runs from
  the start of the submit to the moment every shard's result is announced, then the shards are
  downloaded, verified against their commitments and merged (timed apart). A warm-up group
  first gives every worker a job, so model loading is not timed.

    speedup(N)           = direct seconds / marketplace seconds with N shards
    overhead per shard   = (marketplace seconds - direct seconds / min(N, cores)) / N

The speedup is bounded by the cores the workers share: on a 2-core machine four workers run at
most two shards at a time, so 4 shards cannot beat 2 by much; the table says how many cores
there were. Every merge is compared with the direct run: bit-exact with --batch-size 1; with
batches, padding differs between a shard and the whole set (docs/workloads.md), and the table
gives the largest difference.

    .venv/bin/python -m bench.shard [--sentences N] [--shards 1,2,4] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.common import devnet, write_result
from marketplace.devnet.manager import PRICE_PER_UNIT
from marketplace.requester.inputs import JobDraft
from marketplace.requester.sdk import Requester

WORDS = [
    *[
        "compute",
        "market",
        "provider",
        "escrow",
        "shard",
        "batch",
        "model",
        "tensor",
        "verify",
        "commit",
        "settle",
        "token",
    ],
    *[
        "latency",
        "throughput",
        "embedding",
        "sentence",
        "chain",
        "relayer",
        "worker",
        "deterministic",
    ],
]


def corpus(count: int) -> list[str]:
    """`count` distinct sentences of 6 to 25 words, the same on every run."""
    rng = np.random.default_rng(17)
    return [
        f"{i}: " + " ".join(rng.choice(WORDS, size=int(rng.integers(6, 26)))) for i in range(count)
    ]


def direct(sentences: list[str], batch_size: int) -> tuple[float, np.ndarray[Any, Any]]:
    import torch

    from provider.runtime.embed import embed

    torch.set_num_threads(1)
    embed(sentences[:8])  # loads the model outside the timing, as a warm worker has it
    start = time.perf_counter()
    out = embed(sentences, batch_size=batch_size)["embeddings"]
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    counts = [int(x) for x in args.shards.split(",")]
    sentences = corpus(args.sentences)
    cores = os.cpu_count() or 1
    console = Console()

    import provider.runtime.determinism  # noqa: F401  the provider's CPU profile, before torch runs

    direct_s, reference = direct(sentences, args.batch_size)
    console.print(f"direct: {len(sentences)} sentences in {direct_s:.1f} s")
    rows: list[dict[str, Any]] = []
    with (
        # One shard holding the whole corpus runs as long as the direct run, slower on a loaded
        # machine: the workers' time limit leaves it four times that (within the job's window).
        devnet(
            providers=max(counts), task_time_limit=min(3_300, max(300, math.ceil(4 * direct_s)))
        ) as net,
        tempfile.TemporaryDirectory() as shard_dir,
        Requester(
            net.w3,
            net.deployment,
            net.requester_account(),
            net.api_url,
            poll_interval=0.05,
            shard_dir=Path(shard_dir),
        ) as req,
    ):
        for n in counts:
            draft = JobDraft("embed", PRICE_PER_UNIT, sentences=tuple(sentences), exec_window=3_600)
            start = time.perf_counter()
            group = req.submit_sharded(draft, n)
            req.wait_shards(group.group, until="result", timeout=3_600)
            wall = time.perf_counter() - start
            start = time.perf_counter()
            merged = req.shard_result(group.group)
            merge_s = time.perf_counter() - start
            got = merged.outputs["embeddings"]
            exact = bool(np.array_equal(got, reference))
            diff = float(np.abs(got - reference).max())
            overhead = (wall - direct_s / min(n, cores)) / n
            rows.append(
                {
                    "shards": n,
                    "seconds": round(wall, 2),
                    "merge_seconds": round(merge_s, 2),
                    "speedup_vs_direct": round(direct_s / wall, 3),
                    "overhead_per_shard_s": round(overhead, 2),
                    "bit_exact": exact,
                    "max_abs_diff": diff,
                }
            )
            console.print(f"{n} shards: {wall:.1f} s (+{merge_s:.1f} s merge), exact={exact}")
    table = Table(
        title=f"embed {len(sentences)} sentences, batch size {args.batch_size}, {cores} cores"
    )
    for column in (
        "shards",
        "seconds",
        "merge s",
        "speedup vs direct",
        "overhead/shard s",
        "exact",
    ):
        table.add_column(column, justify="right")
    table.add_row("direct", f"{direct_s:.1f}", "-", "1.000", "-", "-")
    for r in rows:
        table.add_row(
            str(r["shards"]),
            f"{r['seconds']:.1f}",
            f"{r['merge_seconds']:.1f}",
            f"{r['speedup_vs_direct']:.3f}",
            f"{r['overhead_per_shard_s']:.2f}",
            "yes" if r["bit_exact"] else f"no ({r['max_abs_diff']:.1e})",
        )
    console.print(table)
    console.print(
        f"bound: with {cores} cores at most {cores} shards run at once, so the speedup over "
        f"the direct run cannot exceed {cores}"
    )
    path = write_result(
        "shard",
        {
            "sentences": len(sentences),
            "batch_size": args.batch_size,
            "direct_seconds": round(direct_s, 2),
            "runs": rows,
        },
    )
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
