"""`make paths` (`python -m marketplace.devnet.paths`): a fresh Anvil, the contracts deployed,
and one job walked through each lifecycle path of `marketplace.devnet.scenarios`, printing who
paid and who was paid and checking that every token is accounted for.

No relayer, provider or model runs here: the scenarios drive the contracts directly with
made-up digests, so every path (including the rare ones: a lost challenge, a no-show, an unbond
followed by a slash, an escalation without verdict, an executor releasing its job) runs in
seconds. Verifiers are never named:
the keeper calls staffAudit and the contract draws them, stake-weighted; each audited path
prints who was drawn in which round. `make demo` is the same market with real processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from marketplace.devnet.anvil import Anvil, advance, funded_account
from marketplace.devnet.scenarios import (
    GOOD,
    PATHS,
    PROVIDER_NAMES,
    TOKEN,
    Cast,
    PathResult,
    draw_clear,
    drawn_verifiers,
    job_request,
    setup,
    walk,
)
from marketplace.protocol.chain import connect


def released(cast: Cast) -> int:
    """An assigned provider's worker cannot run the job: it releases it before the deadline,
    paying one job's pay into the audit pool (the rest of its collateral is unlocked), and the
    job reopens at once for another provider, who settles it."""
    ivan, judy = cast.providers["ivan"], cast.providers["judy"]
    job = cast.requester.create_job(job_request(1))
    cast.matcher.assign(job, [ivan.address])
    ivan.release(job)
    cast.matcher.assign(job, [judy.address])
    judy.commit(job, GOOD)
    draw_clear(cast.keeper, job)
    advance(cast.w3, cast.owner.params().challenge_window + 1)
    cast.keeper.finalize(job)
    return job


#: The scenarios' paths, then the ones walked only here.
ALL_PATHS: tuple[tuple[str, Callable[[Cast], int]], ...] = (
    *PATHS,
    ("executor releases before its deadline, job reopened and settled", released),
)


def _tokens(amount: int) -> str:
    if amount == 0:
        return "·"
    return f"{amount / TOKEN:+,.4f}"


def _table(cast: Cast, result: PathResult) -> Table:
    table = Table(
        title=f"job {result.job_id}: {result.title} -> {result.state.name}",
        title_justify="left",
    )
    table.add_column("account")
    table.add_column("wallet + credits", justify="right")
    table.add_column("stake", justify="right")
    balance = 0
    for account in cast.accounts():
        liquid, stake = result.delta(account)
        balance += liquid + stake
        if liquid or stake:
            table.add_row(cast.name(account), _tokens(liquid), _tokens(stake))
    table.add_row("audit pool + protocol fees", _tokens(result.to_pools), "")
    table.add_row("burned", _tokens(-result.burned) if result.burned else "·", "")
    balance += result.to_pools + result.burned
    table.caption = (
        "conserved: every token accounted for" if balance == 0 else f"IMBALANCE {balance}"
    )
    return table


def _verifier_lines(cast: Cast, job_id: int) -> list[str]:
    """One line per audit round: who the contract drew."""
    return [
        f"  audit round {r}: drawn verifiers "
        + (", ".join(cast.name(a) for a in who) or "none (could not be staffed)")
        for r, who in drawn_verifiers(cast.owner, job_id)
    ]


def main() -> int:
    console = Console()
    with Anvil() as node:
        w3 = connect(node.url)
        owner = funded_account(w3)
        console.print(f"[bold]Anvil[/] at {node.url}, chain {w3.eth.chain_id}")
        cast = setup(w3, owner, providers=len(PROVIDER_NAMES))
        d = cast.deployment
        console.print(
            f"ComputeToken {d.token}\nProviderRegistry {d.registry}\nJobMarket {d.market}"
        )
        console.print(
            f"{len(cast.providers)} providers staked {1000:,} tokens each; prices per unit equal; "
            "verifiers are drawn on-chain, stake-weighted.\n"
        )
        failures = 0
        for title, path in ALL_PATHS:
            result = walk(cast, title, path)
            table = _table(cast, result)
            console.print(table)
            for line in _verifier_lines(cast, result.job_id):
                console.print(line)
            failures += table.caption != "conserved: every token accounted for"
            console.print()
    console.print(
        "Anvil stopped." if failures == 0 else f"[red]{failures} path(s) out of balance[/]"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
