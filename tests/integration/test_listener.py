"""The relayer's listener and store against real Anvil processes and SQLite files (the full
projection and the reorg rollback also on PostgreSQL).

The projections must equal what the contracts report (`Market.state`, `Market.provider`,
`Market.participants`), every followed log must be applied exactly once across restarts,
crashes, reorgs and RPC outages, and nothing from an orphaned block may remain.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, free_port, funded_account, mine
from marketplace.index.listener import Listener, RPCUnavailable
from marketplace.index.store import (
    Block,
    HistoryRow,
    JobRow,
    MarketParamsRow,
    ParticipantRow,
    ProcessedEvent,
    ProfileRow,
    ProviderRow,
    Store,
)
from marketplace.protocol.client import JobRequest, JobState, Market, ProviderTerms
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.events import ChainEvent, Decoder, JobCreated, ProviderRegistered
from tests.conftest import reverted

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------------- helpers


def connect(url: str) -> Web3:
    """No client-side retries: an outage must reach the listener at once."""
    return Web3(
        Web3.HTTPProvider(url, request_kwargs={"timeout": 5}, exception_retry_configuration=None)
    )


def store_at(path: Path) -> Store:
    return Store(f"sqlite:///{path}")


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def request(units: int = scenarios.UNITS, replicas: int = 1) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"job-{units}".encode()).digest(),
        units=units,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
    )


def followed(w3: Web3, deployment: Deployment) -> list[ChainEvent]:
    """Every followed event on the chain now, straight from eth_getLogs."""
    decoder = Decoder(deployment)
    logs = w3.eth.get_logs(
        {"fromBlock": deployment.block, "toBlock": "latest", "address": decoder.addresses}
    )
    return decoder.decode_all(logs)


def row_dict(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in skip}


def dump(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every projection row (history without its surrogate id), in a stable order."""
    models: dict[str, tuple[type[Any], tuple[str, ...]]] = {
        "jobs": (JobRow, ()),
        "participants": (ParticipantRow, ()),
        "history": (HistoryRow, ("id",)),
        "providers": (ProviderRow, ()),
        "profiles": (ProfileRow, ()),
        "params": (MarketParamsRow, ()),
    }
    out: dict[str, list[dict[str, Any]]] = {}
    with store.session() as s:
        for name, (model, skip) in models.items():
            rows = [row_dict(r, skip) for r in s.query(model).all()]
            out[name] = sorted(rows, key=repr)
    return out


def processed_keys(store: Store) -> list[tuple[str, int]]:
    with store.session() as s:
        return sorted((r.tx_hash, r.log_index) for r in s.query(ProcessedEvent).all())


def assert_matches_chain(store: Store, w3: Web3, deployment: Deployment) -> None:
    """Projections equal the contracts' views; the event log equals eth_getLogs."""
    m = Market(w3, deployment)
    jobs = store.jobs()
    assert [j.job_id for j in jobs] == list(range(1, m.job_count() + 1))
    for row in jobs:
        job = m.job(row.job_id)
        assert row.state == job.state, row.job_id
        assert (row.requester, row.replicas, row.units, row.max_price_per_unit) == (
            job.requester,
            job.replicas,
            job.units,
            job.max_price_per_unit,
        )
        assert (row.profile, row.clearing_price, row.collateral, row.fee_bps) == (
            job.profile,
            job.clearing_price,
            job.collateral,
            job.fee_bps,
        )
        if not job.state.terminal and row.deadline is not None:
            assert row.deadline == job.deadline
        on_chain = m.participants(row.job_id)
        stored = store.participants(row.job_id)
        assert [p.provider for p in stored] == [p.provider for p in on_chain]
        assert [p.commit_block or 0 for p in stored] == [p.commit_block for p in on_chain]
    registered = set()
    for prow in store.providers(registered_only=False):
        rec = m.provider(prow.address)
        assert (prow.stake, prow.locked, prow.unbonding, prow.unbond_at) == (
            rec.stake,
            rec.locked,
            rec.unbonding,
            rec.unbond_at,
        ), prow.address
        assert (prow.jobs_done, prow.jobs_slashed, prow.registered) == (
            rec.jobs_done,
            rec.jobs_slashed,
            rec.registered,
        ), prow.address
        assert (prow.price_per_unit, prow.profile_mask, prow.vram_gib) == (
            rec.price_per_unit,
            rec.profile_mask,
            rec.vram_gib,
        )
        assert (prow.gpu_model, prow.endpoint) == (rec.gpu_model, rec.endpoint)
        assert (prow.min_exec_window, prow.max_units) == (rec.min_exec_window, rec.max_units)
        if prow.registered:
            registered.add(prow.address)
    events = followed(w3, deployment)
    assert registered == {e.provider for e in events if isinstance(e, ProviderRegistered)}
    assert processed_keys(store) == sorted(e.key for e in events)
    # Nothing from a block the chain no longer has.
    with store.session() as s:
        for number, block_hash in {(r.block_number, r.block_hash) for r in s.query(ProcessedEvent)}:
            assert "0x" + bytes(w3.eth.get_block(number)["hash"]).hex() == block_hash
        for block in s.query(Block):
            assert "0x" + bytes(w3.eth.get_block(block.number)["hash"]).hex() == block.hash


