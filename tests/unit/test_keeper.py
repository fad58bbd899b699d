"""The keeper's pure decisions: each planned call is one the contract accepts, once each."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.protocol.client import JobState
from marketplace.relayer.keeper import FLAG_DRAWN, JobView, action, chunk, plan

NOW = 1_000_000
HEAD = 500


def view(job_id: int, state: JobState, deadline: int = NOW + 10, **kw: int) -> JobView:
    return JobView(job_id=job_id, state=state, deadline=deadline, **kw)


# ---------------------------------------------------------------------- the contract's rules
# A model of JobMarket's checks for a call mined at block `block` > head, time `t` >= now.


def accepts(kind: str, v: JobView, block: int, t: int) -> bool:
    past = t > v.deadline
    if kind == "draw_audits":
        return v.state == JobState.COMMITTED and block != v.commit_block
    if kind == "finalize":
        if v.state == JobState.REVEALING:
            return past or v.reveal_mask == v.commit_mask
        if v.state == JobState.COMMITTED:
            return past and (v.drawn or block != v.commit_block)
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


def test_auditing_finalized_with_verifiers_else_expired() -> None:
    with_v = view(1, JobState.AUDITING, deadline=NOW - 1, replicas=1, participants=4)
    without = view(2, JobState.AUDITING, deadline=NOW - 1, replicas=1, participants=1)
    assert action(with_v, NOW, HEAD) == "finalize"
    assert action(without, NOW, HEAD) == "expire"
    assert action(view(3, JobState.AUDITING, participants=4), NOW, HEAD) is None


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
    assert p.draw_audits == [] and p.finalize == []
    assert p.ids("expire") == list(range(1, 11))
    assert plan([], NOW, HEAD).empty


def test_chunk_rejects_zero() -> None:
    with pytest.raises(ValueError):
        chunk([1], 0)


# ---------------------------------------------------------------------- property

views_st = st.builds(
    JobView,
    job_id=st.integers(1, 60),
    state=st.sampled_from(list(JobState)),
    deadline=st.integers(NOW - 5, NOW + 5),
    flags=st.integers(0, 7),
    replicas=st.integers(1, 5),
    participants=st.integers(0, 8),
    commit_mask=st.integers(0, 255),
    reveal_mask=st.integers(0, 255),
    commit_block=st.integers(HEAD - 3, HEAD),  # a commit is in a mined block
)


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
    for kind in ("draw_audits", "finalize", "expire"):
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
    Committed jobs whose commit is in the head block (drawable one block later)."""
    p = plan(views, NOW, HEAD)
    planned = set(p.ids("draw_audits")) | set(p.ids("finalize")) | set(p.ids("expire"))
    for v in views:
        due = v.state in (JobState.OPEN, JobState.ASSIGNED, JobState.AUDITING) and v.deadline < NOW
        due |= v.state == JobState.REVEALING and (
            v.deadline < NOW or v.reveal_mask == v.commit_mask
        )
        due |= v.state == JobState.COMMITTED and (
            v.deadline < NOW or (not v.drawn and v.commit_block < HEAD)
        )
        assert (v.job_id in planned) == due, v
