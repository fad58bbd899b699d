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

from marketplace.matching.matcher import (
    Assignment,
    MatchInputError,
    OpenJob,
    ProviderView,
    collateral_for,
    is_eligible,
    match,
    reputation,
)
from marketplace.protocol.errors import DepinError

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
        "collateral_multiple": 10,
        "exec_window": 600,
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
                min_exec_window=draw(st.sampled_from((0, 0, 60, 600))),
                max_units=draw(st.sampled_from((100, 100, 1, 2))),
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
            units=draw(st.sampled_from((1, 1, 1, 2))),
            max_price_per_unit=draw(st.integers(0, 6).map(lambda d: 7 - d)),
            replicas=draw(st.sampled_from((1, 1, 1, 3, 3, 5))),
            min_vram_gib=draw(st.sampled_from((0, 0, 0, 8, 16, 32))),
            collateral_multiple=draw(st.integers(0, 5)),
            exec_window=draw(st.sampled_from((60, 600, 3_600))),
            requester=draw(st.sampled_from(("", *ADDRESSES[:4]))),
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
    """Brute force: for each job scan every provider with the rules written out again, take them
    best first, and put back anyone taken whose stake does not cover the collateral at the
    clearing price (the highest ask taken so far)."""
    stake = {p.address: p.free_stake for p in providers}
    load = {p.address: p.load for p in providers}
    out = []
    for j in jobs:
        excluded = {a.lower() for a in j.exclude} | (
            {j.requester.lower()} if j.requester else set()
        )
        per_price = j.collateral_multiple * j.units
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
            and p.min_exec_window <= j.exec_window
            and p.max_units >= j.units
            and stake[p.address] >= per_price * p.price_per_unit
            and p.address.lower() not in excluded
        ]
        ok.sort(
            key=lambda p: (
                p.price_per_unit,
                -Fraction(p.jobs_done + 1, p.jobs_done + 4 * p.jobs_slashed + 2),
                load[p.address],
                p.address.lower(),
            )
        )
        chosen: list[ProviderView] = []
        for p in ok:
            chosen = [c for c in chosen if stake[c.address] >= per_price * p.price_per_unit]
            chosen.append(p)
            if len(chosen) == j.replicas:
                break
        if len(chosen) < j.replicas:
            continue
        collateral = per_price * max(p.price_per_unit for p in chosen)
        for p in chosen:
            stake[p.address] -= collateral
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
        clearing = max(by_address[a].price_per_unit for a in assignment.providers)
        collateral = collateral_for(j.collateral_multiple, j.units, clearing)
        for address in assignment.providers:
            p = by_address[address]
            assert p.registered
            assert not p.unbonding
            assert p.live
            assert (p.profile_mask >> j.profile) & 1
            assert p.vram_gib >= j.min_vram_gib
            assert p.price_per_unit <= j.max_price_per_unit
            assert address.lower() not in {a.lower() for a in j.exclude}
            assert address.lower() != j.requester.lower(), "the requester never executes"
            assert p.min_exec_window <= j.exec_window, "the provider's own window floor"
            assert j.units <= p.max_units, "the provider's own unit cap"
            assert p.free_stake - committed[address] >= collateral, "stake at the clearing price"
            if max_load is not None:
                assert p.load + added_load[address] < max_load
            committed[address] += collateral
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


@given(providers=providers_st(), price=st.integers(1, 6), multiple=st.integers(0, 5))
def test_replicas_one_takes_the_cheapest_eligible_when_loads_are_equal(
    providers: list[ProviderView], price: int, multiple: int
) -> None:
    providers = [replace(p, load=0) for p in providers]
    j = job(max_price_per_unit=price, collateral_multiple=multiple)
    eligible = [p for p in providers if is_eligible(p, j)]

    result = match([j], providers)

    if not eligible:
        assert result == []
        return
    (assignment,) = result
    chosen = next(p for p in providers if p.address == assignment.providers[0])
    assert chosen.price_per_unit == min(p.price_per_unit for p in eligible)


