"""Every lifecycle path of marketplace.devnet.scenarios on a real chain, checked to the wei.

The expectations mirror contracts/test/Lifecycle.t.sol with the devnet parameters (fee 250 bps,
half of it to the audit pool; a slash gives 50 % to the requester, 30 % to the honest parties
and burns 20 %; collateral 2x; challenge bond 10 tokens). One replica is 100 units at 1e15.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import advance
from marketplace.devnet.scenarios import Cast, PathResult, Position
from marketplace.protocol.client import JobRequest, JobState
from marketplace.protocol.deployment import MarketParams

PAY = 100_000_000_000_000_000  # one replica: 100 units x 1e15
FEE = 2_500_000_000_000_000  # 250 bps of PAY
ESCROW = 102_500_000_000_000_000  # PAY + FEE, one replica
COLLATERAL = 200_000_000_000_000_000  # 2 x PAY
COMPENSATION = 100_000_000_000_000_000  # 50 % of a slashed collateral, to the requester
REWARD = 60_000_000_000_000_000  # 30 % of a slashed collateral, to the honest parties
BURN = 40_000_000_000_000_000  # the remaining 20 %
BOND = 10_000_000_000_000_000_000  # the challenge bond
STAKE = 1_000_000_000_000_000_000_000  # each provider's stake
REQUESTER_FUNDS = 10_000_000_000_000_000_000_000


def test_constants_match_the_devnet_parameters() -> None:
    p = MarketParams()
    pay = scenarios.UNITS * scenarios.PRICE
    assert pay == PAY
    assert pay * p.fee_bps // 10_000 == FEE
    assert p.collateral_multiple * pay == COLLATERAL
    assert COLLATERAL * p.requester_share_bps // 10_000 == COMPENSATION
    assert COLLATERAL * p.reward_share_bps // 10_000 == REWARD
    assert COLLATERAL - COMPENSATION - REWARD == BURN
    assert p.challenge_bond == BOND
    assert scenarios.PROVIDER_STAKE == STAKE
    assert scenarios.REQUESTER_FUNDS == REQUESTER_FUNDS


@dataclass(frozen=True)
class Expected:
    """What one path moves: (wallet + credits, stake) per named account, the two pools, the burn."""

    state: JobState
    requester: int
    providers: dict[str, tuple[int, int]]
    audit_pool: int
    protocol_fees: int
    burned: int
    # Providers assigned to the job: their collateral must be unlocked at the end.
    participants: tuple[str, ...] = field(default=())


EXPECTED: dict[str, Expected] = {
    "optimistic_settled": Expected(
        state=JobState.SETTLED,
        requester=-102_500_000_000_000_000,  # escrow, nothing refunded at the max price
        providers={"alice": (100_000_000_000_000_000, 0)},
        audit_pool=1_250_000_000_000_000,  # half the fee
        protocol_fees=1_250_000_000_000_000,
        burned=0,
        participants=("alice",),
    ),
    "replicas3_honest": Expected(
        state=JobState.SETTLED,
        requester=-307_500_000_000_000_000,  # 3 x escrow
        providers={n: (100_000_000_000_000_000, 0) for n in ("alice", "bob", "carol")},
        audit_pool=3_750_000_000_000_000,
        protocol_fees=3_750_000_000_000_000,
        burned=0,
        participants=("alice", "bob", "carol"),
    ),
    "replicas3_one_wrong": Expected(
        state=JobState.SETTLED,
        # credits: 3 x escrow - 2 x PAY - 2 x FEE + compensation; delta = that - 3 x escrow
        requester=-105_000_000_000_000_000,
        providers={
            "alice": (130_000_000_000_000_000, 0),  # PAY + REWARD / 2
            "bob": (130_000_000_000_000_000, 0),
            "dave": (0, -200_000_000_000_000_000),  # slashed its collateral
        },
        audit_pool=2_500_000_000_000_000,  # half of 2 x FEE
        protocol_fees=2_500_000_000_000_000,
        burned=40_000_000_000_000_000,
        participants=("alice", "bob", "dave"),
    ),
    "audit_catches_cheater": Expected(
        state=JobState.REFUNDED,
        requester=100_000_000_000_000_000,  # full escrow back plus compensation
        providers={
            "erin": (0, -200_000_000_000_000_000),
            "alice": (20_000_000_000_000_000, 0),  # REWARD / 3 each
            "bob": (20_000_000_000_000_000, 0),
            "carol": (20_000_000_000_000_000, 0),
        },
        audit_pool=0,
        protocol_fees=0,
        burned=40_000_000_000_000_000,
        participants=("erin", "alice", "bob", "carol"),
    ),
    "challenge_lost": Expected(
        state=JobState.SETTLED,
        requester=-10_102_500_000_000_000_000,  # escrow + the lost bond
        providers={
            "alice": (100_000_000_000_000_000, 0),
            "bob": (3_333_333_333_333_333_333, 0),  # BOND / 3 each
            "carol": (3_333_333_333_333_333_333, 0),
            "dave": (3_333_333_333_333_333_333, 0),
        },
        audit_pool=1_250_000_000_000_001,  # half the fee + 1 wei of rounding dust
        protocol_fees=1_250_000_000_000_000,
        burned=0,
        participants=("alice", "bob", "carol", "dave"),
    ),
    "no_show": Expected(
        state=JobState.SETTLED,
        requester=-2_500_000_000_000_000,  # paid PAY + FEE, compensated COLLATERAL / 2
        providers={
            "frank": (0, -200_000_000_000_000_000),
            "bob": (100_000_000_000_000_000, 0),
        },
        audit_pool=61_250_000_000_000_000,  # the no-show's reward share + half the fee
        protocol_fees=1_250_000_000_000_000,
        burned=40_000_000_000_000_000,
        participants=("frank", "bob"),
    ),
    "unbond_then_slashed": Expected(
        state=JobState.SETTLED,
        requester=-105_000_000_000_000_000,
        providers={
            "alice": (130_000_000_000_000_000, 0),
            "bob": (130_000_000_000_000_000, 0),
            # slashed 0.2 while unbonding, the free 999.8 left after the delay
            "grace": (999_800_000_000_000_000_000, -1_000_000_000_000_000_000_000),
        },
        audit_pool=2_500_000_000_000_000,
        protocol_fees=2_500_000_000_000_000,
        burned=40_000_000_000_000_000,
        participants=("grace", "alice", "bob"),
    ),
}


def test_every_path_has_expectations() -> None:
    assert {path.__name__ for _, path in scenarios.PATHS} == set(EXPECTED)


def _check_books(cast: Cast, result: PathResult, want: Expected) -> None:
    # ape reverts every test: each path starts from the books `setup` left.
    start = result.before.positions
    assert start[cast.requester.address] == Position(REQUESTER_FUNDS, 0, 0)
    assert all(start[p.address] == Position(0, 0, STAKE) for p in cast.providers.values())

    assert result.state == want.state
    assert cast.owner.state(result.job_id) == want.state

    requester = cast.requester.address
    assert result.delta(requester) == (want.requester, 0)
    for name, client in cast.providers.items():
        assert result.delta(client.address) == want.providers.get(name, (0, 0)), name

    assert result.after.audit_pool - result.before.audit_pool == want.audit_pool
    assert result.after.protocol_fees - result.before.protocol_fees == want.protocol_fees
    assert result.to_pools == want.audit_pool + want.protocol_fees
    assert result.burned == want.burned

    # Every token accounted for: what accounts gained, pools took and was burned sums to zero.
    moved = sum(sum(result.delta(a)) for a in cast.accounts())
    assert moved + result.to_pools + result.burned == 0

    for name in want.participants:
        assert cast.owner.provider(cast.providers[name].address).locked == 0, name


def _withdraw_all(cast: Cast, result: PathResult) -> None:
    """Each credited account withdraws: its wallet then holds exactly its credits."""
    for client in [cast.requester, *cast.providers.values()]:
        address = client.address
        credits = result.after.positions[address].credits
        wallet = cast.owner.balance_of(address)
        assert client.withdraw() == credits
        assert cast.owner.credits(address) == 0
        assert cast.owner.balance_of(address) == wallet + credits


@pytest.mark.parametrize(
    ("title", "path"), scenarios.PATHS, ids=[path.__name__ for _, path in scenarios.PATHS]
)
def test_path_pays_to_the_wei(cast: Cast, title: str, path: Callable[[Cast], int]) -> None:
    result = scenarios.walk(cast, title, path)
    want = EXPECTED[path.__name__]
    _check_books(cast, result, want)
    credited = [n for n, (liquid, _) in want.providers.items() if liquid > 0]
    assert credited, "each path pays somebody"
    _withdraw_all(cast, result)


def test_unbonding_provider_is_slashed_and_keeps_no_stake(cast: Cast) -> None:
    result = scenarios.walk(cast, "unbond", scenarios.unbond_then_slashed)
    grace = cast.owner.provider(cast.providers["grace"].address)
    assert grace.stake == 0
    assert grace.unbonding == 0
    assert grace.jobs_slashed == 1
    assert result.after.positions[cast.providers["grace"].address].wallet == STAKE - COLLATERAL


def _request(replicas: int = 1, tag: bytes = b"job") -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(tag).digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
    )


def test_batched_path_settles_all_twenty(cast: Cast) -> None:
    scenarios.set_audit_rate(cast, 0)
    requester = cast.requester
    names = list(cast.providers)
    wallet_before = requester.balance_of(requester.address)
    pools_before = cast.owner.audit_pool() + cast.owner.protocol_fees()
    first = cast.owner.job_count() + 1

    ids = requester.create_jobs([_request(tag=b"batch %d" % i) for i in range(20)])
    assert ids == list(range(first, first + 20))
    assert wallet_before - requester.balance_of(requester.address) == 20 * ESCROW

    assigned: dict[str, list[int]] = {n: [] for n in names}
    for i, job in enumerate(ids):
        assigned[names[i % len(names)]].append(job)
    cast.matcher.assign_batch(
        [(job, [cast.providers[n].address]) for n, jobs in assigned.items() for job in jobs]
    )
    assert all(cast.owner.state(j) == JobState.ASSIGNED for j in ids)
    for name, jobs in assigned.items():
        rec = cast.owner.provider(cast.providers[name].address)
        assert rec.locked == COLLATERAL * len(jobs), name

    for name, jobs in assigned.items():
        cast.providers[name].commit_batch(
            [(j, hashlib.sha256(b"result %d" % j).digest()) for j in jobs]
        )
    assert all(cast.owner.state(j) == JobState.COMMITTED for j in ids)

    advance(cast.w3, cast.owner.params().challenge_window + 1)
    cast.keeper.finalize_batch(ids)

    assert [cast.owner.state(j) for j in ids] == [JobState.SETTLED] * 20
    for name, jobs in assigned.items():
        address = cast.providers[name].address
        assert cast.owner.credits(address) == PAY * len(jobs), name
        rec = cast.owner.provider(address)
        assert (rec.locked, rec.jobs_done) == (0, len(jobs)), name
    assert sum(len(jobs) for jobs in assigned.values()) == 20
    assert cast.owner.credits(requester.address) == 0
    assert cast.owner.audit_pool() + cast.owner.protocol_fees() - pools_before == 20 * FEE


def test_expire_unassigned_job_refunds_full_escrow(cast: Cast) -> None:
    requester = cast.requester
    wallet_before = requester.balance_of(requester.address)
    request = _request(replicas=2)
    job = requester.create_job(request)
    assert requester.balance_of(requester.address) == wallet_before - 2 * ESCROW

    advance(cast.w3, request.accept_window + 1)
    cast.keeper.expire(job)

    assert cast.owner.state(job) == JobState.EXPIRED
    assert cast.owner.credits(requester.address) == 2 * ESCROW
    assert requester.withdraw() == 2 * ESCROW
    assert requester.balance_of(requester.address) == wallet_before


def test_cancel_refunds_the_escrow(cast: Cast) -> None:
    requester = cast.requester
    wallet_before = requester.balance_of(requester.address)
    job = requester.create_job(_request())
    assert requester.balance_of(requester.address) == wallet_before - ESCROW

    requester.cancel(job)

    assert cast.owner.state(job) == JobState.EXPIRED
    assert cast.owner.credits(requester.address) == ESCROW
    assert requester.withdraw() == ESCROW
    assert requester.balance_of(requester.address) == wallet_before
