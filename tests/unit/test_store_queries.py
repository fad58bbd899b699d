"""The store's named queries, over a real store (SQLite, then PostgreSQL) filled the way the
listener fills it: logs ABI-encoded from the contracts' own event ABIs, decoded by `Decoder` and
applied in chain order by `Store.apply`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.abi import collapse_if_tuple
from eth_utils.address import to_checksum_address

from marketplace.index.store import JobsPage, Overview, Position, Seat, Store
from marketplace.protocol import events
from marketplace.protocol.client import JobRequest, JobState, ProviderTerms
from marketplace.protocol.deployment import Deployment, MarketParams
from marketplace.protocol.events import ChainEvent, Decoder, RawLog

CHAIN_ID = 31337
DEPLOYMENT = Deployment(
    chain_id=CHAIN_ID,
    token="0x" + "11" * 20,
    registry="0x" + "22" * 20,
    market="0x" + "33" * 20,
    block=10,
    deployer="0x" + "44" * 20,
)
ALICE, BOB, CAROL, DAVE = ("0x" + c * 40 for c in "abcd")
R1, R2 = "0x" + "e1" * 20, "0x" + "e2" * 20
DIGEST = hashlib.sha256(b"result").digest()
LIVE = (JobState.ASSIGNED, JobState.COMMITTED, JobState.AUDITING, JobState.REVEALING)


def checksum(address: str) -> str:
    return to_checksum_address(address)


class Chain:
    """Encodes events the way the contracts emit them, one block per `block()` call."""

    def __init__(self) -> None:
        # The decoder's own ABI table: the test encodes with exactly the ABI it decodes with.
        self.abis = {
            entry.cls.__name__: (src, topic, entry)
            for (src, topic), entry in events._table().items()
        }
        self.decoder = Decoder(DEPLOYMENT)
        self.number = DEPLOYMENT.block
        self.pending: list[ChainEvent] = []
        self.logs = 0

    def emit(self, name: str, **args: Any) -> None:
        source, topic, entry = self.abis[name]
        topics = [topic]
        types: list[str] = []
        values: list[Any] = []
        for abi_input in entry.inputs:
            value = args[events._snake(abi_input["name"])]
            if hasattr(value, "as_tuple"):  # the SDK's struct dataclasses
                value = value.as_tuple()
            kind = collapse_if_tuple(dict(abi_input))
            if abi_input["indexed"]:
                topics.append("0x" + encode([kind], [value]).hex())
            else:
                types.append(kind)
                values.append(value)
        self.logs += 1
        raw = RawLog(
            address=checksum(DEPLOYMENT.market if source == "JobMarket" else DEPLOYMENT.registry),
            topics=tuple(topics),
            data="0x" + encode(types, values).hex(),
            block_number=self.number,
            block_hash=_block_hash(self.number),
            tx_hash="0x" + hashlib.sha256(f"tx{self.logs}".encode()).hexdigest(),
            tx_index=0,
            log_index=self.logs,
        )
        decoded = self.decoder.decode(raw)
        assert decoded is not None and decoded.name == name
        self.pending.append(decoded)

    def mine(self, store: Store) -> None:
        store.apply(
            CHAIN_ID, self.pending, block_number=self.number, block_hash=_block_hash(self.number)
        )
        self.pending = []
        self.number += 1


def _block_hash(number: int) -> str:
    return "0x" + hashlib.sha256(f"block{number}".encode()).hexdigest()


def _request(units: int, replicas: int = 1) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"spec{units}".encode()).digest(),
        units=units,
        max_price_per_unit=1_000,
        replicas=replicas,
    )


def _create(chain: Chain, job_id: int, requester: str, units: int) -> None:
    chain.emit(
        "JobCreated",
        job_id=job_id,
        requester=requester,
        spec_hash=_request(units).spec_hash,
        request=_request(units),
        accept_by=1_000,
        escrow=units * 1_000,
    )


def _assign(chain: Chain, job_id: int, provider: str, index: int = 0) -> None:
    chain.emit(
        "ProviderAssigned",
        job_id=job_id,
        provider=provider,
        index=index,
        price_per_unit=500,
        deadline=2_000,
    )


def _commit(chain: Chain, job_id: int, provider: str) -> None:
    chain.emit("ResultCommitted", job_id=job_id, provider=provider, result_hash=DIGEST, seal=DIGEST)


@pytest.fixture
def store(new_db_url: Callable[[str], str]) -> Iterator[Store]:
    """Six jobs: 1 Assigned to alice; 2 reopened after bob's no-show; 3 executed by carol and
    Auditing with dave drawn as its verifier; 4 executed by alice and Settled (alice and its
    requester credited); 5 Open; 6 Assigned to carol, whose seat was slashed. Providers alice
    to dave registered and staked."""
    s = Store(new_db_url("relayer"))
    s.bind(DEPLOYMENT)
    chain = Chain()
    chain.emit("ParamsSet", params=MarketParams())
    for provider in (ALICE, BOB, CAROL, DAVE):
        chain.emit(
            "ProviderRegistered",
            provider=provider,
            terms=ProviderTerms(profile_mask=1, price_per_unit=500),
        )
        chain.emit("Staked", provider=provider, amount=10**24, stake=10**24)
    chain.mine(s)
    _create(chain, 1, R1, 1)
    _create(chain, 2, R2, 2)
    _create(chain, 3, R1, 3)
    _create(chain, 4, R2, 4)
    chain.mine(s)
    _assign(chain, 1, ALICE)
    _assign(chain, 2, BOB)
    _assign(chain, 3, CAROL)
    _assign(chain, 4, ALICE)
    chain.mine(s)
    chain.emit("ProviderSlashed", job_id=2, provider=BOB, amount=100)
    chain.emit("JobReopened", job_id=2, accept_by=3_000)
    _commit(chain, 3, CAROL)
    chain.emit("AuditDrawn", job_id=3, audited=True)
    chain.emit("AuditStarted", job_id=3, round=1, seats=1, seed_block=12, staff_by=4_000)
    _assign(chain, 3, DAVE, index=1)
    _commit(chain, 4, ALICE)
    chain.emit(
        "JobClosed",
        job_id=4,
        state=JobState.SETTLED,
        digest=bytes(32),
        paid=1_900,
        refunded=2_000,
        fees=100,
        burned=0,
    )
    chain.emit("Credited", job_id=4, account=ALICE, amount=1_900)
    chain.emit("Credited", job_id=4, account=ALICE, amount=20_000)  # collateral bond back
    chain.emit("Credited", job_id=4, account=R2, amount=2_000)
    _create(chain, 5, R1, 5)
    _create(chain, 6, R2, 6)
    _assign(chain, 6, CAROL)
    chain.emit("ProviderSlashed", job_id=6, provider=CAROL, amount=100)
    chain.mine(s)
    yield s
    s.close()


def _ids(page: JobsPage) -> list[int]:
    return [j.job_id for j in page.jobs]


def test_state_counts_name_only_the_states_jobs_are_in(store: Store) -> None:
    assert store.state_counts() == {
        JobState.OPEN: 2,
        JobState.ASSIGNED: 2,
        JobState.AUDITING: 1,
        JobState.SETTLED: 1,
    }


def test_position_is_the_bound_deployment_at_its_checkpoint(
    store: Store, new_db_url: Callable[[str], str]
) -> None:
    assert store.position() == Position(
        chain_id=CHAIN_ID,
        market=checksum(DEPLOYMENT.market),
        registry=checksum(DEPLOYMENT.registry),
        block_number=DEPLOYMENT.block + 3,
        block_hash=_block_hash(DEPLOYMENT.block + 3),
    )
    unbound = Store(new_db_url("empty"))
    assert unbound.position() is None
    assert unbound.overview() == Overview(position=None, jobs_by_state={}, providers=0)
    unbound.close()


def test_provider_count_follows_registration_not_heartbeats(store: Store) -> None:
    store.record_heartbeat("0x" + "f0" * 20, 1.0)  # a heartbeat alone does not register
    assert store.provider_count() == 4 == len(store.providers())
    assert store.provider_count(registered_only=False) == 5


def test_overview_reads_position_counts_and_providers_together(store: Store) -> None:
    assert store.overview() == Overview(
        position=store.position(), jobs_by_state=store.state_counts(), providers=4
    )


def test_jobs_page_filters_pages_and_counts(store: Store) -> None:
    everything = store.jobs_page(limit=50)
    assert (everything.total, _ids(everything)) == (6, [6, 5, 4, 3, 2, 1])
    page = store.jobs_page(limit=2, offset=1)
    assert (page.total, page.limit, page.offset, _ids(page)) == (6, 2, 1, [5, 4])
    assert _ids(store.jobs_page(limit=2, offset=5)) == [1]
    assert _ids(store.jobs_page(state=JobState.OPEN, limit=50)) == [5, 2]
    assert _ids(store.jobs_page(requester=R1, limit=50)) == [5, 3, 1]
    # Any round and any seat: bob's no-show seat of the first opening, dave's verifier seat.
    assert _ids(store.jobs_page(provider=BOB, limit=50)) == [2]
    assert _ids(store.jobs_page(provider=DAVE.upper().replace("0X", "0x"), limit=50)) == [3]
    assert _ids(store.jobs_page(provider=ALICE, limit=50)) == [4, 1]
    assert _ids(store.jobs_page(provider=CAROL, limit=50)) == [6, 3]
    both = store.jobs_page(state=JobState.OPEN, requester=R2, limit=1)
    assert (both.total, _ids(both)) == (1, [2])
    assert store.jobs_page(state=JobState.REVEALING, limit=50) == JobsPage(0, 50, 0, ())


def test_credited_totals_sum_every_credit_per_account(store: Store) -> None:
    expected = {checksum(ALICE): 21_900, checksum(R2): 2_000}
    assert store.credited_totals() == expected
    assert store.credited_totals(ALICE) == {checksum(ALICE): 21_900}
    assert store.credited_totals(BOB) == {}


def test_provider_loads_count_seats_still_holding_collateral(store: Store) -> None:
    # Bob's seat was slashed and its job reopened; alice's job 4 closed and released her;
    # carol's seat of job 6 was slashed.
    assert store.provider_loads() == {
        checksum(ALICE): 1,
        checksum(CAROL): 1,
        checksum(DAVE): 1,
    }


def test_excluded_names_the_no_shows_of_earlier_rounds(store: Store) -> None:
    jobs = store.jobs(JobState.OPEN)
    assert [j.job_id for j in jobs] == [2, 5]
    assert store.excluded(jobs) == {2: frozenset({checksum(BOB)})}
    assert store.excluded([j for j in jobs if j.job_id == 5]) == {}


def test_uncommitted_seats_are_those_still_to_run(store: Store) -> None:
    spec = "0x" + _request(1).spec_hash.hex()
    assert store.uncommitted_seats(ALICE, LIVE) == [
        Seat(job_id=1, state=JobState.ASSIGNED, spec_hash=spec, round=0, index=0, verifier=False)
    ]
    audit = "0x" + _request(3).spec_hash.hex()
    assert store.uncommitted_seats(DAVE, LIVE) == [
        Seat(job_id=3, state=JobState.AUDITING, spec_hash=audit, round=0, index=1, verifier=True)
    ]
    assert store.uncommitted_seats(DAVE, [JobState.ASSIGNED]) == []
    assert store.uncommitted_seats(CAROL, LIVE) == []  # committed in 3, slashed in 6
    assert store.uncommitted_seats(BOB, (*LIVE, JobState.OPEN)) == []  # slashed


def test_executed_jobs_are_executor_seats_not_slashed(store: Store) -> None:
    assert store.executed_jobs(CAROL, JobState.AUDITING) == [3]
    assert store.executed_jobs(DAVE, JobState.AUDITING) == []  # a verifier there
    assert store.executed_jobs(ALICE, JobState.SETTLED) == [4]
    assert store.executed_jobs(BOB, JobState.OPEN) == []  # slashed as a no-show
    assert store.executed_jobs(CAROL, JobState.ASSIGNED) == []  # slashed
