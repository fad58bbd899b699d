"""Matcher throughput: open jobs matched per second at 100, 1,000 and 10,000 providers.

One call of `match` serves 10,000 open jobs (two profiles, replicas 1, 3 or 5, mixed VRAM needs,
exec windows and requesters, a few exclusions) against a seeded random provider population; the
whole call is timed (indexing included) with time.perf_counter, REPEATS times, and the median
kept. Time per job at N providers is compared with time per job at 100 providers measured in the
same run: a matcher that scanned every provider per job would grow 100x from 100 to 10,000
providers.

Three scenarios:
- ample: every provider has stake for all its jobs and there is no load cap, so (nearly) every
  job is assigned at every size and the ratio compares like with like;
Providers register their own minimum exec window (0, 60 s or 1 h) and most units per job;
collateral is the collateral multiple x units x the clearing price (the highest ask chosen).

- constrained: stakes of 1,000..40,000 against collaterals of ~100..2,000 and max_load=8, so
  small populations run out (their skipped jobs are cheap) and 10,000 providers serve almost all,
  so time per job grows with the share of jobs assigned; time per assigned job is shown beside;
- skewed: stakes log-uniform over 100..100,000 and jobs of 1..100 units (collateral ~100..30,000),
  no load cap: big jobs must pass over the many small-stake providers (the stake tiers at work).

    .venv/bin/python -m bench.matcher        (or: make bench)
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from marketplace.matching.matcher import UNLIMITED_UNITS, OpenJob, ProviderView, match

RESULTS = Path(__file__).parent / "results" / "matcher.json"
PROVIDER_COUNTS = (100, 1_000, 10_000)
JOBS = 10_000
REPEATS = 5
MAX_LOAD = 8
COLLATERAL_MULTIPLE = 2
SEED = 20_261_121
GOAL_JOBS_PER_S = 5_000
SCENARIOS = ("ample", "constrained", "skewed")


def providers(n: int, rng: random.Random, scenario: str) -> list[ProviderView]:
    """A provider population: mostly healthy, some unbonding, silent or unregistered."""
    out = []
    for _ in range(n):
        gpu = rng.random() < 0.6
        if scenario == "ample":
            free_stake = 10**15
        elif scenario == "skewed":
            free_stake = round(10 ** rng.uniform(2, 5))
        else:
            free_stake = rng.randint(1, 40) * 1_000
        out.append(
            ProviderView(
                address=f"0x{rng.getrandbits(160):040x}",
                profile_mask=rng.choice((0b01, 0b10, 0b11)),
                vram_gib=rng.choice((8, 16, 24, 40, 80)) if gpu else 0,
                price_per_unit=rng.randint(50, 150),
                free_stake=free_stake,
                unbonding=rng.random() < 0.02,
                registered=rng.random() < 0.99,
                live=rng.random() < 0.95,
                jobs_done=rng.randint(0, 500),
                jobs_slashed=rng.choice((0, 0, 0, 0, 1, 2)),
                load=rng.randint(0, 3),
                min_exec_window=rng.choice((0, 0, 60, 3_600)),
                max_units=rng.choice((UNLIMITED_UNITS, UNLIMITED_UNITS, 50)),
            )
        )
    return out


def open_jobs(n: int, rng: random.Random, addresses: list[str], scenario: str) -> list[OpenJob]:
    """Open jobs: two profiles, 70% replicas=1, 20% replicas=3, 10% replicas=5."""
    out = []
    for job_id in range(1, n + 1):
        units = round(10 ** rng.uniform(0, 2)) if scenario == "skewed" else rng.randint(1, 5)
        max_price = rng.randint(80, 200)
        exclude = frozenset(rng.sample(addresses, 2)) if rng.random() < 0.05 else frozenset()
        out.append(
            OpenJob(
                job_id=job_id,
                profile=rng.randint(0, 1),
                units=units,
                max_price_per_unit=max_price,
                replicas=rng.choices((1, 3, 5), weights=(70, 20, 10))[0],
                min_vram_gib=rng.choice((0, 0, 0, 8, 16, 40)),
                collateral_multiple=COLLATERAL_MULTIPLE,
                exec_window=rng.choice((600, 3_600, 3_600, 7_200)),
                requester=rng.choice(addresses),
                exclude=exclude,
            )
        )
    return out


@dataclass
class Row:
    scenario: str
    providers: int
    jobs: int
    assigned: int
    median_s: float
    min_s: float
    jobs_per_s: float
    us_per_job: float
    us_per_assigned_job: float
    providers_ratio: float = 1.0
    time_per_job_ratio: float = 1.0


def measure(scenario: str, n_providers: int) -> Row:
    rng = random.Random(SEED + n_providers)
    pool = providers(n_providers, rng, scenario)
    jobs = open_jobs(JOBS, rng, [p.address for p in pool], scenario)
    max_load = MAX_LOAD if scenario == "constrained" else None
    match(jobs, pool, max_load=max_load)  # warm-up
    times = []
    assigned = 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = match(jobs, pool, max_load=max_load)
        times.append(time.perf_counter() - start)
        assigned = len(result)
    median = statistics.median(times)
    return Row(
        scenario=scenario,
        providers=n_providers,
        jobs=JOBS,
        assigned=assigned,
        median_s=median,
        min_s=min(times),
        jobs_per_s=JOBS / median,
        us_per_job=median / JOBS * 1e6,
        us_per_assigned_job=median / max(assigned, 1) * 1e6,
    )


def main() -> dict[str, object]:
    console = Console(width=max(120, Console().width))
    rows = [measure(scenario, n) for scenario in SCENARIOS for n in PROVIDER_COUNTS]
    table = Table(
        title=f"matcher: {JOBS:,} open jobs per call, median of {REPEATS} "
        f"(ratios vs {PROVIDER_COUNTS[0]} providers, same run)"
    )
    for column in (
        "scenario",
        "providers",
        "assigned",
        "call ms",
        "jobs/s",
        "µs/job",
        "µs/assigned",
        "providers ratio",
        "µs/job ratio",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        base = next(r for r in rows if r.scenario == row.scenario)
        row.providers_ratio = row.providers / base.providers
        row.time_per_job_ratio = row.us_per_job / base.us_per_job
        table.add_row(
            row.scenario,
            f"{row.providers:,}",
            f"{row.assigned:,}",
            f"{row.median_s * 1e3:,.1f}",
            f"{row.jobs_per_s:,.0f}",
            f"{row.us_per_job:.1f}",
            f"{row.us_per_assigned_job:.1f}",
            f"{row.providers_ratio:.0f}x",
            f"{row.time_per_job_ratio:.2f}x",
        )
    console.print(table)
    for row in rows:
        if row.providers == PROVIDER_COUNTS[-1]:
            verdict = "meets" if row.jobs_per_s >= GOAL_JOBS_PER_S else "MISSES"
            console.print(
                f"{row.scenario}: {row.jobs_per_s:,.0f} jobs/s at {row.providers:,} providers "
                f"{verdict} the {GOAL_JOBS_PER_S:,} jobs/s goal"
            )
    result: dict[str, object] = {
        "jobs": JOBS,
        "repeats": REPEATS,
        "max_load_constrained": MAX_LOAD,
        "seed": SEED,
        "goal_jobs_per_s": GOAL_JOBS_PER_S,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rows": [asdict(row) for row in rows],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
