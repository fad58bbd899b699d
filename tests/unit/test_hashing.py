"""marketplace.protocol.hashing against contracts/src/libraries/JobLib.sol.

The fixed vectors were computed with foundry's `cast` (an independent ABI encoder and keccak):
    cast keccak $(cast abi-encode "f(uint256,bytes32)" 7 $DIGEST)
    cast keccak $(cast abi-encode "f(address,uint256,bytes32)" $PROVIDER 7 $DIGEST)
    cast keccak $(cast abi-encode "f(bytes32,bytes32)" $RESULT_HASH $SEAL)   # first 8 bytes
tests/contracts/test_sdk_against_chain.py checks the same functions against the deployed contract.
"""

from __future__ import annotations

import hashlib

import pytest

from marketplace.protocol import hashing

DIGEST = hashlib.sha256(b"the correct output tensor bytes").digest()
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
JOB = 7
RESULT_HASH = bytes.fromhex("27da1897561f5b89e28dd8d3d9918dabf023b4abd81bca596aa2af85b5ecb8a6")
SEAL = bytes.fromhex("d315d801680b1e870c7405c2f40a73595fca9fc43211e4d1f3163e0e6cb75e73")
COMMITMENT = 0xF166100F5E68C941


def test_digest_vector() -> None:
    assert DIGEST.hex() == "f1d27387dbb6e29b866c5c1f7aa7e675e9f08fd0a4f5084ffedba85e32708b73"


def test_result_hash_vector() -> None:
    assert hashing.result_hash(JOB, DIGEST) == RESULT_HASH


def test_seal_vector() -> None:
    assert hashing.seal(PROVIDER, JOB, DIGEST) == SEAL
    # The address's spelling does not matter, only its bytes.
    assert hashing.seal(PROVIDER.lower(), JOB, DIGEST) == SEAL


def test_commitment_vector() -> None:
    assert hashing.commitment(RESULT_HASH, SEAL) == COMMITMENT
    assert hashing.commitment_of(JOB, PROVIDER, DIGEST) == COMMITMENT


def test_result_hash_differs_per_job_and_digest() -> None:
    other_digest = hashlib.sha256(b"another output").digest()
    assert hashing.result_hash(JOB + 1, DIGEST) != RESULT_HASH
    assert hashing.result_hash(JOB, other_digest) != RESULT_HASH


def test_seal_and_commitment_differ_per_provider_and_job() -> None:
    assert hashing.seal(OTHER, JOB, DIGEST) != SEAL
    assert hashing.seal(PROVIDER, JOB + 1, DIGEST) != SEAL
    # The result hash is public and the same for everyone; the commitment is not.
    assert hashing.commitment_of(JOB, OTHER, DIGEST) != COMMITMENT
    assert hashing.commitment_of(JOB + 1, PROVIDER, DIGEST) != COMMITMENT


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_digest_must_be_32_bytes(length: int) -> None:
    digest = b"\x01" * length
    with pytest.raises(ValueError, match=f"a digest is 32 bytes, got {length}"):
        hashing.result_hash(JOB, digest)
    with pytest.raises(ValueError, match=f"got {length}"):
        hashing.seal(PROVIDER, JOB, digest)
    with pytest.raises(ValueError, match=f"got {length}"):
        hashing.commitment_of(JOB, PROVIDER, digest)


@pytest.mark.parametrize(
    ("replicas", "units", "price", "fee_bps", "escrow"),
    [
        # Lifecycle.t.sol: PAY + FEE with PAY = 100 units x 1e15 and 250 bps
        (1, 100, 10**15, 250, 102_500_000_000_000_000),
        # three replicas: 3 x (PAY + FEE)
        (3, 100, 10**15, 250, 307_500_000_000_000_000),
        # the cheaper-provider example prices at PRICE / 2
        (1, 100, 5 * 10**14, 250, 51_250_000_000_000_000),
        # no fee
        (2, 100, 10**15, 0, 200_000_000_000_000_000),
        # the fee rounds down as Solidity's integer division does: 39 x 250 / 10000 = 0
        (1, 1, 39, 250, 39),
        (1, 1, 41, 250, 42),
        # the fee is charged on the total, not per replica: 3 x 13 = 39 -> fee 0
        (3, 1, 13, 250, 39),
    ],
)
def test_escrow_of(replicas: int, units: int, price: int, fee_bps: int, escrow: int) -> None:
    assert hashing.escrow_of(replicas, units, price, fee_bps) == escrow
