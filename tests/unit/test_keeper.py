"""The keeper's pure decisions: each planned call is one the contract accepts, once each."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.protocol.client import FLAG_DRAWN, FLAG_RESEEDED, JobState
from marketplace.relayer.keeper import (
    KINDS,
    JobView,
    SkipBook,
    action,
    chunk,
    plan,
)

NOW = 1_000_000
HEAD = 500


def view(job_id: int, state: JobState, deadline: int = NOW + 10, **kw: int) -> JobView:
    return JobView(job_id=job_id, state=state, deadline=deadline, **kw)


# ---------------------------------------------------------------------- the contract's rules
# A model of JobMarket's checks for a call mined at block `block` > head, time `t` >= now.


def accepts(kind: str, v: JobView, block: int, t: int) -> bool:
    past = t > v.deadline
    seed = v.seed_block if v.flags & FLAG_RESEEDED else v.commit_block
    if kind == "draw_audits":
        return v.state == JobState.COMMITTED and block != seed
    if kind == "staff_audits":
        staffed = v.participants - v.verifiers_from >= v.seats
        # Staffing closes at the deadline: planned at NOW it can land too late, and then the
        # contract skips the item (BatchItemSkipped) instead of failing the batch. Judged at NOW.
        in_time = v.deadline >= NOW
        return v.state == JobState.AUDITING and not staffed and in_time and block != v.seed_block
    if kind == "finalize":
        if v.state == JobState.REVEALING:
            return past or v.reveal_mask == v.commit_mask
        if v.state == JobState.COMMITTED:
            return past and (v.drawn or block != seed)
        return v.state == JobState.AUDITING and past
    if kind == "expire":
        return v.state in (JobState.OPEN, JobState.ASSIGNED, JobState.AUDITING) and past
    raise AssertionError(kind)


# ---------------------------------------------------------------------- examples


def test_committed_is_drawn_once_the_next_block_exists() -> None:
    assert action(view(1, JobState.COMMITTED, commit_block=HEAD), NOW, HEAD) is None
    assert action(view(1, JobState.COMMITTED, commit_block=HEAD - 1), NOW, HEAD) == "draw_audits"
    drawn = view(1, JobState.COMMITTED, commit_block=HEAD - 1, flags=FLAG_DRAWN)
    assert action(drawn, NOW, HEAD) is None


def test_committed_past_deadline_is_finalized_not_drawn() -> None:
    v = view(1, JobState.COMMITTED, deadline=NOW - 1, commit_block=HEAD - 3)
    assert action(v, NOW, HEAD) == "finalize"
    at_deadline = view(1, JobState.COMMITTED, deadline=NOW, commit_block=HEAD - 3)
    assert action(at_deadline, NOW, HEAD) == "draw_audits"  # deadline is inclusive


def test_revealing_finalized_when_all_revealed_or_late() -> None:
    assert action(view(1, JobState.REVEALING, commit_mask=7, reveal_mask=7), NOW, HEAD) == (
        "finalize"
    )
    assert action(view(1, JobState.REVEALING, commit_mask=7, reveal_mask=3), NOW, HEAD) is None
    late = view(1, JobState.REVEALING, deadline=NOW - 1, commit_mask=7, reveal_mask=3)
    assert action(late, NOW, HEAD) == "finalize"


def audit(job_id: int, filled: int, **kw: int) -> JobView:
    """Round 1 of a replicas = 1 job: 3 seats from index 1, `filled` of them drawn."""
    fields = {"replicas": 1, "round": 1, "seats": 3, "verifiers_from": 1, "seed_block": HEAD - 1}
    fields.update(kw)
    return view(job_id, JobState.AUDITING, participants=1 + filled, **fields)


def test_auditing_finalized_when_staffed_else_expired() -> None:
    assert action(audit(1, 3, deadline=NOW - 1), NOW, HEAD) == "finalize"
    assert action(audit(2, 2, deadline=NOW - 1), NOW, HEAD) == "expire"
    assert action(audit(3, 3), NOW, HEAD) is None, "staffed: the verifiers commit"


def test_unstaffed_round_is_staffed_from_the_block_after_its_seed() -> None:
    assert action(audit(1, 0), NOW, HEAD) == "staff_audits"
    assert action(audit(1, 2), NOW, HEAD) == "staff_audits", "partly staffed: draw the rest"
    assert action(audit(1, 0, seed_block=HEAD), NOW, HEAD) is None, "seed block is the head"
    # Round 2 of a replicas = 3 job: 7 seats after 3 executors and 3 round-1 verifiers.
    r2 = view(
        2,
        JobState.AUDITING,
        replicas=3,
        participants=8,
        round=2,
        seats=7,
        verifiers_from=6,
        seed_block=HEAD - 5,
    )
    assert action(r2, NOW, HEAD) == "staff_audits"


def test_reseeded_draw_waits_for_its_new_seed_block() -> None:
    v = view(1, JobState.COMMITTED, commit_block=HEAD - 300, flags=FLAG_RESEEDED, seed_block=HEAD)
    assert action(v, NOW, HEAD) is None
    assert action(v, NOW, HEAD + 1) == "draw_audits"
    late = view(
        1,
        JobState.COMMITTED,
        deadline=NOW - 1,
        commit_block=HEAD - 300,
        flags=FLAG_RESEEDED,
        seed_block=HEAD,
    )
    assert action(late, NOW, HEAD) is None
    assert action(late, NOW, HEAD + 1) == "finalize"


def test_skip_book_stops_retrying_the_same_view_and_resumes_on_change() -> None:
    book = SkipBook(max_skips=2)
    v = audit(1, 0)
    assert plan([v], NOW, HEAD, skips=book).ids("staff_audits") == [1]
    assert book.record(v, "staff_audits") == 1
    assert plan([v], NOW, HEAD, skips=book).ids("staff_audits") == [1]
    assert book.record(v, "staff_audits") == 2
    assert plan([v], NOW, HEAD, skips=book).empty, "skipped twice on this view: left out"
    changed = audit(1, 1)
    assert plan([changed], NOW, HEAD, skips=book).ids("staff_audits") == [1]
    book.forget([])
    assert len(book) == 0
    with pytest.raises(ValueError):
        SkipBook(0)


def test_a_resting_round_is_not_staffed_again_but_its_other_calls_go_on() -> None:
    resting, other = audit(1, 0), audit(2, 0)
    p = plan([resting, other], NOW, HEAD, staff_resting={1})
    assert p.ids("staff_audits") == [2]
    # Resting holds back staffing only: a round past its deadline is still expired.
    late = audit(1, 0, deadline=NOW - 1)
    assert action(late, NOW, HEAD) == "expire"
    assert plan([late], NOW, HEAD, staff_resting={1}).ids("expire") == [1]


@pytest.mark.parametrize("state", [JobState.OPEN, JobState.ASSIGNED])
def test_open_and_assigned_expire_after_deadline(state: JobState) -> None:
    assert action(view(1, state, deadline=NOW - 1), NOW, HEAD) == "expire"
    assert action(view(1, state, deadline=NOW), NOW, HEAD) is None


@pytest.mark.parametrize(
    "state", [JobState.NONE, JobState.SETTLED, JobState.REFUNDED, JobState.EXPIRED]
)
def test_terminal_and_unknown_jobs_are_left_alone(state: JobState) -> None:
    assert action(view(1, state, deadline=0), NOW, HEAD) is None


def test_plan_chunks_each_list_and_keeps_ids_sorted() -> None:
    views = [view(i, JobState.OPEN, deadline=NOW - 1) for i in range(10, 0, -1)]
    p = plan(views, NOW, HEAD, max_batch=3)
    assert p.expire == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert p.draw_audits == [] and p.finalize == [] and p.staff_audits == []
    assert p.ids("expire") == list(range(1, 11))
    assert plan([], NOW, HEAD).empty


def test_after_an_outage_one_plan_catches_up_on_everything_that_fell_due() -> None:
    # The relayer was away while time passed: draws, staffing, finalizations and expiries of
    # many jobs are all due at once. One plan holds every one of them, in batches.
    views = [
        *(view(i, JobState.COMMITTED, commit_block=HEAD - 9) for i in range(1, 6)),
        *(audit(i, 1, deadline=NOW + 5) for i in range(10, 14)),
        *(view(i, JobState.COMMITTED, deadline=NOW - 50, commit_block=1) for i in range(20, 27)),
        *(audit(i, 3, deadline=NOW - 1) for i in range(30, 33)),
        *(view(i, JobState.REVEALING, commit_mask=7, reveal_mask=7) for i in range(40, 42)),
        *(audit(i, 2, deadline=NOW - 1) for i in range(50, 53)),
        *(view(i, JobState.OPEN, deadline=NOW - 900) for i in range(60, 66)),
        *(view(i, JobState.ASSIGNED, deadline=NOW - 1) for i in range(70, 72)),
    ]
    p = plan(views, NOW, HEAD, max_batch=4)
    assert p.ids("draw_audits") == list(range(1, 6))
    assert p.ids("staff_audits") == list(range(10, 14))
    assert p.ids("finalize") == [*range(20, 27), *range(30, 33), 40, 41]
    assert p.ids("expire") == [*range(50, 53), *range(60, 66), 70, 71]
    assert all(len(batch) <= 4 for kind in KINDS for batch in getattr(p, kind))
    planned = [j for kind in KINDS for j in p.ids(kind)]
    assert sorted(planned) == sorted(v.job_id for v in views)  # every job, once


def test_chunk_rejects_zero() -> None:
    with pytest.raises(ValueError):
        chunk([1], 0)


# ---------------------------------------------------------------------- property

views_st = st.builds(
    JobView,
    job_id=st.integers(1, 60),
    state=st.sampled_from(list(JobState)),
    deadline=st.integers(NOW - 5, NOW + 5),
    flags=st.integers(0, 15),
    replicas=st.sampled_from((1, 3, 5)),
    participants=st.integers(0, 16),
    commit_mask=st.integers(0, 255),
    reveal_mask=st.integers(0, 255),
    commit_block=st.integers(HEAD - 3, HEAD),  # a commit is in a mined block
    round=st.integers(0, 2),
    seats=st.sampled_from((0, 1, 3, 5, 7)),
    verifiers_from=st.integers(0, 8),
    seed_block=st.integers(HEAD - 3, HEAD),
).filter(lambda v: v.verifiers_from <= v.participants)  # verifiers are participants


@settings(max_examples=300, deadline=None)
@given(
    views=st.lists(views_st, max_size=40),
    max_batch=st.integers(1, 7),
    later_blocks=st.integers(1, 5),
    later_seconds=st.integers(0, 20),
)
def test_every_planned_call_is_accepted_and_no_id_twice(
    views: list[JobView], max_batch: int, later_blocks: int, later_seconds: int
) -> None:
    p = plan(views, NOW, HEAD, max_batch=max_batch)
    first: dict[int, JobView] = {}
    for v in views:  # plan keeps the first view of a duplicated id
        first.setdefault(v.job_id, v)
    seen: list[int] = []
    for kind in ("draw_audits", "staff_audits", "finalize", "expire"):
        batches = getattr(p, kind)
        assert all(1 <= len(b) <= max_batch for b in batches)
        for job_id in p.ids(kind):
            v = first[job_id]
            assert accepts(kind, v, HEAD + later_blocks, NOW + later_seconds), (kind, v)
            seen.append(job_id)
    assert len(seen) == len(set(seen))


@settings(max_examples=200, deadline=None)
@given(views=st.lists(views_st, max_size=30, unique_by=lambda v: v.job_id))
def test_every_actionable_job_is_planned(views: list[JobView]) -> None:
    """Nothing the contract would accept at NOW + 1 in a later block is left out, apart from
    draws and staffing whose seed block is the head block (possible one block later)."""
    p = plan(views, NOW, HEAD)
    planned = {
        j for kind in ("draw_audits", "staff_audits", "finalize", "expire") for j in p.ids(kind)
    }
    for v in views:
        seed = v.seed_block if v.flags & FLAG_RESEEDED else v.commit_block
        staffed = v.participants - v.verifiers_from >= v.seats
        due = v.state in (JobState.OPEN, JobState.ASSIGNED, JobState.AUDITING) and v.deadline < NOW
        due |= v.state == JobState.AUDITING and not staffed and v.seed_block < HEAD
        due |= v.state == JobState.REVEALING and (
            v.deadline < NOW or v.reveal_mask == v.commit_mask
        )
        due |= v.state == JobState.COMMITTED and (
            (v.deadline < NOW and (v.drawn or seed < HEAD)) or (not v.drawn and seed < HEAD)
        )
        assert (v.job_id in planned) == due, v


def test_skip_book_defaults_to_three_skips_and_accepts_one() -> None:
    book = SkipBook()
    v = audit(1, 0)
    for _ in range(2):
        book.record(v, "staff_audits")
    assert not book.blocked(v, "staff_audits")
    book.record(v, "staff_audits")
    assert book.blocked(v, "staff_audits")
    once = SkipBook(1)
    once.record(v, "staff_audits")
    assert once.blocked(v, "staff_audits")
    with pytest.raises(ValueError, match=r"^max_skips must be at least 1$"):
        SkipBook(0)


def test_skip_book_forgets_only_jobs_no_longer_live() -> None:
    book = SkipBook(1)
    live, gone = audit(1, 0), audit(2, 0)
    book.record(live, "staff_audits")
    book.record(gone, "staff_audits")
    book.forget([1])
    assert len(book) == 1
    assert book.blocked(live, "staff_audits")
    assert not book.blocked(gone, "staff_audits")


def test_plan_batches_fifty_by_default_and_plans_past_a_duplicate_view() -> None:
    views = [audit(i, 0) for i in range(1, 52)]
    batches = plan(views, NOW, HEAD).staff_audits
    assert [len(b) for b in batches] == [50, 1]
    # A job seen twice (two sources report it) is planned once, and the jobs after it still are.
    assert plan([audit(1, 0), audit(1, 0), audit(2, 0)], NOW, HEAD).ids("staff_audits") == [1, 2]


def test_chunk_names_the_bad_batch_size() -> None:
    with pytest.raises(ValueError, match=r"^batch size must be at least 1$"):
        chunk([1], 0)
    assert chunk([1, 2, 3], 1) == [[1], [2], [3]]
