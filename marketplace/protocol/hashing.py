"""Result hashing, byte-identical to contracts/src/libraries/JobLib.sol.

A provider commits `result_hash(job_id, digest)` and `seal(provider, job_id, digest)`; the
contract stores `commitment(...)` and accepts a reveal only when both recompute.
"""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak


def _digest_bytes(digest: bytes) -> bytes:
    if len(digest) != 32:
        raise ValueError(f"a digest is 32 bytes, got {len(digest)}; pass the raw sha256 digest")
    return digest


def result_hash(job_id: int, digest: bytes) -> bytes:
    """keccak256(abi.encode(jobId, digest))."""
    return keccak(encode(["uint256", "bytes32"], [job_id, _digest_bytes(digest)]))


def seal(provider: str, job_id: int, digest: bytes) -> bytes:
    """keccak256(abi.encode(provider, jobId, digest)): binds the result to its committer."""
    return keccak(
        encode(
            ["address", "uint256", "bytes32"],
            [to_canonical_address(provider), job_id, _digest_bytes(digest)],
        )
    )


def commitment(result_hash_: bytes, seal_: bytes) -> int:
    """The 64-bit commitment the contract stores: first 8 bytes of keccak256(abi.encode(h, s))."""
    return int.from_bytes(keccak(encode(["bytes32", "bytes32"], [result_hash_, seal_]))[:8], "big")


def commitment_of(job_id: int, provider: str, digest: bytes) -> int:
    """The commitment `provider` must have made to reveal `digest` for `job_id`."""
    return commitment(result_hash(job_id, digest), seal(provider, job_id, digest))


BPS = 10_000


def fee_of(amount: int, fee_bps: int, min_fee: int) -> int:
    """JobLib.feeOf: `fee_bps` of `amount`, at least `min_fee`; nothing on nothing."""
    if amount == 0:
        return 0
    return max(amount * fee_bps // BPS, min_fee)


def escrow_of(
    replicas: int,
    units: int,
    max_price_per_unit: int,
    fee_bps: int,
    min_fee: int = 0,
    premium_bps: int = 0,
) -> int:
    """JobLib.escrowOf: every replica at the max price, the fee on that (at least `min_fee`) and
    the audit premium (`premium_bps` of it; zero unless replicas = 1)."""
    payment = replicas * units * max_price_per_unit
    return payment + fee_of(payment, fee_bps, min_fee) + payment * premium_bps // BPS
