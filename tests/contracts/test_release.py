"""Market.release end to end: an executor hands an Assigned job back before its deadline through
the SDK, pays units x clearing price of its collateral into the audit pool, gets the rest
unlocked, and cannot be assigned the job again; refused releases arrive decoded."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils.address import to_checksum_address
from web3.logs import DISCARD

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import advance
from marketplace.devnet.scenarios import Cast
from marketplace.protocol.client import JobState
from marketplace.protocol.errors import _HINTS, ContractRevert
from tests.contracts.conftest import assigned_job

GOOD = hashlib.sha256(b"the correct output tensor bytes").digest()
PAY = scenarios.UNITS * scenarios.PRICE  # the release fee at the max price
ESCROW = 132_500_000_000_000_000  # replicas = 1: PAY + 250 bps fee + 3000 bps audit premium


def _refused(err: ContractRevert, name: str) -> None:
    assert err.name == name
    assert str(err).endswith(_HINTS[name])


def test_release_pays_the_fee_unlocks_the_rest_and_reopens(cast: Cast) -> None:
    job, (alice,) = assigned_job(cast, ("alice",))
    before = alice.provider(alice.address)
    collateral = cast.owner.job(job).collateral
    assert before.locked >= collateral and collateral == 10 * PAY
    pool = cast.owner.audit_pool()
    supply = cast.owner.total_supply()

    receipt = alice.release(job)

    (event,) = alice.market.events.ProviderReleased().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["jobId"] == job
    assert to_checksum_address(event["args"]["provider"]) == alice.address
    assert event["args"]["fee"] == PAY
    after = alice.provider(alice.address)
    assert after.stake == before.stake - PAY
    assert after.locked == before.locked - collateral
    assert after.jobs_slashed == before.jobs_slashed + 1
    assert cast.owner.audit_pool() == pool + PAY
    assert cast.owner.total_supply() == supply, "a release burns nothing"
    assert cast.owner.credits(cast.requester.address) == 0
    reopened = cast.owner.job(job)
    assert reopened.state is JobState.OPEN and reopened.reopened

    with pytest.raises(ContractRevert) as info:
        cast.matcher.assign(job, [alice.address])
    _refused(info.value, "JobMarketProviderExcluded")

    # The second opening's executor releases too: the job ends Expired, the requester refunded.
    bob = cast.providers["bob"]
    cast.matcher.assign(job, [bob.address])
    bob.release(job)
    assert cast.owner.state(job) is JobState.EXPIRED
    assert cast.owner.credits(cast.requester.address) == ESCROW
    assert cast.owner.audit_pool() == pool + 2 * PAY


def test_release_of_one_replica_starts_the_reveal_once_the_rest_committed(cast: Cast) -> None:
    job, (alice, bob, carol) = assigned_job(cast, ("alice", "bob", "carol"))
    alice.commit(job, GOOD)
    bob.commit(job, GOOD)
    carol.release(job)
    assert cast.owner.state(job) is JobState.REVEALING
    alice.reveal(job, GOOD)
    bob.reveal(job, GOOD)
    cast.keeper.finalize(job)
    assert cast.owner.state(job) is JobState.SETTLED
    assert cast.owner.credits(carol.address) == 0
    assert cast.owner.provider(carol.address).locked == 0


def test_refused_releases_are_decoded(cast: Cast) -> None:
    job, (alice, bob, _) = assigned_job(cast, ("alice", "bob", "carol"))
    alice.commit(job, GOOD)
    with pytest.raises(ContractRevert) as info:
        alice.release(job)
    _refused(info.value, "JobMarketAlreadyCommitted")

    with pytest.raises(ContractRevert) as info:
        cast.providers["dave"].release(job)
    _refused(info.value, "JobMarketNotParticipant")

    advance(
        cast.w3, cast.owner.job(job).deadline - cast.w3.eth.get_block("latest")["timestamp"] + 1
    )
    with pytest.raises(ContractRevert) as info:
        bob.release(job)
    _refused(info.value, "JobMarketDeadlinePassed")
    assert info.value.values["jobId"] == job