def states(store: Store, job_id: int) -> list[JobState]:
    """The job's state after each event, consecutive repeats folded."""
    out: list[JobState] = []
    for h in store.history(job_id):
        if not out or out[-1] != h.state:
            out.append(h.state)
    return out


# ---------------------------------------------------------------------- chains


@dataclass
class Chain:
    anvil: Anvil
    w3: Web3
    cast: scenarios.Cast
    jobs: dict[str, int]

    @property
    def deployment(self) -> Deployment:
        return self.cast.deployment


@pytest.fixture(scope="module")
def scenario_chain(anvil: Anvil) -> Iterator[Chain]:
    """Every lifecycle path walked, plus one job left open and one left assigned."""
    w3 = connect(anvil.url)
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3))
        jobs = {path.__name__: path(cast) for _, path in scenarios.PATHS}
        jobs["open"] = cast.requester.create_job(request(units=11))
        jobs["assigned"] = cast.requester.create_job(request(units=12, replicas=3))
        alice, carol = cast.providers["alice"], cast.providers["carol"]
        dave = cast.providers["dave"]
        cast.matcher.assign(jobs["assigned"], [alice.address, carol.address, dave.address])
        alice.commit(jobs["assigned"], scenarios.GOOD)
        # Registry events the paths do not emit: new terms, a cancelled and a pending unbond.
        carol.update_terms(
            ProviderTerms(
                profile_mask=0b11,
                price_per_unit=scenarios.PRICE // 2,
                vram_gib=80,
                gpu_model="NVIDIA H100",
                endpoint="https://carol.example",
                min_exec_window=120,
                max_units=50,
            )
        )
        bob, erin = cast.providers["bob"], cast.providers["erin"]
        bob.request_unbond(10 * scenarios.TOKEN)
        bob.cancel_unbond()
        erin.request_unbond(5 * scenarios.TOKEN)
        yield Chain(anvil, w3, cast, jobs)


