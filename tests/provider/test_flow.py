"""The provider end to end on real processes: assignment -> Celery worker -> commit -> settle ->
earnings withdrawn, with the requester decrypting and verifying the result."""

from __future__ import annotations

import pytest

from marketplace.protocol.client import JobState
from tests.provider.conftest import PARAMS, World, direct_digest

pytestmark = pytest.mark.integration


def test_assignment_runs_on_a_worker_commits_settles_and_pays(world: World) -> None:
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=7)

    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    assert world.commits(job) == [provider]
    digest = world.result_digest(job, provider)
    assert digest == direct_digest(64, 7)

    world.advance(PARAMS.challenge_window + 1)
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")
    before = world.cast.owner.balance_of(provider)
    credits = world.cast.owner.credits(provider)
    assert credits > 0
    world.cast.providers["alice"].withdraw()
    assert world.cast.owner.balance_of(provider) == before + credits
    assert world.cast.owner.provider(provider).jobs_done == 1
    duties = alice.ledger.all()
    assert [(d.job_id, d.status, d.sends) for d in duties] == [(job, "closed", 1)]
