"""Jobs that cannot run as specified settle with a deterministic failure result; real embed jobs
give the same digest as the model run directly."""

from __future__ import annotations

import json

import pytest

from marketplace.protocol.client import JobState
from marketplace.protocol.digest import digest
from provider.execute import EMBED_MODEL
from provider.ledger import DutyStatus
from tests.provider.conftest import PARAMS, PROFILE, World

pytestmark = pytest.mark.integration

SENTENCES = [
    "A provider stakes tokens.",
    "The requester pays into escrow.",
    "Cheaters are slashed.",
]


@pytest.mark.providers(3)
def test_malformed_input_settles_with_the_same_failure_on_every_replica(world: World) -> None:
    world.start_worker()
    for name in ("alice", "bob", "carol"):
        world.agent(name)
    job = world.submit("embed", EMBED_MODEL, (b"not json at all",), {}, replicas=3)

    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")
    assert len(world.commits(job)) == 3
    address = world.cast.providers["bob"].address
    payload = world.result(job, address)
    assert payload.failure == "input-invalid"
    assert "JSON" in payload.message
    world.result_digest(job, address)  # the failure result verifies like any result
    for name in ("alice", "bob", "carol"):
        record = world.cast.owner.provider(world.cast.providers[name].address)
        assert (record.jobs_done, record.jobs_slashed) == (1, 0)


@pytest.mark.providers(3)
def test_a_seat_its_operator_released_by_hand_is_not_committed(world: World) -> None:
    agents = [world.agent(name) for name in ("alice", "bob", "carol")]
    alice = agents[0]
    job = world.submit_matmul(8, 11, replicas=3)
    world.relayer.step()
    for agent in agents:
        agent.step()
    (queued,) = alice.ledger.all()
    assert queued.job_id == job and queued.status == DutyStatus.QUEUED
    # The operator hands the seat back while its task waits for a worker.
    world.cast.providers["alice"].release(job)
    world.start_worker()
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")
    me = world.cast.providers["alice"].address
    assert me not in world.commits(job) and len(world.commits(job)) == 2
    (duty,) = alice.ledger.all()
    assert (duty.status, duty.note) == (
        DutyStatus.SKIPPED,
        "the seat was released (or slashed); the market takes no commit",
    )


def test_embed_job_matches_the_model_run_directly(world: World) -> None:
    from provider.runtime.embed import embed

    world.start_worker()
    world.agent("alice")
    data = json.dumps(SENTENCES).encode()
    job = world.submit("embed", EMBED_MODEL, (data,), {"batch_size": 2})

    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    address = world.cast.providers["alice"].address
    payload = world.result(job, address)
    assert payload.failure == ""
    assert payload.outputs["embeddings"].shape == (3, 384)
    assert world.result_digest(job, address) == digest(PROFILE, embed(SENTENCES, batch_size=2))
    world.advance(PARAMS.challenge_window + 1)
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")
