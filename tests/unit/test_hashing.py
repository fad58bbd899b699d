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
    ("replicas", "units", "price", "fee_bps", "min_fee", "premium_bps", "escrow"),
    [
        # replicas = 1 at the defaults: PAY (100 units x 1e15) + FEE (250 bps) + premium
        # (audit 1000 bps x 3 verifiers = 3000 bps of PAY)
        (1, 100, 10**15, 250, 10**14, 3_000, 132_500_000_000_000_000),
        # three replicas pay no premium: 3 x PAY + the fee on that
        (3, 100, 10**15, 250, 10**14, 0, 307_500_000_000_000_000),
        # the fee floor: 250 bps of 39 rounds to 0, the floor of 5 applies
        (1, 1, 39, 250, 5, 0, 44),
        # without a floor the fee rounds down as Solidity's integer division does
        (1, 1, 39, 250, 0, 0, 39),
        (1, 1, 41, 250, 0, 0, 42),
        # the fee is charged on the total, not per replica: 3 x 13 = 39 -> fee 0
        (3, 1, 13, 250, 0, 0, 39),
        # the premium rounds down too: 39 x 3000 / 10000 = 11
        (1, 1, 39, 0, 0, 3_000, 50),
    ],
)
def test_escrow_of(
    replicas: int, units: int, price: int, fee_bps: int, min_fee: int, premium_bps: int, escrow: int
) -> None:
    assert hashing.escrow_of(replicas, units, price, fee_bps, min_fee, premium_bps) == escrow


def test_fee_of_has_a_floor_and_charges_nothing_on_nothing() -> None:
    assert hashing.fee_of(0, 250, 10**14) == 0
    assert hashing.fee_of(100, 250, 7) == 7
    assert hashing.fee_of(10**18, 250, 7) == 25 * 10**15


def test_escrow_of_defaults_to_no_fee_floor_and_no_premium() -> None:
    # 250 bps of 39 rounds to 0: a default floor or premium above zero would show here.
    assert hashing.escrow_of(1, 1, 39, 250) == 39
    assert hashing.escrow_of(3, 100, 10**15, 250) == 307_500_000_000_000_000
