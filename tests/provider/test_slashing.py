"""Cheating providers run by the real agent are slashed through the real contracts; the honest
ones they run beside are paid and never slashed."""

from __future__ import annotations

import pytest

from marketplace.devnet import scenarios
from marketplace.protocol.client import JobState, ProviderTerms
from provider import agent as agent_module
from tests.provider.conftest import PARAMS, World, direct_digest

pytestmark = pytest.mark.integration


def _cheapest(world: World, name: str) -> None:
    """Makes `name` the matcher's first choice (lowest ask)."""
    world.cast.providers[name].update_terms(
        ProviderTerms(profile_mask=0b1, price_per_unit=scenarios.PRICE // 2, gpu_model="cpu")
    )


def _idle(world: World, job: int) -> bool:
    """Whether the job only waits on a window: no duty left to compute, commit or reveal (a
    copycat's commitment has no digest to reveal)."""
    pending = [
        d
        for a in world.agents.values()
        for d in a.ledger.all()
        if d.job_id == job
        and (d.status in ("queued", "computed") or (d.status == "committed" and d.digest))
    ]
    if world.state(job) == JobState.COMMITTED:
        pending = [d for d in pending if d.status != "committed"]
    return not pending and world.state(job) in (JobState.COMMITTED, JobState.REVEALING)


def _settle(world: World, job: int) -> None:
    """Drives the job to a terminal state, moving the clock past each window it waits on."""
    for _ in range(4):
        world.drive(
            lambda: world.state(job).terminal or _idle(world, job),
            what=f"job {job} to wait on a window",
        )
        if world.state(job).terminal:
            return
        world.advance(max(PARAMS.challenge_window, PARAMS.reveal_window) + 1)
    world.drive(lambda: world.state(job).terminal, what=f"job {job} to close")


def _all_revealed(world: World, job: int) -> bool:
    """Whether the job is Revealing and every seat that committed has revealed."""
    j = world.cast.owner.job(job)
    return j.state == JobState.REVEALING and j.reveal_mask == j.commit_mask


def _slashed(world: World, name: str) -> int:
    return world.cast.owner.provider(world.cast.providers[name].address).jobs_slashed


@pytest.mark.providers(4)
def test_lazy_executor_is_caught_by_the_audit_and_slashed(world: World) -> None:
    scenarios.set_audit_rate(world.cast, 10_000)
    world.audits = True
    _cheapest(world, "alice")
    world.start_worker()
    world.agent("alice", "lazy")
    for name in ("bob", "carol", "dave"):
        world.agent(name)
    stake = world.cast.owner.provider(world.cast.providers["alice"].address).stake

    job = world.submit_matmul(48, seed=3)
    world.drive(lambda: world.state(job) == JobState.AUDITING, what="the audit")
    _settle(world, job)

    # A caught cheater's job is refunded in full; the verifiers are paid from its slash.
    assert world.state(job) == JobState.REFUNDED
    alice = world.cast.owner.provider(world.cast.providers["alice"].address)
    assert (alice.jobs_slashed, alice.locked) == (1, 0)
    assert alice.stake < stake
    for name in ("bob", "carol", "dave"):
        assert _slashed(world, name) == 0
        assert world.cast.owner.credits(world.cast.providers[name].address) > 0
    assert world.cast.owner.credits(world.cast.providers["alice"].address) == 0
    verifier = world.cast.providers["bob"].address
    assert world.result_digest(job, verifier) == direct_digest(48, 3)


@pytest.mark.providers(3)
def test_copycat_replica_cannot_reveal_and_is_slashed(world: World) -> None:
    world.start_worker()
    world.agent("alice", "copycat")
    world.agent("bob")
    world.agent("carol")

    job = world.submit_matmul(48, seed=5, replicas=3)
    world.drive(lambda: len(world.commits(job)) == 3, what="three commits")
    _settle(world, job)

    assert world.state(job) == JobState.SETTLED
    assert _slashed(world, "alice") == 1
    assert (_slashed(world, "bob"), _slashed(world, "carol")) == (0, 0)
    copycat = world.agents["alice"].ledger.all()
    assert [d.status for d in copycat] == ["closed"] and copycat[0].digest is None


@pytest.mark.providers(2)
def test_no_show_is_slashed_and_the_job_is_reassigned(world: World) -> None:
    _cheapest(world, "alice")
    world.start_worker()
    world.agent("alice", "no-show")
    world.agent("bob")

    job = world.submit_matmul(32, seed=9)
    world.drive(lambda: world.state(job) == JobState.ASSIGNED, what="the assignment")
    world.advance(3_600 + 1)  # the job's execution window
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the reassigned commit")
    _settle(world, job)

    assert world.state(job) == JobState.SETTLED
    assert (_slashed(world, "alice"), _slashed(world, "bob")) == (1, 0)
    assert world.commits(job) == [world.cast.providers["bob"].address]


@pytest.mark.providers(4)
def test_with_no_keeper_the_executors_agent_staffs_its_audit_and_drawn_verifiers_decide(
    world: World,
) -> None:
    world.relayer.step = lambda: None  # type: ignore[method-assign]  # relayer (keeper) down
    scenarios.set_audit_rate(world.cast, 10_000)
    world.audits = True
    world.start_worker()
    lazy = world.agent("alice", "lazy")
    for name in ("bob", "carol", "dave"):
        world.agent(name)
    job = world.submit_matmul(48, seed=3)
    world.cast.matcher.assign(job, [world.cast.providers["alice"].address])
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    world.cast.keeper.draw_audit(job)
    assert world.state(job) == JobState.AUDITING

    # Nobody but the executor's own agent calls staffAudit; the contract draws the verifiers.
    world.drive(lambda: world.cast.owner.job(job).staffed, what="the audit to be staffed")
    assert lazy.ledger.all()[0].job_id == job
    ((round_, drawn),) = scenarios.drawn_verifiers(world.cast.owner, job)
    others = {world.cast.providers[n].address for n in ("bob", "carol", "dave")}
    assert round_ == 1 and set(drawn) == others  # 3 seats, 3 providers outside the job

    # The drawn verifiers' agents run the job, commit while Auditing and reveal.
    world.drive(lambda: _all_revealed(world, job), what="every reveal")
    world.cast.keeper.finalize(job)
    assert world.state(job) == JobState.REFUNDED
    assert _slashed(world, "alice") == 1
    for name in ("bob", "carol", "dave"):
        assert _slashed(world, name) == 0
        assert world.cast.owner.credits(world.cast.providers[name].address) > 0
        digest = world.result_digest(job, world.cast.providers[name].address)
        assert digest == direct_digest(48, 3)


@pytest.mark.providers(4)
def test_a_verifier_seat_whose_events_never_arrived_is_taken_from_the_chain(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node restarted from a state dump can serve a block's state without its events: the
    drawn verifiers' indexes go past the staffing with no ProviderAssigned, and their agents
    find the seats in the chain's state instead of being slashed as no-shows."""
    monkeypatch.setattr(agent_module, "_RECONCILE_EVERY", 0.0)
    world.relayer.step = lambda: None  # type: ignore[method-assign]  # the test is the keeper
    scenarios.set_audit_rate(world.cast, 10_000)
    world.audits = True
    world.start_worker()
    world.agent("alice")
    names = ("bob", "carol", "dave")
    verifiers = [world.agent(name) for name in names]
    job = world.submit_matmul(48, seed=13)
    world.cast.matcher.assign(job, [world.cast.providers["alice"].address])
    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    world.cast.keeper.draw_audit(job)
    world.drive(
        lambda: all(
            (row := a.store.job(job)) is not None and row.state == JobState.AUDITING
            for a in verifiers
        ),
        agents=verifiers,
        what="the verifiers' indexes to see the audit drawn",
    )

    world.cast.keeper.staff_audit(job)
    head = world.w3.eth.get_block("latest")
    chain_id = world.cast.deployment.chain_id
    for agent in verifiers:  # past the staffing block, without its events
        agent.store.apply(
            chain_id, [], block_number=head["number"], block_hash=head["hash"].to_0x_hex()
        )
        assert agent.store.uncommitted_seats(agent.me, [JobState.AUDITING]) == []
    assert set(scenarios.drawn_verifiers(world.cast.owner, job)[0][1]) == {
        world.cast.providers[n].address for n in names
    }

    world.drive(lambda: _all_revealed(world, job), what="every drawn verifier to commit and reveal")
    world.cast.keeper.finalize(job)
    assert world.state(job) == JobState.SETTLED
    for name, agent in zip(names, verifiers, strict=True):
        assert _slashed(world, name) == 0
        assert [(d.job_id, d.role) for d in agent.ledger.all()] == [(job, "verifier")]
        assert world.result_digest(job, world.cast.providers[name].address) == direct_digest(48, 13)
