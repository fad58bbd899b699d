"""Provider throughput per kind and real work through the marketplace.

A devnet with one honest provider (one Celery worker, concurrency 1, audits off) gets a batch of
N jobs of each kind in one `submit_many`; the tracker timestamps, per job, the assignment, the
commit and the relayer's result notice (bench/common.py). Against it, the same specs run in this
process, one after another: `run_spec` on the same inputs plus the digest, which is the torch
work a worker does for the job. Both after a warm-up job (worker: torch import and model load).

    marketplace jobs/s to commit  = N / (last commit seen - submit started)
    marketplace jobs/s to result  = N / (last result notice seen - submit started)
    ratio                         = marketplace jobs/s / direct jobs/s

Kinds: matmul (n=128), embed (32 sentences, all-MiniLM-L6-v2, CPU), torchscript (a two-layer MLP
on a 32x64 input). The embed row has a goal: at least 0.8 of direct, to result available.
One result per kind is downloaded, decrypted and checked against the direct digest.

    .venv/bin/python -m bench.provider [--jobs N] [--kinds matmul,embed,torchscript]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Sets the CPU profile's environment (MKL, ATen, oneDNN) before torch computes anything here.
import provider.runtime.determinism  # noqa: F401  isort: skip
from bench.common import AUDIT_FLOOR, Tracker, devnet, ratio, requester, task_records, write_result
from marketplace.devnet.manager import PRICE_PER_UNIT
from marketplace.protocol.digest import digest
from marketplace.requester.inputs import JobDraft
from marketplace.requester.sdk import Requester
from provider.execute import run_spec

KINDS = ("matmul", "embed", "torchscript")
GOAL_EMBED = 0.8
SENTENCES = [
    "The relayer matches open jobs to staked providers.",
    "A provider commits the hash of its result before revealing it.",
    "Gradient descent finds a local minimum of the loss.",
    "The cat sat quietly on the warm windowsill.",
    "Escrow is released once the challenge window has passed.",
    "Sentence embeddings map text to points in a vector space.",
    "Redis brokers the Celery tasks of every worker.",
    "Determinism profiles pin the torch version and the device class.",
]


def _sentences(job: int) -> tuple[str, ...]:
    return tuple(f"{SENTENCES[i % len(SENTENCES)]} (job {job}, line {i})" for i in range(32))


def _torchscript_files(directory: Path) -> tuple[Path, Path]:
    import safetensors.torch
    import torch

    torch.manual_seed(0)
    module = torch.jit.script(
        torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    )
    model = directory / "mlp.pt"
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    model.write_bytes(buffer.getvalue())
    inputs = directory / "input.safetensors"
    safetensors.torch.save_file({"input": torch.randn(32, 64)}, str(inputs))
    return model, inputs


def drafts(kind: str, count: int, first: int, files: tuple[Path, Path]) -> list[JobDraft]:
    price = PRICE_PER_UNIT
    if kind == "matmul":
        return [
            JobDraft("matmul", price, parameters={"n": 128, "seed": first + i})
            for i in range(count)
        ]
    if kind == "embed":
        return [
            JobDraft("embed", price, sentences=_sentences(first + i), parameters={})
            for i in range(count)
        ]
    model, inputs = files
    return [JobDraft("torchscript", price, model=model, inputs=(inputs,)) for _ in range(count)]


@dataclass
class Row:
    kind: str
    jobs: int
    direct_jobs_per_s: float
    to_commit_jobs_per_s: float
    to_result_jobs_per_s: float
    commit_ratio: float
    result_ratio: float
    #: Medians per job, seconds: submit -> assigned, assigned -> worker done, worker done ->
    #: commit seen, commit -> result notice seen; and `execute` inside the worker.
    submit_to_assign_s: float
    assign_to_worker_done_s: float
    worker_done_to_commit_s: float
    commit_to_result_s: float
    worker_execute_s: float
    direct_per_job_s: float
    digest_matches: bool


def direct(req: Requester, batch: list[JobDraft], profile: str) -> tuple[float, bytes]:
    """Seconds to run every draft's spec here (after one warm-up) and the first digest."""
    prepared = [req.prepare(d) for d in batch]

    def run(i: int) -> bytes:
        p = prepared[i]
        return digest(profile, run_spec(p.spec, p.artifacts.__getitem__, profile))

    first = run(0)  # warm-up (imports, model load)
    start = time.perf_counter()
    for i in range(len(prepared)):
        run(i)
    return time.perf_counter() - start, first


