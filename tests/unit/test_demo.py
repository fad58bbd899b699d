"""The demo's pure parts: the batch it submits and the conservation arithmetic it prints."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from marketplace.demo import DemoConfig, DemoConfigError, app
from marketplace.devnet.batch import SENTENCES, job_drafts, replicas_for
from marketplace.devnet.books import Books, Holding, conservation

TOKEN = 10**18


def test_the_batch_mixes_replicas_and_gives_every_provider_a_job_alone() -> None:
    assert replicas_for(4, 4) == [1, 1, 1, 3]
    assert replicas_for(8, 5) == [1, 1, 1, 1, 1, 3, 3, 1]
    assert replicas_for(3, 5) == [1, 1, 3]
    assert replicas_for(1, 4) == [1]


def test_drafts_are_embed_jobs_of_distinct_sentences() -> None:
    drafts = job_drafts(8, providers=5)
    assert [d.replicas for d, _ in drafts] == replicas_for(8, 5)
    for draft, sentences in drafts:
        assert draft.kind == "embed" and draft.sentences == sentences and len(sentences) == 4
    assert len({s for _, ss in drafts for s in ss}) == min(32, len(SENTENCES))


def _books(requester: Holding, provider: Holding, **kw: int) -> Books:
    pools = {"audit_pool": 0, "protocol_fees": 0, "bonds": 0} | kw
    holdings = {"0xr": requester, "0xp": provider}
    wallets = requester.wallet + provider.wallet
    market = requester.credits + provider.credits + sum(pools.values())
    stakes = requester.stake + provider.stake
    return Books(
        holdings=holdings,
        supply=wallets + market + stakes,
        market_balance=market,
        registry_balance=stakes,
        total_staked=stakes,
        **pools,
    )


def test_conservation_balances_a_paid_job_and_a_slash_with_burn() -> None:
    before = _books(Holding(10 * TOKEN, 0, 0), Holding(0, 0, 1_000 * TOKEN))
    # The requester paid 1 token; the provider was slashed 2, of which 1.5 went to the
    # requester, 0.4 was burned and 0.1 went to the audit pool.
    after = _books(
        Holding(9 * TOKEN, TOKEN + 15 * TOKEN // 10, 0),
        Holding(0, 0, 998 * TOKEN),
        audit_pool=TOKEN // 10,
    )
    after = replace(after, supply=before.supply - 4 * TOKEN // 10)
    c = conservation(before, after)
    assert (c.burned, c.pools) == (4 * TOKEN // 10, TOKEN // 10)
    assert c.imbalance == 0
    assert c.unaccounted == (0, 0) and c.ok


def test_conservation_reports_a_credit_nothing_pays_for() -> None:
    before = _books(Holding(10 * TOKEN, 0, 0), Holding(0, 0, 1_000 * TOKEN))
    # One wei credited to the requester with no token behind it.
    after = replace(before, holdings={**before.holdings, "0xr": Holding(10 * TOKEN, 1, 0)})
    c = conservation(before, after)
    assert (c.accounts, c.pools, c.burned) == (1, 0, 0)
    assert c.imbalance == 1 and c.market_shortfall == -1 and not c.ok


def test_conservation_counts_a_mint_as_negative_burn() -> None:
    before = _books(Holding(10 * TOKEN, 0, 0), Holding(0, 0, 1_000 * TOKEN))
    after = _books(Holding(11 * TOKEN, 0, 0), Holding(0, 0, 1_000 * TOKEN))
    c = conservation(before, after)
    assert (c.accounts, c.burned, c.imbalance) == (TOKEN, -TOKEN, 0)


def test_a_demo_with_a_lazy_provider_needs_a_job_alone_for_every_provider() -> None:
    with pytest.raises(DemoConfigError, match=r"--jobs must be at least --providers \+ 1 \(5\)"):
        DemoConfig(providers=4, lazy=1, jobs=4)
    assert replicas_for(DemoConfig(providers=4, lazy=1, jobs=5).jobs, 4) == [1, 1, 1, 1, 3]
    DemoConfig(providers=4, lazy=0, jobs=1)  # nothing to catch: any batch will do
    with pytest.raises(DemoConfigError, match="at least 1"):
        DemoConfig(lazy=0, jobs=0)


def test_the_demo_command_refuses_a_batch_that_cannot_catch_the_lazy_provider() -> None:
    result = CliRunner().invoke(app, ["--providers", "4", "--jobs", "4"])
    assert result.exit_code == 2
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's error box
    assert "--jobs must be at least --providers + 1 (5)" in words
