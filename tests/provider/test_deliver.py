"""The agent's hand-off of a finished task (`Agent.deliver`, run when the worker announces a
result): commit and result notice without the rest of a step, and nothing sent once nothing
is left to hand on."""

from __future__ import annotations

import time

import pytest

from marketplace.protocol.client import JobState
from tests.provider.conftest import STEP_TIMEOUT, World, direct_digest

pytestmark = pytest.mark.integration


def test_a_finished_task_is_committed_and_announced_by_deliver_alone(world: World) -> None:
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=11)
    world.drive(lambda: bool(alice.ledger.all()), what="the task sent")
    (duty,) = alice.ledger.all()
    assert duty.status == "queued"

    deadline = time.monotonic() + STEP_TIMEOUT
    while alice.celery.backend.get_task_meta(duty.task_id, cache=False)["status"] != "SUCCESS":
        assert time.monotonic() < deadline, "the worker stored no result"
        time.sleep(0.05)
    checkpoint = alice.store.checkpoint(world.cast.deployment.chain_id)
    report = alice.deliver()

    assert report.computed == [job] and report.committed == [job]
    assert world.state(job) == JobState.COMMITTED
    assert world.commits(job) == [provider]
    assert world.result_digest(job, provider) == direct_digest(64, 11)
    (after,) = alice.ledger.all()
    assert after.status == "committed" and after.commit_tx and after.notice_posted
    # Only the hand-off ran: the agent's listener did not read the chain.
    assert alice.store.checkpoint(world.cast.deployment.chain_id) == checkpoint
    assert alice.deliver().committed == []  # nothing left to hand on: no second commit
    assert world.commits(job) == [provider]
