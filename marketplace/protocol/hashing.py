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


def escrow_of(replicas: int, units: int, max_price_per_unit: int, fee_bps: int) -> int:
    """Escrow of a job: every replica at the max price plus the protocol fee on that."""
    payment = replicas * units * max_price_per_unit
    return payment + payment * fee_bps // 10_000