@given(providers=providers_st(), replicas=st.sampled_from((1, 3, 5)))
def test_job_with_too_few_eligible_providers_is_skipped_and_consumes_nothing(
    providers: list[ProviderView], replicas: int
) -> None:
    # Multiple 0: no stake needed, so being eligible alone decides (no clearing-price effect).
    j = job(replicas=replicas, collateral_multiple=0, max_price_per_unit=6)
    count = sum(is_eligible(p, j) for p in providers)
    follower = job(2, replicas=1, collateral_multiple=0, max_price_per_unit=6)

    result = match([j, follower], providers)

    if count < replicas:
        assert all(a.job_id != j.job_id for a in result)
        assert result == match([follower], providers)
    else:
        assert result[0].job_id == j.job_id


# ------------------------------------------------------------------ examples


def test_each_rule_alone_makes_a_provider_ineligible() -> None:
    j = job(
        min_vram_gib=8,
        max_price_per_unit=10,
        units=2,
        collateral_multiple=5,  # collateral at a price of 10: 5 x 2 x 10 = 100
        exec_window=600,
        requester="0xREQ",
        exclude=frozenset({"0xex"}),
    )
    good = provider("0xgood", free_stake=100, min_exec_window=600, max_units=2)
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
        provider("0x0a", min_exec_window=601),
        provider("0x0b", max_units=1),
        provider("0xreq"),
    ]

    assert match([j], bad, max_load=3) == []
    assert match([j], [*bad, good], max_load=3) == [Assignment(1, ("0xgood",))]
    assert [p.address for p in bad if is_eligible(p, j, max_load=3)] == []


def test_stake_is_consumed_within_one_call() -> None:
    a = provider("0xa", price_per_unit=2, free_stake=250)
    b = provider("0xb", price_per_unit=3, free_stake=1_000)
    jobs = [job(i, collateral_multiple=50) for i in range(1, 5)]  # 100 at a, 50 x 2 at b

    result = match(jobs, [a, b])

    assert [x.providers for x in result] == [("0xa",), ("0xa",), ("0xb",), ("0xb",)]


def test_load_spreads_equal_offers_and_max_load_caps_them() -> None:
    pool = [provider("0xa"), provider("0xb"), provider("0xc", load=1)]
    jobs = [job(i, collateral_multiple=0) for i in range(1, 6)]

    spread = match(jobs, pool)
    capped = match(jobs, pool, max_load=1)

    assert [x.providers[0] for x in spread] == ["0xa", "0xb", "0xa", "0xb", "0xc"]
    assert [x.providers[0] for x in capped] == ["0xa", "0xb"]


def test_reputation_breaks_price_ties_and_address_breaks_the_rest() -> None:
    veteran = provider("0xb", jobs_done=100)
    slashed = provider("0xa", jobs_done=1_000, jobs_slashed=100)
    newcomer = provider("0xc")
    twin = provider("0xd")

    (result,) = match([job(replicas=3, collateral_multiple=0)], [twin, newcomer, slashed, veteran])

    assert result.providers == ("0xb", "0xa", "0xc")
    assert reputation(0, 0) == 2**31
    assert reputation(100, 0) > reputation(1_000, 100) > reputation(0, 0)


def test_replicas_are_cheapest_distinct_providers() -> None:
    pool = [provider(f"0x{i}", price_per_unit=10 - i) for i in range(5)]

    (result,) = match([job(replicas=3, collateral_multiple=0, max_price_per_unit=10)], pool)

    assert result.providers == ("0x4", "0x3", "0x2")


def test_collateral_is_at_the_clearing_price_not_the_max_price() -> None:
    # max price 100, asks 10 and 20: clearing price 20, collateral 10 x 1 x 20 = 200 each.
    j = job(replicas=3, max_price_per_unit=100)
    pool = [
        provider("0xa", price_per_unit=10, free_stake=200),
        provider("0xb", price_per_unit=10, free_stake=200),
        provider("0xc", price_per_unit=20, free_stake=200),
    ]
    (result,) = match([j], pool)
    assert set(result.providers) == {"0xa", "0xb", "0xc"}
    # The stake is consumed at the clearing price: nothing is left for a second job.
    assert match([j, job(2, max_price_per_unit=100)], pool)[1:] == []


