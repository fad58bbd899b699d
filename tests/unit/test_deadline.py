"""The time budget of a duty: transient failures are retried while the deadline can be met."""

from __future__ import annotations

import pytest

from provider.deadline import Budget, ChainClock


def test_waits_double_up_to_the_cap() -> None:
    budget = Budget(margin=15, first_delay=1, max_delay=20)
    assert [budget.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 20, 20]
    assert budget.delay(10_000) == 20  # no overflow after a long outage


def test_a_run_is_feasible_while_chain_time_plus_margin_is_before_the_deadline() -> None:
    budget = Budget(margin=15)
    assert budget.feasible(chain_now=1_000, deadline=1_015)
    assert not budget.feasible(chain_now=1_001, deadline=1_015)


def test_the_wait_never_runs_past_the_last_useful_moment() -> None:
    budget = Budget(margin=15, first_delay=1, max_delay=20)
    # 100 s left: the plain backoff.
    assert budget.next_wait(3, chain_now=1_000, deadline=1_115) == 8
    # 5 s of room before deadline - margin: one last try after 5 s, not after 16.
    assert budget.next_wait(4, chain_now=1_095, deadline=1_115) == 5
    # Past deadline - margin: give up.
    assert budget.next_wait(0, chain_now=1_101, deadline=1_115) is None


def test_without_a_known_deadline_the_backoff_is_plain() -> None:
    budget = Budget(margin=15, first_delay=1, max_delay=20)
    assert budget.next_wait(2, chain_now=None, deadline=1_000) == 4
    assert budget.next_wait(2, chain_now=5_000, deadline=None) == 4


def test_a_relayer_outage_of_a_minute_is_waited_out_within_a_long_deadline() -> None:
    """What the fault trials lost: a 60 s outage gave the job up after 14 s."""
    budget = Budget(margin=15, first_delay=1, max_delay=20)
    now, attempt, deadline = 0.0, 0, 3_600
    while now < 60:  # the relayer is down for 60 s
        wait = budget.next_wait(attempt, now, deadline)
        assert wait is not None
        now += wait
        attempt += 1
    assert now < 60 + 20  # back within one capped wait of the relayer


@pytest.mark.parametrize(("margin", "first", "cap"), [(-1, 1, 2), (1, 0, 2), (1, 3, 2)])
def test_nonsense_budgets_are_refused(margin: float, first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="Budget needs"):
        Budget(margin=margin, first_delay=first, max_delay=cap)


def test_chain_clock_moves_on_with_the_local_clock_between_reads() -> None:
    ticks = iter([100.0, 130.0, 200.0, 201.0])
    clock = ChainClock(monotonic=lambda: next(ticks))
    assert clock.now() is None
    clock.observe(5_000)  # read at local 100
    assert clock.now() == 5_030  # 30 s later
    clock.observe(5_050)  # read at local 200 (the chain lagged the local clock)
    assert clock.now() == 5_051
