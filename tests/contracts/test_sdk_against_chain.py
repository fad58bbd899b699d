"""The SDK against the deployed contracts: hashing byte-identical to JobLib, commit-reveal,
reverts decoded from the ABIs, deployment files and RPC connection checks."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import is_address, to_checksum_address
from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from marketplace.devnet import scenarios
from marketplace.devnet.anvil import advance, free_port, funded_account
from marketplace.devnet.scenarios import Cast
from marketplace.protocol import hashing
from marketplace.protocol.chain import connect
from marketplace.protocol.client import JobState, Market
from marketplace.protocol.deployment import Deployment
from marketplace.protocol.errors import (
    _HINTS,
    ChainError,
    ConfigError,
    ContractRevert,
    DepinError,
)
from tests.contracts.conftest import assigned_job, matmul_request

GOOD = hashlib.sha256(b"the correct output tensor bytes").digest()
BAD = hashlib.sha256(b"a fabricated output").digest()
PAY = 100_000_000_000_000_000  # one replica: 100 units x 1e15
ESCROW = 132_500_000_000_000_000  # replicas = 1: PAY + 250 bps fee + 3000 bps audit premium
COLLATERAL = 10 * PAY


def _decoded(err: ContractRevert) -> dict[str, Any]:
    """The revert's values with addresses checksummed: eth_abi decodes them lowercase."""
    return {k: to_checksum_address(v) if is_address(v) else v for k, v in err.values.items()}


def _assert_hint(err: ContractRevert) -> None:
    """The message names the error, shows its values and ends with the error's own hint."""
    shown = ", ".join(f"{k}={v}" for k, v in err.values.items())
    assert str(err) == f"{err.name}({shown}): {_HINTS[err.name]}"


def _committed_event(client: Market, receipt: TxReceipt) -> Any:
    (event,) = client.market.events.ResultCommitted().process_receipt(receipt, errors=DISCARD)
    return event["args"]


# ---------------------------------------------------------------- hashing and commit-reveal


def test_commit_and_reveal_through_the_sdk(cast: Cast) -> None:
    job, trio = assigned_job(cast, ("alice", "bob", "carol"))
    for p in trio:
        args = _committed_event(p, p.commit(job, GOOD))
        # The SDK derives exactly the hash and seal the contract logs and will recompute.
        assert args["resultHash"] == hashing.result_hash(job, GOOD)
        assert args["seal"] == hashing.seal(p.address, job, GOOD)
        assert args["provider"] == p.address
    assert cast.owner.state(job) == JobState.REVEALING

    for p in trio:
        p.reveal(job, GOOD)
    for i in range(3):
        assert cast.owner.market.functions.revealedDigest(job, i).call() == GOOD
    cast.keeper.finalize(job)
    assert cast.owner.state(job) == JobState.SETTLED


def test_commitment_of_matches_the_stored_commitment(cast: Cast) -> None:
    job, trio = assigned_job(cast, ("alice", "bob", "carol"))
    digests = (GOOD, GOOD, BAD)
    for p, digest in zip(trio, digests, strict=True):
        p.commit(job, digest)
    participants = cast.owner.participants(job)
    assert [x.provider for x in participants] == [p.address for p in trio]
    for p, digest, stored in zip(trio, digests, participants, strict=True):
        expected = hashing.commitment_of(job, p.address, digest)
        assert stored.commitment == expected
        assert 0 < expected < 2**64
        assert stored.commit_block > 0
    # Same digest, different committer: the seal makes the commitments differ.
    assert participants[0].commitment != participants[1].commitment