def test_a_dearer_executor_raises_the_collateral_of_the_cheaper_ones() -> None:
    # 0xa covers the collateral at its own ask (100) but not at 0xc's (200): it is put back.
    j = job(replicas=3, max_price_per_unit=100)
    pool = [
        provider("0xa", price_per_unit=10, free_stake=150),
        provider("0xb", price_per_unit=10, free_stake=500),
        provider("0xc", price_per_unit=20, free_stake=500),
        provider("0xd", price_per_unit=30, free_stake=500),
    ]
    (result,) = match([j], pool)
    assert result.providers == ("0xb", "0xc", "0xd")
    assert match([j], pool[:3]) == [], "without 0xd the set cannot clear"


def test_provider_minimum_exec_window_is_respected() -> None:
    pool = [provider("0xfast", min_exec_window=60), provider("0xslow", min_exec_window=3_600)]
    short = job(1, exec_window=600)
    long = job(2, exec_window=3_600)
    assert match([short], pool) == [Assignment(1, ("0xfast",))]
    assert match([short], pool[1:]) == []
    assert match([long], pool[1:]) == [Assignment(2, ("0xslow",))]
    assert is_eligible(pool[1], long) and not is_eligible(pool[1], short)


def test_provider_max_units_is_respected() -> None:
    small = provider("0xsmall", max_units=4, price_per_unit=1)
    big = provider("0xbig", max_units=100, price_per_unit=2)
    j = job(units=5, collateral_multiple=1)
    assert match([j], [small, big]) == [Assignment(1, ("0xbig",))]
    assert match([job(units=4, collateral_multiple=1)], [small, big]) == [
        Assignment(1, ("0xsmall",))
    ]


def test_requester_never_executes_its_own_job() -> None:
    me = provider("0xAbC", price_per_unit=1)
    other = provider("0xdef", price_per_unit=5)
    assert match([job(requester="0xabc")], [me, other]) == [Assignment(1, ("0xdef",))]
    assert match([job(requester="0xabc")], [me]) == []
    assert not is_eligible(me, job(requester="0xABC"))


@pytest.mark.parametrize("replicas", [0, 2, 4, 6])
def test_replicas_must_be_one_three_or_five(replicas: int) -> None:
    with pytest.raises(MatchInputError, match="replicas must be 1, 3 or 5"):
        job(replicas=replicas)


def test_bad_input_is_reported() -> None:
    with pytest.raises(MatchInputError, match="appears twice; pass one view per address"):
        match([job()], [provider("0xA"), provider("0xa")])
    with pytest.raises(MatchInputError, match="job 1 appears twice"):
        match([job(), job()], [provider("0xa")])
    with pytest.raises(MatchInputError, match="must not be negative"):
        job(collateral_multiple=-1)
    with pytest.raises(MatchInputError, match="profile id"):
        job(profile=256)
    with pytest.raises(MatchInputError) as no_load:
        match([job()], [provider("0xa")], max_load=0)
    assert str(no_load.value) == "max_load must be at least 1, or None for no limit"
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
            min_exec_window=rng.choice((0, 0, 600, 3_600)),
            max_units=rng.choice((3, 100)),
        )
        for i in range(200)
    ]
    jobs = [
        job(
            i,
            profile=rng.randint(0, 1),
            max_price_per_unit=rng.randint(1, 9),
            replicas=rng.choice((1, 1, 3)),
            min_vram_gib=rng.randint(0, 80),
            units=rng.randint(1, 5),
            collateral_multiple=rng.randint(1, 20),
            exec_window=rng.choice((60, 600, 3_600)),
        )
        for i in range(1, 400)
    ]

    for max_load in (None, 4):
        result = match(jobs, pool, max_load=max_load)
        assert result == reference(jobs, pool, max_load)
        assert len(result) > 100


def test_collateral_mirrors_the_contract() -> None:
    assert collateral_for(2, 5, 100) == 1_000
    assert job(units=5, collateral_multiple=2).collateral_at(100) == 1_000


def test_the_reference_rules_admit_a_provider_at_every_bound() -> None:
    # Each requirement met exactly: stake equal to the collateral, price equal to the max, ...
    j = job(profile=2, min_vram_gib=8, units=2, collateral_multiple=5, exec_window=600)
    exact = provider(
        "0xexact",
        profile_mask=0b100,
        vram_gib=8,
        price_per_unit=10,
        free_stake=100,
        min_exec_window=600,
        max_units=2,
        load=2,
    )
    assert is_eligible(exact, j, max_load=3)
    assert match([j], [exact], max_load=3) == [Assignment(1, ("0xexact",))]
    assert not is_eligible(replace(exact, profile_mask=0b011), j)
    assert not is_eligible(replace(exact, free_stake=99), j)


