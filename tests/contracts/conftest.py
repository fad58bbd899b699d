"""Fixtures for the contract tests: the SDK driving the contracts on ape-foundry's Anvil.

ape's pytest plugin starts Anvil (ape-config.yaml) and wraps every test in chain isolation: it
snapshots the chain when a scope's fixtures are set up and reverts at the end of that scope. The
session-scoped deployment below is made inside the session snapshot, so it stays for the whole
run, while whatever one test does is reverted before the next (each path starts from the same
books). Reverting rewinds account nonces the SDK Signer has cached, so every client forgets its
nonce at the start of each test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import ape
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.devnet import scenarios
from marketplace.devnet.scenarios import Cast
from marketplace.protocol.client import JobRequest, Market


@pytest.fixture(scope="session")
def w3() -> Web3:
    """The Web3 of the Anvil node ape-foundry started for this run."""
    web3: Web3 = ape.chain.provider.web3
    return web3


@pytest.fixture(scope="session")
def rpc_url() -> str:
    uri = ape.chain.provider.http_uri
    assert uri, "ape-foundry exposes no HTTP URI"
    return str(uri)


@pytest.fixture(scope="session")
def owner() -> LocalAccount:
    """ape's first test account (funded by ape-foundry's Anvil) as a local key."""
    account: LocalAccount = Account.from_key(ape.accounts.test_accounts[0].private_key)
    return account


@pytest.fixture(scope="session")
def cast(w3: Web3, owner: LocalAccount) -> Cast:
    """The contracts deployed by `owner`, a funded requester and 7 staked providers."""
    return scenarios.setup(w3, owner)


def _clients(cast: Cast) -> list[Market]:
    return [cast.owner, cast.matcher, cast.keeper, cast.requester, *cast.providers.values()]


@pytest.fixture(autouse=True)
def _fresh_nonces(cast: Cast) -> Iterator[None]:
    """ape reverts the chain between tests; the Signers' cached nonces must follow it."""
    for client in _clients(cast):
        assert client.signer is not None
        client.signer.reset_nonce()
    yield


def matmul_request(replicas: int) -> JobRequest:
    """A job request at the scenario's units and price with `replicas` executors."""
    return JobRequest(
        spec_hash=hashlib.sha256(b'{"kind":"matmul"}').digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
    )


def assigned_job(cast: Cast, names: tuple[str, ...]) -> tuple[int, list[Market]]:
    """A new job assigned by the matcher to the providers `names` (their clients returned)."""
    providers = [cast.providers[n] for n in names]
    job = cast.requester.create_job(matmul_request(len(names)))
    cast.matcher.assign(job, [p.address for p in providers])
    return job, providers
