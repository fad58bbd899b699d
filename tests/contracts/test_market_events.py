"""Market's typed event reads against the deployed contracts: each returns what the chain logged
for the job asked about, in chain order, whatever the block range is cut into."""

from __future__ import annotations

from marketplace.devnet import scenarios
from marketplace.devnet.scenarios import BAD, GOOD, Cast
from marketplace.protocol import hashing
from marketplace.protocol.client import JobState


def test_an_audited_jobs_events_read_back_typed(cast: Cast) -> None:
    start = cast.deployment.block
    job = scenarios.replicas3_one_wrong(cast)  # alice, bob GOOD; dave BAD; verifiers GOOD
    assert cast.owner.state(job) == JobState.SETTLED
    executors = [cast.providers[n].address for n in ("alice", "bob", "dave")]
    verifiers = [v.provider for v in cast.owner.verifiers(job)]
    assert verifiers

    created = {
        c.job_id: c for c in cast.owner.jobs_created(cast.requester.address, from_block=start)
    }
    assert created[job].request == scenarios.job_request(3)
    assert created[job].spec_hash == scenarios.job_request(3).spec_hash
    assert created[job].requester == cast.requester.address
    assert created[job].escrow == cast.owner.job(job).escrow
    assert cast.owner.jobs_created(cast.keeper.address, from_block=start) == []

    # A chunk of 2 blocks cuts the range into many reads; none may drop or repeat a log.
    for chunk in (2, 10_000):
        seats = cast.owner.providers_assigned(job, from_block=start, chunk=chunk)
        assert [(s.job_id, s.provider, s.index) for s in seats] == [
            (job, a, i) for i, a in enumerate(executors + verifiers)
        ]
        assert all(s.price_per_unit > 0 and s.deadline > 0 for s in seats)
        order = [(s.block, s.log_index) for s in seats]
        assert order == sorted(order)

    (audit,) = cast.owner.audits_started(job, from_block=start)
    assert (audit.job_id, audit.round, audit.seats) == (job, 1, len(verifiers))
    assert (audit.block, audit.log_index) < (seats[3].block, seats[3].log_index)
    assert scenarios.drawn_verifiers(cast.owner, job) == [(1, verifiers)]

    digests = [GOOD, GOOD, BAD] + [GOOD] * len(verifiers)
    committed = cast.owner.results_committed(job, from_block=start)
    assert [(c.job_id, c.provider, c.result_hash, c.seal) for c in committed] == [
        (job, a, hashing.result_hash(job, d), hashing.seal(a, job, d))
        for a, d in zip(executors + verifiers, digests, strict=True)
    ]

    (slash,) = cast.owner.providers_slashed(job, from_block=start)
    assert (slash.job_id, slash.provider) == (job, cast.providers["dave"].address)
    assert slash.amount > 0
    assert cast.owner.providers_slashed(job + 1, from_block=start) == []
