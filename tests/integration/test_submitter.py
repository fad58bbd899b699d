"""The submitter and keeper against a real Anvil: batching, dropping stale items, nonces across
restarts, and riding out a node restart."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, free_port, funded_account, mine
from marketplace.protocol.client import FLAG_DRAWN, JobRequest, JobState, Market
from marketplace.relayer import keeper
from marketplace.relayer.keeper import KeeperPlan
from marketplace.relayer.submitter import Submitter, is_transient, read_job_views
from tests.conftest import reverted

pytestmark = pytest.mark.integration


def connect(url: str) -> Web3:
    """No client-side retries: failures reach the submitter at once."""
    return Web3(
        Web3.HTTPProvider(url, request_kwargs={"timeout": 5}, exception_retry_configuration=None)
    )


def request(replicas: int = 1, tag: int = 0) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"job-{tag}".encode()).digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
    )


@pytest.fixture(scope="module")
def _deployed(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = connect(anvil.url)
    with reverted(w3):
        yield scenarios.setup(w3, funded_account(w3), providers=3)


@pytest.fixture
def cast(_deployed: scenarios.Cast) -> Iterator[scenarios.Cast]:
    """Three providers and no job; what a test does to the chain is undone after it."""
    with reverted(_deployed.w3):
        yield _deployed


def make_jobs(cast: scenarios.Cast, n: int, replicas: int = 1) -> list[int]:
    return cast.requester.create_jobs([request(replicas, i) for i in range(n)])


def no_sleep(_: float) -> None:
    pass


# ---------------------------------------------------------------------- assignments


def test_twenty_assignments_land_in_one_transaction(cast: scenarios.Cast) -> None:
    alice = cast.providers["alice"].address
    jobs = make_jobs(cast, 20)
    result = Submitter(cast.matcher, max_batch=50).submit_assignments([(j, [alice]) for j in jobs])
    assert len(result.landed) == 1 and result.landed[0].receipt["status"] == 1
    assert result.landed_ids("assign") == jobs and result.dropped == []
    assert all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs)


def test_batches_are_split_at_max_batch(cast: scenarios.Cast) -> None:
    alice = cast.providers["alice"].address
    jobs = make_jobs(cast, 7)
    result = Submitter(cast.matcher, max_batch=3).submit_assignments([(j, [alice]) for j in jobs])
    assert [tx.job_ids for tx in result.landed] == [jobs[0:3], jobs[3:6], jobs[6:]]
    blocks = [tx.block for tx in result.landed]
    assert blocks == sorted(blocks) and len(set(blocks)) == 3


def test_an_already_assigned_job_is_dropped_and_the_rest_assigned(cast: scenarios.Cast) -> None:
    alice, bob = cast.providers["alice"].address, cast.providers["bob"].address
    jobs = make_jobs(cast, 6)
    cast.matcher.assign(jobs[2], [bob])  # assigned behind the submitter's back
    result = Submitter(cast.matcher).submit_assignments([(j, [alice]) for j in jobs])
    assert result.dropped_ids() == [jobs[2]]
    assert result.dropped[0].error == "JobMarketUnexpectedState"
    assert len(result.landed) == 1  # the rest still went out as one transaction
    assert result.landed_ids() == [j for j in jobs if j != jobs[2]]
    assert all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs)
    assert cast.owner.participants(jobs[2])[0].provider == bob


def test_an_offender_the_error_does_not_name_is_found_by_bisection(
    cast: scenarios.Cast,
) -> None:
    alice = cast.providers["alice"].address
    stranger = funded_account(cast.w3).address  # not registered: the revert names no job
    jobs = make_jobs(cast, 8)
    batch = [(j, [stranger if j == jobs[5] else alice]) for j in jobs]
    result = Submitter(cast.matcher).submit_assignments(batch)
    assert result.dropped_ids() == [jobs[5]]
    assert result.dropped[0].error == "ProviderRegistryNotRegistered"
    assert sorted(result.landed_ids()) == [j for j in jobs if j != jobs[5]]
    assert cast.owner.state(jobs[5]) == JobState.OPEN


def test_a_lone_assignment_goes_out_as_a_plain_assign(cast: scenarios.Cast) -> None:
    alice = cast.providers["alice"].address
    (job,) = make_jobs(cast, 1)
    result = Submitter(cast.matcher).submit_assignments([(job, [alice])])
    assert result.landed_ids("assign") == [job] and result.dropped == []
    sent = cast.w3.eth.get_transaction(result.landed[0].receipt["transactionHash"])
    plain = cast.matcher.market.encode_abi("assign", [job, [alice]])
    assert "0x" + bytes(sent["input"]).hex() == plain  # not assignBatch's selector
    assert cast.owner.state(job) == JobState.ASSIGNED


def test_a_lone_stale_assignment_is_dropped_with_its_error(cast: scenarios.Cast) -> None:
    alice, bob = cast.providers["alice"].address, cast.providers["bob"].address
    (job,) = make_jobs(cast, 1)
    cast.matcher.assign(job, [bob])  # assigned behind the submitter's back
    result = Submitter(cast.matcher).submit_assignments([(job, [alice])])
    assert result.landed == [] and result.dropped_ids() == [job]
    assert result.dropped[0].error == "JobMarketUnexpectedState"
    assert cast.owner.participants(job)[0].provider == bob


# ---------------------------------------------------------------------- keeper


def current_plan(cast: scenarios.Cast, jobs: list[int]) -> KeeperPlan:
    head = cast.w3.eth.get_block("latest")
    return keeper.plan(read_job_views(cast.owner, jobs), head["timestamp"], head["number"])


def test_keeper_draws_finalizes_and_expires_from_chain_state(cast: scenarios.Cast) -> None:
    scenarios.set_audit_rate(cast, 0)
    alice, bob, carol = (cast.providers[n] for n in ("alice", "bob", "carol"))
    *singles, unassigned = make_jobs(cast, 7)
    trio = cast.requester.create_job(request(replicas=3, tag=99))
    cast.matcher.assign_batch([(j, [alice.address]) for j in singles])
    cast.matcher.assign(trio, [p.address for p in (alice, bob, carol)])
    alice.commit_batch([(j, scenarios.GOOD) for j in singles])
    mine(cast.w3)
    # The audit rate has a floor above zero: follow two jobs whose draw, as the chain now says,
    # does not select them (each is clear with probability 1 - auditBps).
    single_a, single_b = [j for j in singles if not cast.owner.audit_selected(j)][:2]
    for p in (alice, bob, carol):
        p.commit(trio, scenarios.GOOD)
    for p in (alice, bob, carol):
        p.reveal(trio, scenarios.GOOD)
    mine(cast.w3)
    jobs = [single_a, single_b, unassigned, trio]
    sub = Submitter(cast.keeper, max_batch=10)

    first = current_plan(cast, jobs)
    assert first.draw_audits == [[single_a, single_b]]
    assert first.finalize == [[trio]] and first.expire == []
    result = sub.submit_keeper(first)
    assert result.dropped == []
    assert result.landed_ids("draw_audits") == [single_a, single_b]
    assert cast.owner.state(trio) == JobState.SETTLED
    assert all(cast.owner.job(j).flags & FLAG_DRAWN for j in (single_a, single_b))
    assert current_plan(cast, jobs).empty  # nothing more is due before the windows close

    advance(cast.w3, 3_601)  # past the challenge window and the accept window
    second = current_plan(cast, jobs)
    assert second.finalize == [[single_a, single_b]] and second.expire == [[unassigned]]
    result = sub.submit_keeper(second)
    assert result.dropped == []
    assert cast.owner.state(single_a) == JobState.SETTLED
    assert cast.owner.state(single_b) == JobState.SETTLED
    assert cast.owner.state(unassigned) == JobState.EXPIRED
    assert current_plan(cast, jobs).empty


def test_a_stale_keeper_item_is_dropped(cast: scenarios.Cast) -> None:
    jobs = make_jobs(cast, 3)
    advance(cast.w3, 3_601)
    cast.keeper.expire(jobs[1])  # somebody else was faster
    result = Submitter(cast.keeper).submit_keeper(KeeperPlan(expire=[jobs]))
    assert result.dropped_ids("expire") == [jobs[1]]
    assert result.landed_ids("expire") == [jobs[0], jobs[2]]
    assert all(cast.owner.state(j) == JobState.EXPIRED for j in jobs)


# ---------------------------------------------------------------------- nonces


def test_a_restarted_submitter_continues_with_correct_nonces(cast: scenarios.Cast) -> None:
    alice = cast.providers["alice"].address
    key = cast.matcher.signer.account  # type: ignore[union-attr]
    jobs = make_jobs(cast, 6)
    first = Submitter(cast.matcher)
    first.submit_assignments([(jobs[0], [alice]), (jobs[1], [alice])])
    # A new process: a new client, Signer and Submitter for the same key.
    second = Submitter(Market(cast.w3, cast.deployment, key))
    second.submit_assignments([(jobs[2], [alice])])
    # The first one's locally tracked nonce is now stale; it still goes through.
    assert first.submit_assignments([(jobs[3], [alice])]).landed_ids() == [jobs[3]]
    # A gap: the tracked nonce runs ahead of the chain (a lost transaction).
    first.signer._nonce = cast.w3.eth.get_transaction_count(key.address) + 3
    assert first.submit_assignments([(jobs[4], [alice])]).landed_ids() == [jobs[4]]
    assert all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs[:5])


def test_a_stale_tracked_nonce_is_never_sent(
    cast: scenarios.Cast, caplog: pytest.LogCaptureFixture
) -> None:
    """The signer reads the chain's pending nonce at each send: a nonce it remembers from
    before (already used, as after a rollback replayed elsewhere) never reaches the node, so
    there is no "nonce too low" round trip to retry (the retry stays for a key shared with
    another process that sends in between; see test_transient_classification)."""
    alice = cast.providers["alice"].address
    jobs = make_jobs(cast, 2)
    sub = Submitter(cast.matcher, backoff=0.01)
    sub.submit_assignments([(jobs[1], [alice])])
    signer = sub.signer
    signer._nonce = cast.w3.eth.get_transaction_count(signer.account.address) - 1  # already used
    receipt = sub._with_retries(lambda: cast.matcher.assign(jobs[0], [alice]))
    assert receipt["status"] == 1
    assert "nonce too low" not in caplog.text.lower()
    assert cast.owner.state(jobs[0]) == JobState.ASSIGNED


def test_transient_classification() -> None:
    assert is_transient(ConnectionError("refused"))
    assert is_transient(ValueError("nonce too low: next nonce 5, tx nonce 4"))
    assert not is_transient(ValueError("execution reverted"))


def test_an_anvil_restart_is_ridden_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A node of its own: the test stops it and starts it again from its state file.
    port, state = free_port(), tmp_path / "state.json"
    anvil = Anvil(port=port, state_file=state, log_file=tmp_path / "anvil.log").start()
    try:
        w3 = connect(anvil.url)
        cast = scenarios.setup(w3, funded_account(w3), providers=1)
        alice = cast.providers["alice"].address
        jobs = make_jobs(cast, 4)
        sub = Submitter(cast.matcher, max_batch=2, retries=40, backoff=0.2, max_backoff=1.0)
        sub.submit_assignments([(jobs[0], [alice])])
        anvil.stop()  # dumps the chain to `state`
        assert state.exists()
        restart = threading.Timer(1.0, anvil.start)
        restart.start()
        try:
            result = sub.submit_assignments([(j, [alice]) for j in jobs[1:]])
        finally:
            restart.join()
        # The node really was down, and its outage is one warning however many retries.
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1 and down[0].levelname == "WARNING"
        assert result.dropped == []
        assert result.landed_ids() == jobs[1:]
        assert all(cast.owner.state(j) == JobState.ASSIGNED for j in jobs)
    finally:
        anvil.stop()