@pytest.fixture(scope="module")
def _small_cast(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = connect(anvil.url)
    with reverted(w3):
        yield scenarios.setup(w3, funded_account(w3), providers=3)


@pytest.fixture
def small_chain(anvil: Anvil, _small_cast: scenarios.Cast) -> Iterator[Chain]:
    """Three providers and no job; what a test does to the chain is undone after it."""
    with reverted(_small_cast.w3):
        yield Chain(anvil, _small_cast.w3, _small_cast, {})


# ---------------------------------------------------------------------- tests


def test_every_scenario_is_projected_as_on_chain(
    scenario_chain: Chain, new_db_url: Callable[[str], str]
) -> None:
    c = scenario_chain
    store = Store(new_db_url("relayer"))
    listener = Listener(c.w3, c.deployment, store, confirmations=0, batch_blocks=7)
    applied = listener.poll_once()
    assert applied == len(followed(c.w3, c.deployment)) > 0
    assert listener.poll_once() == 0
    assert_matches_chain(store, c.w3, c.deployment)
    # Events the relayer does not follow (MatcherSet, MarketSet, ownership) were skipped.
    decoder = Decoder(c.deployment)
    raw = c.w3.eth.get_logs(
        {"fromBlock": c.deployment.block, "toBlock": "latest", "address": decoder.addresses}
    )
    assert len(raw) > applied
    assert {e.name for e in followed(c.w3, c.deployment)} >= {
        "JobCreated",
        "ProviderAssigned",
        "ResultCommitted",
        "AuditDrawn",
        "AuditStarted",
        "AuditStaffed",
        "JobChallenged",
        "RevealStarted",
        "ResultRevealed",
        "ProviderSlashed",
        "JobReopened",
        "JobClosed",
        "Credited",
        "ParamsSet",
        "ProviderRegistered",
        "TermsUpdated",
        "Staked",
        "UnbondRequested",
        "UnbondCancelled",
        "Unbonded",
        "Slashed",
        "ProfileAdded",
    }

    j = c.jobs
    S = JobState
    assert states(store, j["optimistic_settled"]) == [S.OPEN, S.ASSIGNED, S.COMMITTED, S.SETTLED]
    assert states(store, j["replicas3_one_wrong"]) == [
        S.OPEN,
        S.ASSIGNED,
        S.REVEALING,
        S.AUDITING,  # the replicas disagree: drawn verifiers decide
        S.REVEALING,
        S.SETTLED,
    ]
    assert states(store, j["audit_catches_cheater"]) == [
        S.OPEN,
        S.ASSIGNED,
        S.COMMITTED,
        S.AUDITING,
        S.REVEALING,
        S.REFUNDED,
    ]
    assert states(store, j["no_show"]) == [
        S.OPEN,
        S.ASSIGNED,
        S.OPEN,
        S.ASSIGNED,
        S.COMMITTED,
        S.SETTLED,
    ]
    assert states(store, j["open"]) == [S.OPEN]
    assert states(store, j["assigned"]) == [S.OPEN, S.ASSIGNED]

    # The wrong replica is slashed in the history and counted on its provider.
    dave = c.cast.providers["dave"].address
    slashed = [h for h in store.history(j["replicas3_one_wrong"]) if h.event == "ProviderSlashed"]
    assert [h.account for h in slashed] == [dave]
    assert store.job(j["replicas3_one_wrong"]).digest == "0x" + scenarios.GOOD.hex()  # type: ignore[union-attr]
    # Audit rounds and their drawn verifiers are projected as the chain has them.
    k = c.cast.owner.params().verifiers
    for name in ("replicas3_one_wrong", "audit_catches_cheater", "challenge_lost"):
        job_id = j[name]
        (audit,) = store.audit_rounds(job_id)
        verifiers = [p for p in store.participants(job_id) if p.verifier]
        replicas = c.cast.owner.job(job_id).replicas
        on_chain = [p.provider for p in c.cast.owner.participants(job_id)[replicas:]]
        assert (audit.round, audit.seats) == (1, k), name
        assert audit.commit_by is not None and audit.staffed_block is not None, name
        assert [p.provider for p in verifiers] == on_chain and len(on_chain) == k, name
        assert all(p.audit_round == 1 and p.index >= replicas for p in verifiers), name
        row = store.job(job_id)
        assert row is not None and (row.audit_round, row.seats, row.staffed) == (1, k, True)
    escalated = store.audit_rounds(j["escalation_no_verdict"])
    assert [(r.round, r.seats) for r in escalated] == [(1, k), (2, 2 * k + 1)]
    assert store.job(j["escalation_no_verdict"]).state is S.REFUNDED  # type: ignore[union-attr]
    # The no-show's first round is kept, slashed; the second round's executor completed it.
    frank, bob = c.cast.providers["frank"].address, c.cast.providers["bob"].address
    first = store.participants(j["no_show"], round_=0)
    assert [(p.provider, p.slashed is not None) for p in first] == [(frank, True)]
    assert [p.provider for p in store.participants(j["no_show"])] == [bob]
    # Collateral of the running job is still locked, and the matcher's free stake follows.
    alice = store.provider(c.cast.providers["alice"].address)
    assert alice is not None and alice.locked == store.job(j["assigned"]).collateral  # type: ignore[union-attr]
    assert len(store.profiles()) == len(c.deployment.profiles)


def test_restart_and_crash_apply_each_event_once(scenario_chain: Chain, tmp_path: Path) -> None:
    c = scenario_chain
    total = followed(c.w3, c.deployment)
    head = c.w3.eth.block_number
    middle = (c.deployment.block + head) // 2
    db = tmp_path / "relayer.sqlite3"

    # First run stops half way (its target is the middle block), then the process "dies".
    first = Listener(c.w3, c.deployment, store_at(db), confirmations=head - middle, batch_blocks=5)
    done = first.poll_once()
    assert first.store.checkpoint(c.deployment.chain_id).block_number == middle  # type: ignore[union-attr]
    assert done == len([e for e in total if e.block_number <= middle]) > 0
    first.store.close()
    del first

    # Second run crashes inside its second chunk's transaction: that chunk leaves no trace.
    store = store_at(db)
    real_apply = store.apply
    calls = 0

    def crashing_apply(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            with store._sessions.begin() as s:  # a crash mid-transaction
                s.add(Block(chain_id=c.deployment.chain_id, number=10**9, hash="0xdead"))
                raise RuntimeError("killed")
        return real_apply(*args, **kwargs)

    store.apply = crashing_apply  # type: ignore[method-assign]
    second = Listener(c.w3, c.deployment, store, confirmations=0, batch_blocks=5)
    with pytest.raises(RuntimeError, match="killed"):
        second.poll_once()
    checkpoint = store.checkpoint(c.deployment.chain_id)
    assert checkpoint is not None and checkpoint.block_number == middle + 5
    assert store.processed_count(c.deployment.chain_id) == len(
        [e for e in total if e.block_number <= middle + 5]
    )
    assert all(n != 10**9 for n, _ in store.recent_blocks(c.deployment.chain_id))
    store.close()

    # Third run on the same file finishes; each event exactly once.
    third = Listener(c.w3, c.deployment, store_at(db), confirmations=0, batch_blocks=5)
    third.poll_once()
    assert processed_keys(third.store) == sorted(e.key for e in total)
    assert_matches_chain(third.store, c.w3, c.deployment)
    # Applying everything again changes nothing.
    before = dump(third.store)
    again = third.store.apply(
        c.deployment.chain_id, total, block_number=head, block_hash=checkpoint_hash(c.w3, head)
    )
    assert again == 0 and dump(third.store) == before

    # A fresh run in one go builds the very same projections.
    fresh = Listener(
        c.w3, c.deployment, store_at(tmp_path / "fresh.sqlite3"), confirmations=0, batch_blocks=500
    )
    fresh.poll_once()
    assert dump(fresh.store) == before


def checkpoint_hash(w3: Web3, number: int) -> str:
    return "0x" + bytes(w3.eth.get_block(number)["hash"]).hex()


def test_reorg_by_snapshot_revert_rolls_back_orphaned_blocks(
    small_chain: Chain, new_db_url: Callable[[str], str]
) -> None:
    c = small_chain
    store = Store(new_db_url("relayer"))
    listener = Listener(c.w3, c.deployment, store, confirmations=0, batch_blocks=4)
    listener.poll_once()
    requester, matcher = c.cast.requester, c.cast.matcher
    alice = c.cast.providers["alice"].address

    # Fork A: two jobs, one assigned; the listener applies them.
    snap = rpc(c.w3, "evm_snapshot")
    fork_a = c.w3.eth.block_number
    first = requester.create_job(request(units=100))
    requester.create_job(request(units=200))
    matcher.assign(first, [alice])
    assert listener.poll_once() > 0
    assert [j.units for j in store.jobs()] == [100, 200]
    assert store.provider(alice).locked > 0  # type: ignore[union-attr]
    orphaned = {r.block_hash for r in _processed(store) if r.block_number > fork_a}
    old_head = c.w3.eth.block_number

    # Fork B, shorter: one different job. The checkpoint block no longer exists.
    assert rpc(c.w3, "evm_revert", snap) is True
    requester.signer.reset_nonce()  # type: ignore[union-attr]
    matcher.signer.reset_nonce()  # type: ignore[union-attr]
    requester.create_job(request(units=7))
    assert c.w3.eth.block_number < old_head
    listener.poll_once()
    assert [(j.job_id, j.units, j.state) for j in store.jobs()] == [(1, 7, JobState.OPEN)]
    assert store.provider(alice).locked == 0  # type: ignore[union-attr]
    assert not orphaned & {r.block_hash for r in _processed(store)}
    assert_matches_chain(store, c.w3, c.deployment)

    # Fork C, longer, with different blocks at every height the listener saw.
    snap = rpc(c.w3, "evm_snapshot")
    fork_c = c.w3.eth.block_number
    requester.create_job(request(units=300))
    listener.poll_once()
    seen = {n: h for n, h in store.recent_blocks(c.deployment.chain_id) if n > fork_c}
    assert rpc(c.w3, "evm_revert", snap) is True
    requester.signer.reset_nonce()  # type: ignore[union-attr]
    mine(c.w3, 3)
    second = requester.create_job(request(units=400))
    matcher.assign(second, [alice])
    assert all(checkpoint_hash(c.w3, n) != h for n, h in seen.items())
    listener.poll_once()
    assert [(j.units, j.state) for j in store.jobs()] == [
        (7, JobState.OPEN),
        (400, JobState.ASSIGNED),
    ]
    assert_matches_chain(store, c.w3, c.deployment)
    assert store.history(second)[-1].block_number == c.w3.eth.block_number


def _processed(store: Store) -> list[ProcessedEvent]:
    with store.session() as s:
        return list(s.query(ProcessedEvent).all())


def test_reorg_by_anvil_reorg(small_chain: Chain, tmp_path: Path) -> None:
    c = small_chain
    store = store_at(tmp_path / "relayer.sqlite3")
    listener = Listener(c.w3, c.deployment, store, confirmations=0)
    c.cast.requester.create_job(request(units=50))
    c.cast.requester.create_job(request(units=60))
    listener.poll_once()
    assert len(store.jobs()) == 2
    head = c.w3.eth.block_number
    created = [r.block_number for r in _processed(store) if r.name == JobCreated.__name__]

    # Replace the last blocks (the second job's creation among them) with empty ones.
    rpc(c.w3, "anvil_reorg", head - created[1] + 1, [])
    assert c.w3.eth.block_number == head
    mine(c.w3)

    # Were the chain to change after the checkpoint check, the new range's parent hash would
    # not extend the stored chain: the poll applies nothing and the next one rolls back.
    checkpoint = store.checkpoint(c.deployment.chain_id)
    assert checkpoint is not None
    unchecked = mock.patch.object(listener, "_resolve_reorg", return_value=checkpoint)
    before = dump(store)
    with unchecked:
        assert listener.poll_once() == 0
    assert dump(store) == before and store.checkpoint(c.deployment.chain_id) == checkpoint

    listener.poll_once()
    assert [j.units for j in store.jobs()] == [50]
    assert_matches_chain(store, c.w3, c.deployment)


def test_rpc_outage_is_retryable_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node of its own: the outages stop it and start it again from its state file.
    state, port = tmp_path / "anvil-state.json", free_port()
    anvil = Anvil(port=port, state_file=state, log_file=tmp_path / "anvil.log").start()
    try:
        w3 = connect(anvil.url)
        cast = scenarios.setup(w3, funded_account(w3), providers=2)
        store = store_at(tmp_path / "relayer.sqlite3")
        listener = Listener(w3, cast.deployment, store, confirmations=0, batch_blocks=10)
        listener.poll_once()
        cast.requester.create_job(request(units=1))

        # A failure between the headers and the logs of a range applies nothing of it.
        def refused(*_: Any, **__: Any) -> Any:
            raise requests.ConnectionError("connection refused")

        before, checkpoint = dump(store), store.checkpoint(cast.deployment.chain_id)
        monkeypatch.setattr(w3.eth, "get_logs", refused)
        with pytest.raises(RPCUnavailable):
            listener.poll_once()
        assert dump(store) == before
        assert store.checkpoint(cast.deployment.chain_id) == checkpoint
        monkeypatch.undo()

        # The node goes away: the poll raises the retryable error and changes nothing.
        anvil.stop()
        with pytest.raises(RPCUnavailable) as caught:
            listener.poll_once()
        assert isinstance(caught.value, ConnectionError)
        assert dump(store) == before
        assert store.checkpoint(cast.deployment.chain_id) == checkpoint

        # Same port, same state: polling resumes where it stopped.
        anvil = Anvil(port=port, state_file=state, log_file=tmp_path / "anvil.log").start()
        cast.requester.create_job(request(units=2))
        assert listener.poll_once() > 0
        assert [j.units for j in store.jobs()] == [1, 2]
        assert_matches_chain(store, w3, cast.deployment)

        # The run loop rides out an outage by itself.
        stop = threading.Event()
        runner = threading.Thread(target=listener.run, args=(stop, 0.05, 0.2))
        runner.start()
        try:
            anvil.stop()
            time.sleep(0.3)
            anvil = Anvil(port=port, state_file=state, log_file=tmp_path / "anvil.log").start()
            cast.requester.create_job(request(units=3))
            deadline = time.monotonic() + 10
            while len(store.jobs()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            runner.join(timeout=10)
        assert not runner.is_alive()
        assert [j.units for j in store.jobs()] == [1, 2, 3]
        assert_matches_chain(store, w3, cast.deployment)
    finally:
        anvil.stop()


def test_confirmations_hold_back_the_newest_blocks(small_chain: Chain, tmp_path: Path) -> None:
    c = small_chain
    store = store_at(tmp_path / "relayer.sqlite3")
    listener = Listener(c.w3, c.deployment, store, confirmations=3)
    mine(c.w3, 3)  # the setup's last events are 3 deep now
    listener.poll_once()
    job = c.cast.requester.create_job(request(units=5))
    created = c.w3.eth.block_number
    assert listener.poll_once() == 0
    assert store.job(job) is None
    mine(c.w3, 2)
    listener.poll_once()
    assert store.job(job) is None
    assert store.checkpoint(c.deployment.chain_id).block_number == created - 1  # type: ignore[union-attr]
    mine(c.w3, 1)
    assert listener.poll_once() == 1
    assert store.job(job) is not None
    assert_matches_chain(store, c.w3, c.deployment)


def test_release_is_projected_and_rolled_back(small_chain: Chain, tmp_path: Path) -> None:
    c = small_chain
    store = store_at(tmp_path / "relayer.sqlite3")
    listener = Listener(c.w3, c.deployment, store, confirmations=0, batch_blocks=4)
    alice, bob, carol = (c.cast.providers[n] for n in ("alice", "bob", "carol"))
    trio = c.cast.requester.create_job(request(units=30, replicas=3))
    c.cast.matcher.assign(trio, [alice.address, bob.address, carol.address])
    single = c.cast.requester.create_job(request(units=40))
    listener.poll_once()
    before = dump(store)
    snap = rpc(c.w3, "evm_snapshot")

    # One of three replicas hands its seat back; the other two commit and the reveal starts.
    carol.release(trio)
    listener.poll_once()
    row = store.job(trio)
    assert row is not None and row.state is JobState.ASSIGNED
    fee = row.units * row.clearing_price
    (seat,) = [p for p in store.participants(trio) if p.provider == carol.address]
    assert seat.released and seat.slashed is None and seat.commit_block is None
    released = [h for h in store.history(trio) if h.event == "ProviderReleased"]
    assert [(h.account, h.amount) for h in released] == [(carol.address, fee)]
    assert_matches_chain(store, c.w3, c.deployment)  # carol's stake, locked and slash count
    alice.commit(trio, scenarios.GOOD)
    bob.commit(trio, scenarios.GOOD)
    listener.poll_once()
    assert states(store, trio) == [JobState.OPEN, JobState.ASSIGNED, JobState.REVEALING]

    # The lone executor of a replicas = 1 job releases: the job reopens without it.
    c.cast.matcher.assign(single, [alice.address])
    alice.release(single)
    listener.poll_once()
    reopened = store.job(single)
    assert reopened is not None and (reopened.state, reopened.round) == (JobState.OPEN, 1)
    (first,) = store.participants(single, round_=0)
    assert (first.provider, first.released, first.slashed) == (alice.address, True, None)
    assert_matches_chain(store, c.w3, c.deployment)

    # A reorg drops the releases: the projections are as before them.
    assert rpc(c.w3, "evm_revert", snap) is True
    for p in (alice, bob, carol, c.cast.matcher):
        p.signer.reset_nonce()  # type: ignore[union-attr]
    mine(c.w3, 12)
    listener.poll_once()
    assert dump(store) == before
    assert_matches_chain(store, c.w3, c.deployment)
