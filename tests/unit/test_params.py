"""MarketParams: the defaults, the bounds MarketLib.check enforces (checked before any
transaction, with messages naming the fix), the longest job lifetime and the escrow formula."""

from __future__ import annotations

from dataclasses import replace

import pytest

from marketplace.protocol.deployment import DAY, MarketParams
from marketplace.protocol.errors import ConfigError


def test_defaults_are_valid_and_in_contract_order() -> None:
    p = MarketParams()
    p.check(2 * p.max_job_lifetime())
    assert p.as_tuple() == (
        250,
        5_000,
        1_000,
        5_000,
        3_000,
        3,
        10,
        600,
        600,
        1_800,
        600,
        60,
        DAY,
        DAY,
        1_800,
        10**14,
    )
    assert not hasattr(p, "challenge_bond")


def test_max_job_lifetime_matches_market_lib() -> None:
    p = MarketParams()
    audit_round = 600 + 1_800 + 600
    assert p.max_job_lifetime() == DAY + DAY + 1_800 + DAY + max(600, 600) + 2 * audit_round
    longer = replace(p, reveal_window=900)
    assert longer.max_job_lifetime() == p.max_job_lifetime() + 300 + 2 * 300


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"fee_bps": 1_001}, "fee_bps 1001 is above 1000"),
        ({"audit_bps": 10_001}, "audit_bps 10001 is not in 0..10000"),
        ({"requester_share_bps": 6_000, "reward_share_bps": 5_000}, "above 10000; lower either"),
        ({"verifiers": 2}, "verifiers 2 must be 1, 3 or 5"),
        ({"verifiers": 7}, "verifiers 7 must be 1, 3 or 5"),
        ({"collateral_multiple": 0}, "collateral_multiple 0 is not in 1..20"),
        ({"collateral_multiple": 21}, "collateral_multiple 21 is not in 1..20"),
        ({"audit_bps": 500}, "raise audit_bps to at least 910 or raise collateral_multiple"),
        ({"challenge_window": 9}, "challenge_window 9 s is not between 10 s and 30 days"),
        ({"max_exec_window": 31 * DAY}, "max_exec_window"),
        ({"min_exec_window": 7_200, "max_exec_window": 3_600}, "min_exec_window 7200 is above"),
        ({"min_exec_window": 3_600}, "verifier_exec_window 1800 is below min_exec_window 3600"),
        ({"min_fee": 0}, "min_fee must be positive"),
    ],
)
def test_each_bound_is_named_with_its_fix(change: dict[str, int], needle: str) -> None:
    bad = replace(MarketParams(), **change)
    with pytest.raises(ConfigError, match="invalid market parameters") as err:
        bad.check()
    assert needle in str(err.value)


def test_unbonding_period_must_cover_twice_the_lifetime() -> None:
    p = MarketParams()
    p.check(0)  # 0 skips the lifetime check
    with pytest.raises(ConfigError, match="shorten the windows or raise the period"):
        p.check(2 * p.max_job_lifetime() - 1)


def test_escrow_formula() -> None:
    p = MarketParams()
    pay = 100 * 10**15
    assert p.premium_bps(1) == 3_000 and p.premium_bps(3) == 0
    assert p.escrow(1, 100, 10**15) == pay + pay * 250 // 10_000 + pay * 3_000 // 10_000
    assert p.escrow(3, 100, 10**15) == 3 * pay + 3 * pay * 250 // 10_000
    assert p.escrow(1, 1, 1) == 1 + 10**14, "the fee floor"