def test_reputation_is_an_integer_rounded_down() -> None:
    from marketplace.matching.matcher import REPUTATION_SCALE

    # (1 + 1) / (1 + 0 + 2) = 2/3 of the scale, rounded down as the contract would.
    assert reputation(1, 0) == 2 * REPUTATION_SCALE // 3
    assert isinstance(reputation(1, 0), int)


def test_tiers_keep_every_distinct_demand_up_to_the_limit() -> None:
    from marketplace.matching.matcher import _tiers

    assert _tiers([5, 1, 3, 3], 3) == [1, 3, 5]
    assert _tiers([5, 1, 3, 7], 3) == [1, 3, 5]


def test_a_provider_is_kept_for_a_later_job_of_its_bucket_with_a_lower_floor() -> None:
    # Ten distinct collateral floors exceed the 8 stake tiers, so the jobs of 4 and 5 units
    # share a bucket. P (stake 45) cannot cover the 5-unit job first in line (collateral 50)
    # but can cover the 4-unit one last in line (40): the pruning bound of the first job must
    # count the last job's floor, or P is dropped before its turn and Q takes both.
    cheap = provider(ADDRESSES[0], price_per_unit=1, free_stake=45, vram_gib=0)
    dear = provider(ADDRESSES[1], price_per_unit=2, free_stake=1_000, vram_gib=0)
    first = job(1, units=5)
    others = [job(10 + u, units=u, min_vram_gib=1) for u in (1, 2, 3, 6, 7, 8, 9, 10)]
    last = job(2, units=4)
    result = match([first, *others, last], [cheap, dear])
    assert result == [
        Assignment(1, (dear.address,)),
        Assignment(2, (cheap.address,)),
    ]
    assert result == reference([first, *others, last], [cheap, dear], None)


def test_a_pruning_bound_counts_every_later_job_of_its_bucket_in_any_position() -> None:
    # As above, with the 4-unit job right after the 5-unit one: the bound of the 5-unit job
    # must include the very next job's floor too, not only every other one.
    cheap = provider(ADDRESSES[0], price_per_unit=1, free_stake=45, vram_gib=0)
    dear = provider(ADDRESSES[1], price_per_unit=2, free_stake=1_000, vram_gib=0)
    others = [job(10 + u, units=u, min_vram_gib=1) for u in (1, 2, 3, 6, 7, 8, 9, 10)]
    jobs = [others[0], job(1, units=5), job(2, units=4), *others[1:]]
    result = match(jobs, [cheap, dear])
    assert result == [Assignment(1, (dear.address,)), Assignment(2, (cheap.address,))]
    assert result == reference(jobs, [cheap, dear], None)


def test_a_provider_left_with_exactly_the_next_floor_takes_the_next_job() -> None:
    # After the first job P's free stake equals the collateral of the second: it goes back into
    # the heap and takes it.
    only = provider(ADDRESSES[0], price_per_unit=1, free_stake=20)
    jobs = [job(1, units=1), job(2, units=1)]
    assert match(jobs, [only]) == [
        Assignment(1, (only.address,)),
        Assignment(2, (only.address,)),
    ]


def test_a_provider_whose_stake_just_covers_a_risen_clearing_price_is_filed_once() -> None:
    # B's ask raises the clearing price to 2: A's stake covers the collateral at 2 exactly and
    # stays chosen, A2's does not and goes back. Three replicas cannot be found, so everyone
    # goes back into the heap, A once: the identical second job is not filled with A twice.
    a = provider(ADDRESSES[0], price_per_unit=1, free_stake=20)
    a2 = provider(ADDRESSES[1], price_per_unit=1, free_stake=15)
    b = provider(ADDRESSES[2], price_per_unit=2, free_stake=1_000)
    jobs = [job(1, replicas=3), job(2, replicas=3)]
    assert match(jobs, [a, a2, b]) == [] == reference(jobs, [a, a2, b], None)