def test_copycat_of_hash_and_seal_cannot_reveal(cast: Cast) -> None:
    job, (alice, bob, carol) = assigned_job(cast, ("alice", "bob", "carol"))
    honest = _committed_event(alice, alice.commit(job, GOOD))
    # bob copies alice's public hash and seal straight from her commit.
    bob.commit_raw(job, honest["resultHash"], honest["seal"])
    carol.commit(job, GOOD)
    stored = cast.owner.participants(job)
    assert stored[1].commitment == stored[0].commitment
    assert stored[1].commitment != hashing.commitment_of(job, bob.address, GOOD)

    alice.reveal(job, GOOD)
    with pytest.raises(ContractRevert) as err:
        bob.reveal(job, GOOD)
    assert err.value.name == "JobMarketRevealMismatch"
    assert _decoded(err.value) == {"jobId": job, "provider": bob.address}
    _assert_hint(err.value)
    carol.reveal(job, GOOD)

    # Once the reveal window closes the copycat is slashed like any non-revealer.
    advance(cast.w3, cast.owner.params().reveal_window + 1)
    cast.keeper.finalize(job)
    assert cast.owner.state(job) == JobState.SETTLED
    record = cast.owner.provider(bob.address)
    assert (record.stake, record.locked, record.jobs_slashed) == (
        scenarios.PROVIDER_STAKE - COLLATERAL,
        0,
        1,
    )
    assert cast.owner.credits(bob.address) == 0
    # alice and carol: paid, plus half each of the 30 % reward share of bob's collateral (a
    # non-revealer compensates nobody: the requester's share is burned)
    assert cast.owner.credits(alice.address) == PAY + COLLATERAL * 3_000 // 10_000 // 2
    assert cast.owner.credits(carol.address) == 250_000_000_000_000_000


# ---------------------------------------------------------------- decoded reverts


def test_finalize_too_early_is_decoded(cast: Cast) -> None:
    job, (alice,) = assigned_job(cast, ("alice",))
    alice.commit(job, GOOD)
    deadline = cast.owner.job(job).deadline
    assert cast.owner.state(job) == JobState.COMMITTED
    with pytest.raises(ContractRevert) as err:
        cast.keeper.finalize(job)
    assert err.value.name == "JobMarketDeadlineNotReached"
    assert _decoded(err.value) == {"jobId": job, "deadline": deadline}
    _assert_hint(err.value)
    assert isinstance(err.value, DepinError)
    assert cast.owner.state(job) == JobState.COMMITTED


def test_assign_by_non_matcher_is_decoded(cast: Cast) -> None:
    job = cast.requester.create_job(matmul_request(1))
    with pytest.raises(ContractRevert) as err:
        cast.requester.assign(job, [cast.providers["alice"].address])
    assert err.value.name == "JobMarketNotMatcher"
    assert _decoded(err.value) == {"caller": cast.requester.address}
    _assert_hint(err.value)
    assert cast.owner.state(job) == JobState.OPEN


def test_stake_zero_is_decoded(cast: Cast) -> None:
    alice = cast.providers["alice"]
    with pytest.raises(ContractRevert) as err:
        alice.stake(0)
    assert err.value.name == "ProviderRegistryZeroAmount"
    assert _decoded(err.value) == {}
    _assert_hint(err.value)


def test_create_job_without_tokens_is_decoded(cast: Cast, w3: Web3) -> None:
    poor = cast.owner.as_account(funded_account(w3))
    jobs = cast.owner.job_count()
    with pytest.raises(ContractRevert) as err:
        poor.create_job(matmul_request(1))
    assert err.value.name == "ERC20InsufficientBalance"
    assert _decoded(err.value) == {"sender": poor.address, "balance": 0, "needed": ESCROW}
    _assert_hint(err.value)
    assert cast.owner.job_count() == jobs


# ---------------------------------------------------------------- deployment file and RPC


def test_deployment_file_round_trip(cast: Cast, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deployment.json"
    cast.deployment.write(path)
    loaded = Deployment.load(path)
    assert loaded == cast.deployment
    assert loaded.chain_id == 31337
    # The loaded file drives a working client.
    client = Market(cast.w3, loaded)
    assert client.total_staked() == 7 * scenarios.PROVIDER_STAKE


def test_missing_deployment_file_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="depin devnet up"):
        Deployment.load(tmp_path / "absent.json")


def test_malformed_deployment_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text('{"chain_id": 1}')
    with pytest.raises(ConfigError, match="not a deployment file"):
        Deployment.load(path)


def test_connect_to_a_dead_port_raises_chain_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainError, match="cannot reach the RPC"):
        connect(url)


def test_connect_checks_the_chain_id(cast: Cast, rpc_url: str) -> None:
    chain_id = cast.w3.eth.chain_id
    w3 = connect(rpc_url, expected_chain_id=chain_id)
    assert Market(w3, cast.deployment).total_staked() == 7 * scenarios.PROVIDER_STAKE
    with pytest.raises(ChainError, match=f"serves chain {chain_id}"):
        connect(rpc_url, expected_chain_id=chain_id + 1)
