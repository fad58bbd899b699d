"""Scale: matcher time per job, relayer memory, gas per operation as the market grows.

1. Matcher time per job at 100 / 1,000 / 10,000 providers: bench/matcher.py's "ample" scenario
   (10,000 open jobs per call, median of 5), reused as is; ratios vs 100 providers.
2. Relayer memory. A relayer's state lives in its database (SQLite here); what it holds in
   memory is what one loop step reads: the provider views, the open jobs, the audits, the match
   and the keeper's scan of non-terminal jobs. Each configuration builds a store directly from
   synthetic rows (providers, jobs with one participant each: 1 % live, half open and half
   committed, the rest settled; no history rows, which the loop does not read), then, in a fresh
   process, runs those reads of a real `Relayer` over it: resident set size (VmRSS) before and
   after, tracemalloc's peak during one step, and the step's time (median of 3). Synthetic rows,
   not replayed events: the listener's event log and history are on disk and not measured.
3. Gas per operation on Anvil (receipts' gasUsed, intrinsic gas included) for createJob, assign,
   commit and finalize of one replicas=1 job, and register + stake of one provider, at a small
   market (10 providers, 10 earlier jobs active on the measured provider) and a larger one (200
   providers, 500 earlier jobs active on it), after one warm-up settlement. Equal figures mean no
   loop over providers or jobs.

    .venv/bin/python -m bench.scale [--providers-large 200] [--jobs-large 500]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert
from web3 import Web3

from bench import matcher as matcher_bench
from bench.common import ratio, write_result
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, funded_account
from marketplace.index.store import JobRow, MarketParamsRow, ParticipantRow, ProviderRow, Store
from marketplace.protocol.chain import connect
from marketplace.protocol.client import JobState, Market, ProviderTerms
from marketplace.protocol.deployment import MarketParams

ROOT = Path(__file__).resolve().parents[1]
TOKEN = 10**18
RELAYER_CONFIGS = ((100, 1_000), (10_000, 1_000), (10_000, 100_000))

# ---------------------------------------------------------------------------- relayer memory


def build_store(url: str, providers: int, jobs: int, seed: int = 7) -> None:
    """A relayer store holding `providers` registered providers and `jobs` jobs."""
    rng = random.Random(seed)
    store = Store(url)
    addresses = [
        Web3.to_checksum_address(f"0x{rng.getrandbits(160):040x}") for _ in range(providers)
    ]
    price = scenarios.PRICE
    params = MarketParams()
    collateral = params.collateral_multiple * scenarios.UNITS * price
    with store.engine.begin() as conn:
        conn.execute(
            insert(MarketParamsRow),
            [{"id": 1, "params": asdict(params), "block_number": 1}],
        )
        conn.execute(
            insert(ProviderRow),
            [
                {
                    "address": a,
                    "registered": True,
                    "profile_mask": 1,
                    "gpu_model": "cpu",
                    "vram_gib": 0,
                    "price_per_unit": price,
                    "endpoint": "",
                    "stake": 1_000 * TOKEN,
                    "locked": 0,
                    "unbonding": 0,
                    "unbond_at": 0,
                    "jobs_done": rng.randint(0, 500),
                    "jobs_slashed": 0,
                    "registered_block": 1,
                    "last_block": 1,
                    "last_heartbeat": None,
                }
                for a in addresses
            ],
        )
        live = max(jobs // 100, 2)
        chunk = 10_000
        for first in range(1, jobs + 1, chunk):
            ids = range(first, min(first + chunk, jobs + 1))
            job_rows, participant_rows = [], []
            for job in ids:
                if job > jobs - live:
                    state = JobState.OPEN if job % 2 else JobState.COMMITTED
                else:
                    state = JobState.SETTLED
                job_rows.append(
                    {
                        "job_id": job,
                        "requester": addresses[0],
                        "state": state,
                        "spec_hash": "0x" + f"{job:064x}",
                        "replicas": 1,
                        "units": scenarios.UNITS,
                        "max_price_per_unit": price,
                        "profile": 0,
                        "min_vram_gib": 0,
                        "accept_window": 3_600,
                        "exec_window": 3_600,
                        "escrow": params.escrow(1, scenarios.UNITS, price),
                        "collateral_multiple": params.collateral_multiple,
                        "collateral": collateral,
                        "fee_bps": params.fee_bps,
                        "min_fee": params.min_fee,
                        "premium_bps": params.premium_bps(1),
                        "clearing_price": price,
                        "accept_by": 2**31,
                        "deadline": None,
                        "round": 0,
                        "audit_round": 0,
                        "seats": 0,
                        "seed_block": None,
                        "staffed": False,
                        "challenged": False,
                        "audited": False,
                        "digest": None,
                        "paid": None,
                        "refunded": None,
                        "fees": None,
                        "burned": None,
                        "created_block": job,
                        "closed_block": None,
                        "last_event": "JobCreated",
                        "last_block": job,
                    }
                )
                if state != JobState.OPEN:
                    participant_rows.append(
                        {
                            "job_id": job,
                            "round": 0,
                            "index": 0,
                            "provider": addresses[job % providers],
                            "verifier": False,
                            "audit_round": 0,
                            "price_per_unit": price,
                            "deadline": 2**31,
                            "collateral": collateral,
                            "assigned_block": job,
                            "commit_block": job,
                            "result_hash": "0x" + "11" * 32,
                            "revealed_digest": None,
                            "slashed": None,
                            "released": state == JobState.SETTLED,
                        }
                    )
            conn.execute(insert(JobRow), job_rows)
            if participant_rows:
                conn.execute(insert(ParticipantRow), participant_rows)
    store.close()


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def relayer_reads(url: str, rpc_url: str, deployment_file: Path) -> dict[str, float]:
    """One relayer step's reads and match over the store at `url` (run in a fresh process)."""
    from marketplace.matching.matcher import match
    from marketplace.relayer.service import Relayer
    from marketplace.relayer.settings import RelayerSettings

    settings = RelayerSettings(
        rpc_url=rpc_url,
        deployment_file=deployment_file,
        private_key="0x" + Account.create().key.hex(),
        db_url=url,
        confirmations=0,
        require_heartbeats=False,
    )
    relayer = Relayer(settings)

    def step() -> tuple[float, float, int, int]:
        t0 = time.perf_counter()
        providers = relayer._provider_views()
        open_jobs = relayer._open_jobs()
        chosen = match(open_jobs, providers)
        t1 = time.perf_counter()
        live = relayer.store.live_job_ids()  # the keeper's scan, as Relayer.step does it
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, len(chosen), len(live)

    rss_before = _rss_mib()
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _rss_mib()
    runs = [step() for _ in range(3)]
    relayer.close()
    return {
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        "tracemalloc_peak_mib": peak / 2**20,
        "match_reads_s": statistics.median(r[0] for r in runs),
        "keeper_scan_s": statistics.median(r[1] for r in runs),
        "assigned": runs[-1][2],
        "live_jobs": runs[-1][3],
    }


