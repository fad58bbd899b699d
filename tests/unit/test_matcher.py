"""The matcher: every on-chain eligibility rule, stake accounting across a call, determinism.

The properties check each rule on their own against the inputs, and compare the whole result
with a brute-force reference that scans every provider for every job.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.protocol.errors import DepinError
from marketplace.relayer.matcher import (
    Assignment,
    MatchInputError,
    OpenJob,
    ProviderView,
    collateral_for,
    is_eligible,
    match,
    pick_verifiers,
    reputation,
)

ADDRESSES = [f"0x{'ab' * 19}{i:02x}" for i in range(14)]


def provider(address: str, **overrides: object) -> ProviderView:
    fields: dict[str, object] = {
        "address": address,
        "profile_mask": 0b1,
        "vram_gib": 16,
        "price_per_unit": 10,
        "free_stake": 1_000,
        "unbonding": False,
        "registered": True,
        "live": True,
    }
    fields.update(overrides)
    return ProviderView(**fields)  # type: ignore[arg-type]


def job(job_id: int = 1, **overrides: object) -> OpenJob:
    fields: dict[str, object] = {
        "job_id": job_id,
        "profile": 0,
        "units": 1,
        "max_price_per_unit": 10,
        "replicas": 1,
        "min_vram_gib": 0,
        "collateral": 100,
    }
    fields.update(overrides)
    return OpenJob(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ strategies


@st.composite
def providers_st(draw: st.DrawFn) -> list[ProviderView]:
    indices = draw(st.lists(st.integers(0, len(ADDRESSES) - 1), unique=True, max_size=14))
    out = []
    for i in indices:
        address = ADDRESSES[i]
        if draw(st.booleans()):
            address = "0x" + address[2:].upper()  # checksummed-looking: case must not matter
        out.append(
            ProviderView(
                address=address,
                profile_mask=draw(st.integers(0, 0b111) | st.just(0b11)),
                vram_gib=draw(st.sampled_from((16, 24, 0, 8))),
                price_per_unit=draw(st.integers(1, 6)),
                free_stake=draw(st.integers(0, 60).map(lambda d: 60 - d)),
                unbonding=draw(st.integers(0, 15)) == 15,
                registered=draw(st.integers(0, 15)) < 15,
                live=draw(st.integers(0, 15)) < 15,
                jobs_done=draw(st.integers(0, 6)),
                jobs_slashed=draw(st.integers(0, 2)),
                load=draw(st.integers(0, 2)),
            )
        )
    return out


@st.composite
def jobs_st(draw: st.DrawFn) -> list[OpenJob]:
    ids = draw(st.lists(st.integers(1, 10_000), unique=True, max_size=14))
    return [
        OpenJob(
            job_id=job_id,
            profile=draw(st.sampled_from((0, 0, 1, 1, 2, 3))),
            units=1,
            max_price_per_unit=draw(st.integers(0, 6).map(lambda d: 7 - d)),
            replicas=draw(st.sampled_from((1, 1, 1, 2, 3, 4))),
            min_vram_gib=draw(st.sampled_from((0, 0, 0, 8, 16, 32))),
            collateral=draw(st.integers(0, 25)),
            exclude=frozenset(
                a.upper() if draw(st.booleans()) else a
                for a in draw(st.lists(st.sampled_from(ADDRESSES), max_size=3))
            ),
        )
        for job_id in ids
    ]


max_loads = st.none() | st.integers(1, 5)


def reference(
    jobs: Sequence[OpenJob], providers: Sequence[ProviderView], max_load: int | None
) -> list[Assignment]:
    """Brute force: for each job scan every provider with the rules written out again."""
    stake = {p.address: p.free_stake for p in providers}
    load = {p.address: p.load for p in providers}
    out = []
    for j in jobs:
        excluded = {a.lower() for a in j.exclude}
        ok = [
            p
            for p in providers
            if p.registered
            and not p.unbonding
            and p.live
            and (max_load is None or load[p.address] < max_load)
            and p.profile_mask & (1 << j.profile)
            and p.vram_gib >= j.min_vram_gib
            and p.price_per_unit <= j.max_price_per_unit
            and stake[p.address] >= j.collateral
            and p.address.lower() not in excluded
        ]
        if len(ok) < j.replicas:
            continue
        ok.sort(
            key=lambda p: (
                p.price_per_unit,
                -Fraction(p.jobs_done + 1, p.jobs_done + 4 * p.jobs_slashed + 2),
                load[p.address],
                p.address.lower(),
            )
        )
        chosen = ok[: j.replicas]
        for p in chosen:
            stake[p.address] -= j.collateral
            load[p.address] += 1
        out.append(Assignment(j.job_id, tuple(p.address for p in chosen)))
    return out


# ------------------------------------------------------------------ properties


@settings(max_examples=400)
@given(jobs=jobs_st(), providers=providers_st(), max_load=max_loads)
def test_every_assignment_meets_every_rule(
    jobs: list[OpenJob], providers: list[ProviderView], max_load: int | None
) -> None:
    result = match(jobs, providers, max_load=max_load)

    by_address = {p.address: p for p in providers}
    by_id = {j.job_id: j for j in jobs}
    committed: Counter[str] = Counter()
    added_load: Counter[str] = Counter()
    for assignment in result:
        j = by_id[assignment.job_id]
        assert len(assignment.providers) == j.replicas, "never partially assigned"
        assert len({a.lower() for a in assignment.providers}) == j.replicas, "replicas distinct"
        for address in assignment.providers:
            p = by_address[address]
            assert p.registered
            assert not p.unbonding
            assert p.live
            assert (p.profile_mask >> j.profile) & 1
            assert p.vram_gib >= j.min_vram_gib
            assert p.price_per_unit <= j.max_price_per_unit
            assert address.lower() not in {a.lower() for a in j.exclude}
            assert p.free_stake - committed[address] >= j.collateral, "stake at assignment time"
            if max_load is not None:
                assert p.load + added_load[address] < max_load
            committed[address] += j.collateral
            added_load[address] += 1
    for address, total in committed.items():
        assert total <= by_address[address].free_stake, "no over-commitment across the call"


@settings(max_examples=400)
@given(jobs=jobs_st(), providers=providers_st(), max_load=max_loads)
def test_result_equals_the_brute_force_reference(
    jobs: list[OpenJob], providers: list[ProviderView], max_load: int | None
) -> None:
    assert match(jobs, providers, max_load=max_load) == reference(jobs, providers, max_load)


@given(jobs=jobs_st(), providers=providers_st(), max_load=max_loads, seed=st.integers())
def test_deterministic_and_independent_of_provider_order(
    jobs: list[OpenJob], providers: list[ProviderView], max_load: int | None, seed: int
) -> None:
    shuffled = list(providers)
    random.Random(seed).shuffle(shuffled)

    first = match(jobs, providers, max_load=max_load)

    assert match(jobs, providers, max_load=max_load) == first
    assert match(jobs, shuffled, max_load=max_load) == first


@given(jobs=jobs_st(), providers=providers_st(), max_load=max_loads)
def test_assignments_follow_job_order_and_skipped_jobs_get_nothing(
    jobs: list[OpenJob], providers: list[ProviderView], max_load: int | None
) -> None:
    result = match(jobs, providers, max_load=max_load)

    order = [j.job_id for j in jobs]
    ids = [a.job_id for a in result]
    assert ids == [i for i in order if i in set(ids)]
    assert len(set(ids)) == len(ids)


@given(providers=providers_st(), price=st.integers(1, 6), collateral=st.integers(0, 25))
def test_replicas_one_takes_the_cheapest_eligible_when_loads_are_equal(
    providers: list[ProviderView], price: int, collateral: int
) -> None:
    providers = [replace(p, load=0) for p in providers]
    j = job(max_price_per_unit=price, collateral=collateral)
    eligible = [p for p in providers if is_eligible(p, j)]

    result = match([j], providers)

    if not eligible:
        assert result == []
        return
    (assignment,) = result
    chosen = next(p for p in providers if p.address == assignment.providers[0])
    assert chosen.price_per_unit == min(p.price_per_unit for p in eligible)


@given(providers=providers_st(), replicas=st.integers(1, 5))
def test_job_with_too_few_eligible_providers_is_skipped_and_consumes_nothing(
    providers: list[ProviderView], replicas: int
) -> None:
    j = job(replicas=replicas, collateral=5, max_price_per_unit=6)
    count = sum(is_eligible(p, j) for p in providers)
    follower = job(2, replicas=1, collateral=5, max_price_per_unit=6)

    result = match([j, follower], providers)

    if count < replicas:
        assert all(a.job_id != j.job_id for a in result)
        assert result == match([follower], providers)
    else:
        assert result[0].job_id == j.job_id


# ------------------------------------------------------------------ examples


def test_each_rule_alone_makes_a_provider_ineligible() -> None:
    j = job(min_vram_gib=8, max_price_per_unit=10, collateral=100, exclude=frozenset({"0xex"}))
    good = provider("0xgood")  # eligible; every bad one would sort before it
    bad = [
        provider("0x01", registered=False),
        provider("0x02", unbonding=True),
        provider("0x03", live=False),
        provider("0x04", profile_mask=0b10),
        provider("0x05", vram_gib=4),
        provider("0x06", price_per_unit=11),
        provider("0x07", free_stake=99),
        provider("0xEX"),
        provider("0x09", load=3),
    ]

    assert match([j], bad, max_load=3) == []
    assert match([j], [*bad, good], max_load=3) == [Assignment(1, ("0xgood",))]
    assert [p.address for p in bad if is_eligible(p, j, max_load=3)] == []


def test_stake_is_consumed_within_one_call() -> None:
    a = provider("0xa", price_per_unit=1, free_stake=250)
    b = provider("0xb", price_per_unit=2, free_stake=1_000)
    jobs = [job(i, collateral=100) for i in range(1, 5)]

    result = match(jobs, [a, b])

    assert [x.providers for x in result] == [("0xa",), ("0xa",), ("0xb",), ("0xb",)]


def test_load_spreads_equal_offers_and_max_load_caps_them() -> None:
    pool = [provider("0xa"), provider("0xb"), provider("0xc", load=1)]
    jobs = [job(i, collateral=1) for i in range(1, 6)]

    spread = match(jobs, pool)
    capped = match(jobs, pool, max_load=1)

    assert [x.providers[0] for x in spread] == ["0xa", "0xb", "0xa", "0xb", "0xc"]
    assert [x.providers[0] for x in capped] == ["0xa", "0xb"]


def test_reputation_breaks_price_ties_and_address_breaks_the_rest() -> None:
    veteran = provider("0xb", jobs_done=100)
    slashed = provider("0xa", jobs_done=1_000, jobs_slashed=100)
    newcomer = provider("0xc")
    twin = provider("0xd")

    (result,) = match([job(replicas=4, collateral=1)], [twin, newcomer, slashed, veteran])

    assert result.providers == ("0xb", "0xa", "0xc", "0xd")
    assert reputation(0, 0) == 2**31
    assert reputation(100, 0) > reputation(1_000, 100) > reputation(0, 0)


def test_replicas_are_cheapest_distinct_providers() -> None:
    pool = [provider(f"0x{i}", price_per_unit=10 - i) for i in range(5)]

    (result,) = match([job(replicas=3, collateral=1, max_price_per_unit=10)], pool)

    assert result.providers == ("0x4", "0x3", "0x2")


def test_pick_verifiers_excludes_the_executor_and_applies_the_same_rules() -> None:
    pool = [
        provider("0xexec", price_per_unit=1),
        provider("0xv1", price_per_unit=2),
        provider("0xv2", price_per_unit=3, unbonding=True),
        provider("0xv3", price_per_unit=4),
        provider("0xv4", price_per_unit=5, free_stake=10),
    ]
    audit = job(exclude=frozenset({"0xEXEC"}))

    assert pick_verifiers(audit, 2, pool) == ("0xv1", "0xv3")
    assert pick_verifiers(audit, 3, pool) == ()
    with pytest.raises(MatchInputError):
        pick_verifiers(audit, 0, pool)


def test_bad_input_is_reported() -> None:
    with pytest.raises(MatchInputError, match="appears twice; pass one view per address"):
        match([job()], [provider("0xA"), provider("0xa")])
    with pytest.raises(MatchInputError, match="job 1 appears twice"):
        match([job(), job()], [provider("0xa")])
    with pytest.raises(MatchInputError, match="replicas must be at least 1"):
        job(replicas=0)
    with pytest.raises(MatchInputError, match="profile id"):
        job(profile=256)
    with pytest.raises(MatchInputError, match="max_load"):
        match([job()], [provider("0xa")], max_load=0)
    assert issubclass(MatchInputError, DepinError)
    assert issubclass(MatchInputError, ValueError)


def test_empty_inputs_match_nothing() -> None:
    assert match([], [provider("0xa")]) == []
    assert match([job()], []) == []


@pytest.mark.parametrize("seed", range(5))
def test_many_distinct_demands_use_quantile_tiers_and_stay_exact(seed: int) -> None:
    rng = random.Random(seed)
    pool = [
        provider(
            f"0x{i:04x}",
            profile_mask=rng.randint(1, 3),
            vram_gib=rng.randint(0, 80),
            price_per_unit=rng.randint(1, 9),
            free_stake=rng.randint(0, 3_000),
            jobs_done=rng.randint(0, 9),
            load=rng.randint(0, 2),
        )
        for i in range(200)
    ]
    jobs = [
        job(
            i,
            profile=rng.randint(0, 1),
            max_price_per_unit=rng.randint(1, 9),
            replicas=rng.randint(1, 3),
            min_vram_gib=rng.randint(0, 80),
            collateral=rng.randint(1, 500),
        )
        for i in range(1, 400)
    ]

    for max_load in (None, 4):
        result = match(jobs, pool, max_load=max_load)
        assert result == reference(jobs, pool, max_load)
        assert len(result) > 100


def test_collateral_mirrors_the_contract() -> None:
    assert collateral_for(2, 5, 100) == 1_000