def measure(
    req: Requester,
    tracker: Tracker,
    kind: str,
    count: int,
    files: tuple[Path, Path],
    redis_url: str,
    say: Callable[[str], None],
    workers: int = 1,
) -> Row:
    from provider.runtime.device import profile_name

    profile = profile_name()
    warm = req.submit_many(drafts(kind, workers, 10_000, files))  # one per worker process
    tracker.wait(warm, "result")
    batch = drafts(kind, count, 0, files)
    t0 = time.perf_counter()
    t0_unix = time.time()
    ids = req.submit_many(batch)
    seen = tracker.wait(ids, "result")
    last_commit = max(m.committed or 0.0 for m in seen.values())
    last_result = max(m.result or 0.0 for m in seen.values())
    say(f"{kind}: marketplace batch done in {last_result - t0:.2f} s")

    records = {r.job_id: r for r in task_records(redis_url) if r.job_id in seen}
    offset = t0 - t0_unix  # unix -> perf_counter
    assign, work, commit, notice, execute_s = [], [], [], [], []
    for job, m in seen.items():
        assert m.assigned is not None and m.committed is not None and m.result is not None
        assign.append(m.assigned - t0)
        notice.append(m.result - m.committed)
        rec = records.get(job)
        if rec is not None:
            done = rec.done_at + offset
            work.append(done - m.assigned)
            commit.append(m.committed - done)
            execute_s.append(rec.seconds)

    direct_s, direct_digest = direct(req, batch, profile)
    say(f"{kind}: direct loop done in {direct_s:.2f} s")
    got = req.result(ids[0])
    direct_rate = count / direct_s
    commit_rate = count / (last_commit - t0)
    result_rate = count / (last_result - t0)
    med = statistics.median
    return Row(
        kind=kind,
        jobs=count,
        direct_jobs_per_s=direct_rate,
        to_commit_jobs_per_s=commit_rate,
        to_result_jobs_per_s=result_rate,
        commit_ratio=ratio(commit_rate, direct_rate),
        result_ratio=ratio(result_rate, direct_rate),
        submit_to_assign_s=med(assign),
        assign_to_worker_done_s=med(work) if work else float("nan"),
        worker_done_to_commit_s=med(commit) if commit else float("nan"),
        commit_to_result_s=med(notice),
        worker_execute_s=med(execute_s) if execute_s else float("nan"),
        direct_per_job_s=direct_s / count,
        digest_matches=got.digest == direct_digest,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs per kind (default 20)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="jobs the provider's worker runs at once; torch threads are split among them "
        "(default 2: one thread each on two cores)",
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    console = Console(width=max(150, Console().width))
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        devnet(providers=1, audit_bps=AUDIT_FLOOR, workers_per_provider=args.workers) as net,
    ):
        files = _torchscript_files(Path(tmp))
        with requester(net) as req:
            tracker = Tracker.from_now(net)
            for kind in kinds:
                rows.append(
                    measure(
                        req,
                        tracker,
                        kind,
                        args.jobs,
                        files,
                        net.state.redis_url,
                        console.log,
                        args.workers,
                    )
                )

    table = Table(
        title=f"provider throughput: {args.jobs} jobs per kind, 1 provider, {args.workers} at once "
        "(ratios vs the same torch work in one process, same run)"
    )
    for column in (
        "kind",
        "direct jobs/s",
        "to commit jobs/s",
        "ratio",
        "to result jobs/s",
        "ratio",
        "execute s",
        "direct s",
        "digest ok",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.kind,
            f"{r.direct_jobs_per_s:.1f}",
            f"{r.to_commit_jobs_per_s:.1f}",
            f"{r.commit_ratio:.2f}x",
            f"{r.to_result_jobs_per_s:.1f}",
            f"{r.result_ratio:.2f}x",
            f"{r.worker_execute_s:.3f}",
            f"{r.direct_per_job_s:.3f}",
            "yes" if r.digest_matches else "NO",
        )
    console.print(table)
    stages = Table(title="median seconds per job, by stage (as the requester sees them)")
    for column in (
        "kind",
        "submit->assigned",
        "assigned->worker done",
        "worker done->commit",
        "commit->result notice",
    ):
        stages.add_column(column, justify="right")
    for r in rows:
        stages.add_row(
            r.kind,
            f"{r.submit_to_assign_s:.2f}",
            f"{r.assign_to_worker_done_s:.2f}",
            f"{r.worker_done_to_commit_s:.2f}",
            f"{r.commit_to_result_s:.2f}",
        )
    console.print(stages)
    for r in rows:
        if r.kind == "embed":
            verdict = "meets" if r.result_ratio >= GOAL_EMBED else "MISSES"
            console.print(
                f"embed: {r.to_result_jobs_per_s:.2f} jobs/s through the marketplace, "
                f"{r.result_ratio:.2f}x direct: {verdict} the {GOAL_EMBED}x goal"
            )
    result: dict[str, Any] = {
        "jobs_per_kind": args.jobs,
        "providers": 1,
        "worker_concurrency": args.workers,
        "goal_embed_ratio": GOAL_EMBED,
        "rows": [asdict(r) for r in rows],
    }
    write_result("provider", result)
    return result


if __name__ == "__main__":
    main()