@dataclass
class RelayerRow:
    providers: int
    jobs: int
    db_mib: float
    rss_before_mib: float
    rss_after_mib: float
    tracemalloc_peak_mib: float
    match_reads_s: float
    keeper_scan_s: float
    live_jobs: int


def measure_relayer(
    providers: int, jobs: int, rpc_url: str, deployment_file: Path, tmp: Path
) -> RelayerRow:
    db = tmp / f"relayer-{providers}-{jobs}.sqlite3"
    url = f"sqlite:///{db}"
    build_store(url, providers, jobs)
    out = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--_reads", url, rpc_url, str(deployment_file)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return RelayerRow(
        providers=providers,
        jobs=jobs,
        db_mib=db.stat().st_size / 2**20,
        rss_before_mib=figures["rss_before_mib"],
        rss_after_mib=figures["rss_after_mib"],
        tracemalloc_peak_mib=figures["tracemalloc_peak_mib"],
        match_reads_s=figures["match_reads_s"],
        keeper_scan_s=figures["keeper_scan_s"],
        live_jobs=int(figures["live_jobs"]),
    )


# ---------------------------------------------------------------------------- gas


def _gas_since(w3: Web3, block: int) -> int:
    total = 0
    for number in range(block + 1, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number)["transactions"]:
            total += int(w3.eth.get_transaction_receipt(tx)["gasUsed"])  # type: ignore[arg-type]
    return total


def _add_provider(cast: scenarios.Cast) -> tuple[Market, int, int]:
    """A new provider: returns it with the gas of its register and its stake (approve included)."""
    w3 = cast.w3
    key = funded_account(w3)
    cast.owner.mint(key.address, scenarios.PROVIDER_STAKE)
    client = cast.owner.as_account(key)
    start = w3.eth.block_number
    client.register(
        ProviderTerms(profile_mask=0b1, price_per_unit=scenarios.PRICE, gpu_model="cpu")
    )
    register = _gas_since(w3, start)
    start = w3.eth.block_number
    client.stake(scenarios.PROVIDER_STAKE)
    return client, register, _gas_since(w3, start)


def _operations(cast: scenarios.Cast, provider: Market) -> dict[str, int]:
    w3 = cast.w3
    request = scenarios.job_request(1)
    start = w3.eth.block_number
    job = cast.requester.create_job(request)
    gas = {"createJob": _gas_since(w3, start)}
    gas["assign"] = int(cast.matcher.assign(job, [provider.address])["gasUsed"])
    gas["commit"] = int(provider.commit(job, scenarios.GOOD)["gasUsed"])
    # The audit rate has a floor (cheating never pays): clear the draw first so that the job
    # settles unaudited, then time the settlement alone.
    scenarios.draw_clear(cast.keeper, job)
    advance(w3, cast.owner.params().challenge_window + 1)
    gas["finalize"] = int(cast.keeper.finalize(job)["gasUsed"])
    assert cast.owner.state(job) == JobState.SETTLED
    return gas


