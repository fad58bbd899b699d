"""The ledger follows the chain: a rollback (Anvil's evm_revert, as a node restarted from an
older state dump serves an older head) orphans a commit and a settlement the agent had
recorded; the agent notices, re-reads its nonce, commits again and the job settles with no
slash."""

from __future__ import annotations

import time

import pytest

from marketplace.protocol.client import JobState
from provider import agent as agent_module
from tests.provider.conftest import PARAMS, World

pytestmark = pytest.mark.integration


def test_commit_and_settlement_rolled_back_are_redone_without_a_slash(world: World) -> None:
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=51)
    world.drive(lambda: world.state(job) == JobState.ASSIGNED, agents=[], what="the assignment")
    snapshot = world.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    snapshot_block = world.w3.eth.block_number

    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit")
    world.advance(PARAMS.challenge_window + 1)
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement")
    (duty,) = alice.ledger.all()
    assert duty.status == "closed"
    first_commit = duty.commit_tx

    # The node comes back with an older state: the job is Assigned, nothing committed, and the
    # provider's account nonce is lower than the one its signer remembers.
    assert world.w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
    assert world.state(job) == JobState.ASSIGNED and world.commits(job) == []
    rolled_back = time.monotonic()
    report = alice.step()
    assert report.rollback and report.reconciled == [job]
    assert alice.ledger.get(duty.task_id).status in ("computed", "committed")  # type: ignore[union-attr]

    world.drive(lambda: world.state(job) == JobState.COMMITTED, what="the commit again")
    print(f"\nrolled back: committed again after {time.monotonic() - rolled_back:.1f} s")
    assert time.monotonic() - rolled_back < 30  # no stall on a remembered nonce
    world.advance(PARAMS.challenge_window + 1)
    world.drive(lambda: world.state(job) == JobState.SETTLED, what="settlement again")

    assert world.commits(job) == [provider]
    record = world.cast.owner.provider(provider)
    assert (record.jobs_done, record.jobs_slashed) == (1, 0)
    world.drive(
        lambda: alice.ledger.get(duty.task_id).status == "closed",  # type: ignore[union-attr]
        what="the duty to close",
    )
    again = alice.ledger.get(duty.task_id)
    assert again is not None and again.commit_tx is not None and again.sends == 1
    # The commit the ledger records is on the chain as it is now. It may carry the first one's
    # hash: same key, nonce, calldata and fees sign to the same transaction, re-included.
    receipt = world.w3.eth.get_transaction_receipt(again.commit_tx)  # type: ignore[arg-type]
    assert receipt["status"] == 1 and receipt["blockNumber"] > snapshot_block
    assert first_commit is not None


def test_an_executor_seat_whose_event_never_arrived_is_taken_from_the_chain(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assignment's state without its ProviderAssigned (a node restarted from a state dump
    taken as the block was mined): the agent's index still shows the job Open, and its periodic
    reconcile reads the seat from the chain instead of leaving it to a no-show slash."""
    monkeypatch.setattr(agent_module, "_RECONCILE_EVERY", 0.0)
    world.start_worker()
    alice = world.agent("alice")
    provider = world.cast.providers["alice"].address
    job = world.submit_matmul(64, seed=53)
    alice.step()
    row = alice.store.job(job)
    assert row is not None and row.state == JobState.OPEN

    world.cast.matcher.assign(job, [provider])
    for _ in range(agent_module._OPEN_SWEEP_BLOCKS):
        world.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    head = world.w3.eth.get_block("latest")
    chain_id = world.cast.deployment.chain_id
    alice.store.apply(
        chain_id, [], block_number=head["number"], block_hash=head["hash"].to_0x_hex()
    )
    assert alice.store.uncommitted_seats(alice.me, [JobState.ASSIGNED]) == []

    world.drive(lambda: world.state(job) == JobState.COMMITTED, agents=[alice], what="the commit")
    assert world.commits(job) == [provider]
    assert [(d.job_id, d.role) for d in alice.ledger.all()] == [(job, "executor")]
