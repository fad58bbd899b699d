"""Gas per job on a real Anvil, from transaction receipts (intrinsic gas included).

Each lifecycle path is walked as the demo walks it; the gas of every protocol transaction in
it is summed (owner parameter changes and one-time token approvals excluded). The replicas=1
happy path is then run in batches of 1, 5, 20 and 50 jobs per transaction and compared with the
unbatched figure measured in the same run. The audit rate has a floor (auditBps x (1 +
collateralMultiple) >= 10,000), so the batched path runs the keeper's audit draw (`drawAudits`)
before `finalizeBatch`: the jobs the draw selects go to audit and are counted, not settled.

    .venv/bin/python -m bench.gas        (or: make bench)
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, funded_account, mine
from marketplace.protocol.chain import connect
from marketplace.protocol.client import JobState

RESULTS = Path(__file__).parent / "results" / "gas.json"
BATCH_SIZES = (1, 5, 20, 50)
# Ritual Infernet's published create-and-deliver gas for one request, for scale.
PUBLISHED_REFERENCE = 352_544


def _protocol_gas(w3: Web3, cast: scenarios.Cast, first_block: int) -> int:
    """Gas of the protocol transactions mined after `first_block`."""
    excluded_from = {cast.owner.address.lower()}
    token = cast.deployment.token.lower()
    total = 0
    for number in range(first_block + 1, w3.eth.block_number + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"].lower() in excluded_from or (tx["to"] or "").lower() == token:
                continue
            total += w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"]
    return total


def _batched_happy_path(cast: scenarios.Cast, n: int) -> tuple[int, int]:
    """Gas of create_jobs + assign_batch + commit_batch + draw_audits + finalize_batch for n
    jobs, and how many of them the audit draw selected (left in audit, not finalized)."""
    w3 = cast.w3
    alice = cast.providers["alice"]
    start = w3.eth.block_number
    request = scenarios.job_request(1)
    ids = cast.requester.create_jobs([request] * n)
    cast.matcher.assign_batch([(job, [alice.address]) for job in ids])
    alice.commit_batch([(job, scenarios.GOOD) for job in ids])
    mine(w3)  # the draw is seeded by the commit block's hash
    cast.keeper.draw_audits(ids)
    clear = [job for job in ids if cast.owner.job(job).drawn_clear]
    advance(w3, cast.owner.params().challenge_window + 1)
    if clear:
        cast.keeper.finalize_batch(clear)
    assert all(cast.owner.state(job) == JobState.SETTLED for job in clear)
    return _protocol_gas(w3, cast, start), n - len(clear)


def main() -> dict[str, object]:
    console = Console()
    with Anvil() as node:
        w3 = connect(node.url)
        cast = scenarios.setup(w3, funded_account(w3))
        # Warm every account once, as on a running market: first credits and approvals happen here.
        scenarios.walk(cast, "warm-up", scenarios.optimistic_settled)
        scenarios.set_audit_rate(cast, 0)
        paths: dict[str, int] = {}
        for title, path in scenarios.PATHS:
            start = w3.eth.block_number
            path(cast)
            paths[title] = _protocol_gas(w3, cast, start)
        scenarios.set_audit_rate(cast, 0)
        batched: dict[int, int] = {}
        audited: dict[int, int] = {}
        for n in BATCH_SIZES:
            gas, audited[n] = _batched_happy_path(cast, n)
            batched[n] = gas // n

    baseline = paths[scenarios.PATHS[0][0]]
    table = Table(title="gas per job, lifecycle paths (one transaction per action)")
    table.add_column("path")
    table.add_column("gas per job", justify="right")
    table.add_column("vs replicas=1 settled", justify="right")
    for title, gas in paths.items():
        table.add_row(title, f"{gas:,}", f"{gas / baseline:.2f}x")
    console.print(table)
    batch = Table(
        title="replicas=1, batched (create + assign + commit + draw audits + finalize the clear)"
    )
    batch.add_column("jobs per transaction", justify="right")
    batch.add_column("gas per job", justify="right")
    batch.add_column("vs unbatched", justify="right")
    batch.add_column(f"vs {PUBLISHED_REFERENCE:,} reference", justify="right")
    batch.add_column("drawn for audit", justify="right")
    batch.add_row(
        "unbatched", f"{baseline:,}", "1.00x", f"{baseline / PUBLISHED_REFERENCE:.2f}x", "-"
    )
    for n, gas in batched.items():
        batch.add_row(
            str(n),
            f"{gas:,}",
            f"{gas / baseline:.2f}x",
            f"{gas / PUBLISHED_REFERENCE:.2f}x",
            f"{audited[n]} of {n}",
        )
    console.print(batch)
    result: dict[str, object] = {
        "paths": paths,
        "batched_per_job": {str(n): g for n, g in batched.items()},
        "batched_drawn_for_audit": {str(n): a for n, a in audited.items()},
        "unbatched_replicas1_settled": baseline,
        "reference_create_and_deliver": PUBLISHED_REFERENCE,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