def _background(cast: scenarios.Cast, provider: Market, count: int) -> None:
    """`count` more jobs, created and assigned to `provider` (left active: collateral locked)."""
    request = scenarios.job_request(1)
    for first in range(0, count, 50):
        ids = cast.requester.create_jobs([request] * min(50, count - first))
        cast.matcher.assign_batch([(job, [provider.address]) for job in ids])


@dataclass
class GasRow:
    providers: int
    active_jobs_on_provider: int
    jobs_created_before: int
    gas: dict[str, int]


def measure_gas(small: tuple[int, int], large: tuple[int, int]) -> list[GasRow]:
    rows = []
    with Anvil() as node:
        w3 = connect(node.url)
        params = MarketParams(challenge_window=10)
        cast = scenarios.setup(w3, funded_account(w3), params=params, providers=0)
        cast.owner.mint(cast.requester.address, 100_000 * TOKEN)
        # Warm the market's pools and the keeper once, as on a running market (bench/gas.py does
        # the same): the first settlement ever writes zero-to-nonzero slots that later ones do not.
        warm, _, _ = _add_provider(cast)
        _operations(cast, warm)
        registered = 1
        created = 0
        for providers, jobs in (small, large):
            register = stake = 0
            provider: Market | None = None
            while registered < providers:
                provider, register, stake = _add_provider(cast)
                registered += 1
            assert provider is not None
            _background(cast, provider, jobs)
            created += jobs
            gas = _operations(cast, provider)
            gas["register"], gas["stake"] = register, stake
            rows.append(GasRow(providers, jobs, created, gas))
    return rows


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers-large", type=int, default=200)
    parser.add_argument("--jobs-large", type=int, default=500)
    parser.add_argument("--_reads", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._reads:
        url, rpc_url, deployment_file = args._reads
        print(json.dumps(relayer_reads(url, rpc_url, Path(deployment_file))))
        return {}
    console = Console(width=max(150, Console().width))

    match_rows = [matcher_bench.measure("ample", n) for n in matcher_bench.PROVIDER_COUNTS]
    table = Table(title="matcher: µs per job, 10,000 open jobs per call (bench/matcher.py, ample)")
    for column in ("providers", "µs/job", "vs 100 providers", "providers ratio"):
        table.add_column(column, justify="right")
    base = match_rows[0]
    for r in match_rows:
        r.providers_ratio = r.providers / base.providers
        r.time_per_job_ratio = r.us_per_job / base.us_per_job
        table.add_row(
            f"{r.providers:,}",
            f"{r.us_per_job:.1f}",
            f"{r.us_per_job / base.us_per_job:.2f}x",
            f"{r.providers // base.providers}x",
        )
    console.print(table)

    with tempfile.TemporaryDirectory() as tmp_name, Anvil() as node:
        tmp = Path(tmp_name)
        w3 = connect(node.url)
        cast = scenarios.setup(w3, funded_account(w3), providers=0)
        deployment_file = tmp / "deployment.json"
        cast.deployment.write(deployment_file)
        relayer_rows = [
            measure_relayer(p, j, node.url, deployment_file, tmp) for p, j in RELAYER_CONFIGS
        ]
    table = Table(
        title="relayer: one loop step's reads over a synthetic store (fresh process each; "
        "ratios vs the first row)"
    )
    for column in (
        "providers",
        "jobs seen",
        "live",
        "db MiB",
        "RSS before",
        "RSS after",
        "tracemalloc peak MiB",
        "match reads s",
        "keeper scan s",
        "step vs first",
    ):
        table.add_column(column, justify="right")
    first = relayer_rows[0]
    for rr in relayer_rows:
        step = rr.match_reads_s + rr.keeper_scan_s
        table.add_row(
            f"{rr.providers:,}",
            f"{rr.jobs:,}",
            f"{rr.live_jobs:,}",
            f"{rr.db_mib:.1f}",
            f"{rr.rss_before_mib:.0f}",
            f"{rr.rss_after_mib:.0f}",
            f"{rr.tracemalloc_peak_mib:.1f}",
            f"{rr.match_reads_s:.3f}",
            f"{rr.keeper_scan_s:.3f}",
            f"{ratio(step, first.match_reads_s + first.keeper_scan_s):.1f}x",
        )
    console.print(table)

    gas_rows = measure_gas((10, 10), (args.providers_large, args.jobs_large))
    table = Table(title="gas per operation as the market grows (Anvil receipts, same run)")
    table.add_column("operation")
    for gr in gas_rows:
        table.add_column(
            f"{gr.providers} providers, {gr.active_jobs_on_provider} active on it", justify="right"
        )
    table.add_column("ratio", justify="right")
    for op in gas_rows[0].gas:
        small, large = gas_rows[0].gas[op], gas_rows[-1].gas[op]
        table.add_row(op, f"{small:,}", f"{large:,}", f"{ratio(large, small):.3f}x")
    console.print(table)

    result: dict[str, Any] = {
        "matcher": [asdict(r) for r in match_rows],
        "relayer": [asdict(r) for r in relayer_rows],
        "gas": [asdict(r) for r in gas_rows],
    }
    write_result("scale", result)
    return result


if __name__ == "__main__":
    main()
