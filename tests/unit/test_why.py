"""Why an open job waits: each requirement, when it is the one that leaves too few providers,
is named with the figure that would fix it; a job that some providers can take is matchable."""

from __future__ import annotations

from dataclasses import replace

import pytest

from marketplace.matching.matcher import OpenJob, ProviderView
from marketplace.matching.why import explain

TOKEN = 10**18
PRICE = TOKEN // 1000  # 0.001 tokens per unit


def provider(i: int, **changes: object) -> ProviderView:
    view = ProviderView(
        address=f"0x{i:040x}",
        profile_mask=0b1,
        vram_gib=24,
        price_per_unit=PRICE,
        free_stake=1_000 * TOKEN,
        unbonding=False,
        registered=True,
        live=True,
        min_exec_window=60,
        max_units=1_000,
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def job(**changes: object) -> OpenJob:
    base = OpenJob(
        job_id=7,
        profile=0,
        units=10,
        max_price_per_unit=PRICE,
        replicas=3,
        min_vram_gib=0,
        collateral_multiple=10,
        exec_window=3_600,
        requester="0x" + "ee" * 20,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_job_enough_providers_can_take_is_matchable() -> None:
    w = explain(job(), [provider(i) for i in range(4)])
    assert (w.code, w.eligible, w.needed) == ("matchable", 4, 3)
    assert w.reason == "4 providers can take it; the relayer assigns it in its next round"


@pytest.mark.parametrize(
    ("providers", "the_job", "code", "says"),
    [
        ([provider(1), provider(2)], job(), "providers", "2 registered, bonded providers"),
        (
            [provider(1), provider(2), provider(3, unbonding=True)],
            job(),
            "providers",
            "the job needs 3: wait for providers to join, or lower the replicas",
        ),
        (
            [provider(1), provider(2, live=False), provider(3, live=False)],
            job(),
            "live",
            "1 of 3 providers are live (heartbeating)",
        ),
        (
            [provider(i) for i in range(3)],
            job(profile=1),
            "profile",
            "0 live providers run profile 1",
        ),
        (
            [provider(1), provider(2), provider(3, vram_gib=80)],
            job(min_vram_gib=40),
            "vram",
            "1 live providers of the profile have 40 GiB of GPU memory (the most is 80 GiB)",
        ),
        (
            [
                provider(1),
                provider(2, price_per_unit=2 * PRICE),
                provider(3, price_per_unit=3 * PRICE),
            ],
            job(),
            "price",
            "max price of 0.001 tokens per unit; 3 would at 0.003: raise --max-price to that",
        ),
        (
            [provider(1), provider(2, min_exec_window=7_200), provider(3, min_exec_window=9_000)],
            job(),
            "window",
            "1 of them accept an exec window of 3600 s; 3 would at 9000 s",
        ),
        (
            [provider(1, max_units=5), provider(2, max_units=8), provider(3)],
            job(),
            "units",
            "1 of them take a job of 10 units; 3 would take 5: split the work",
        ),
        (
            [provider(1), provider(2), provider(3, free_stake=PRICE * 10 * 10 - 1)],
            job(),
            "stake",
            "2 of them have the free stake for the collateral (10 x units x price)",
        ),
        (
            [provider(1), provider(2), provider(0xEE)],
            job(requester="0x" + "00" * 19 + "ee", replicas=3),
            "barred",
            "2 of them may take it",
        ),
        (
            [provider(1), provider(2), provider(3)],
            job(exclude=frozenset({f"0x{2:040x}"})),
            "barred",
            "missed the job's deadline before",
        ),
    ],
)
def test_the_first_requirement_short_of_providers_is_named_with_its_fix(
    providers: list[ProviderView], the_job: OpenJob, code: str, says: str
) -> None:
    w = explain(the_job, providers)
    assert w.code == code and says in w.reason, w
    assert w.eligible < w.needed == the_job.replicas


def test_requirements_are_named_in_order_the_earliest_short_one_wins() -> None:
    # Both the price and the window leave too few: the price comes first.
    dear = [provider(i, price_per_unit=2 * PRICE, min_exec_window=9_999) for i in range(3)]
    assert explain(job(), dear).code == "price"
    # With the price fixed, the window is what remains.
    assert explain(job(max_price_per_unit=2 * PRICE), dear).code == "window"


def test_a_single_replica_job_counts_one() -> None:
    w = explain(job(replicas=1), [provider(1, live=False)])
    assert (w.code, w.eligible, w.needed) == ("live", 0, 1)


def test_an_idle_provider_hears_its_own_state_first() -> None:
    from marketplace.matching.why import why_idle

    jobs = [job()]
    assert why_idle(provider(1, registered=False), jobs)[0].startswith("not registered")
    assert why_idle(provider(1, unbonding=True), jobs)[0].startswith("unbonding")
    assert why_idle(provider(1, live=False), jobs)[0].startswith("not live")
    assert why_idle(provider(1), []) == ["no open jobs on the market"]
    broke = replace(provider(1), free_stake=0)
    assert why_idle(broke, [])[0].startswith("no free stake: every job locks collateral")
    assert why_idle(provider(1), jobs) == []  # it can take one: the next round gives it


def test_an_idle_provider_hears_which_requirements_it_misses_most_common_first() -> None:
    from marketplace.matching.why import why_idle

    dear = provider(1, price_per_unit=5 * PRICE, min_exec_window=7_200)
    jobs = [job(job_id=1), job(job_id=2), job(job_id=3, profile=1), job(job_id=4, exec_window=60)]
    assert why_idle(dear, jobs) == [
        "3 of 4 open jobs pay less per unit than you ask",
        "1 of 4 open jobs run another profile",
    ]
    poor = provider(1, free_stake=1)
    assert why_idle(poor, [job()]) == ["1 of 1 open jobs need more collateral than your free stake"]
    own = provider(0xEE)
    assert why_idle(own, [job(requester=f"0x{0xEE:040x}")]) == [
        "1 of 1 open jobs are your own or ones you missed the deadline of"
    ]
