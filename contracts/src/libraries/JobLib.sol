// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IJobMarket} from "../interfaces/IJobMarket.sol";

/// @title JobLib
/// @notice Pure job arithmetic and the result hashing shared with the off-chain SDK.
library JobLib {
    uint256 internal constant BPS = 10_000;

    /// @notice keccak256(abi.encode(jobId, digest)): the public result hash.
    function resultHash(uint256 jobId, bytes32 digest) internal pure returns (bytes32) {
        return keccak256(abi.encode(jobId, digest));
    }

    /// @notice keccak256(abi.encode(provider, jobId, digest)): binds a result to its committer.
    function seal(address provider, uint256 jobId, bytes32 digest) internal pure returns (bytes32) {
        return keccak256(abi.encode(provider, jobId, digest));
    }

    /// @notice The stored commitment: the first 8 bytes of keccak256(abi.encode(resultHash, seal)).
    /// @dev 64 bits suffice: a committer that does not know the digest must guess the value the
    /// honest digest will produce for its own address, a 2^-64 chance per job.
    function commitment(bytes32 resultHash_, bytes32 seal_) internal pure returns (uint64) {
        return uint64(bytes8(keccak256(abi.encode(resultHash_, seal_))));
    }

    /// @notice The commitment `provider` must have made to reveal `digest` for `jobId`.
    function commitmentOf(uint256 jobId, address provider, bytes32 digest) internal pure returns (uint64) {
        return commitment(resultHash(jobId, digest), seal(provider, jobId, digest));
    }

    /// @notice The protocol fee on `pay`: `feeBps` of it, at least `minFee`; nothing on nothing.
    function feeOf(uint256 amount, uint256 feeBps, uint256 minFee) internal pure returns (uint256) {
        if (amount == 0) return 0;
        uint256 fee = amount * feeBps / BPS;
        return fee < minFee ? minFee : fee;
    }

    /// @notice Escrow of a job: every replica at the maximum price, the fee on that and the audit
    /// premium (`premiumBps` of it; zero unless replicas = 1).
    function escrowOf(
        uint256 replicas,
        uint256 units,
        uint256 maxPricePerUnit,
        uint256 feeBps,
        uint256 minFee,
        uint256 premiumBps
    ) internal pure returns (uint256) {
        uint256 payment = replicas * units * maxPricePerUnit;
        return payment + feeOf(payment, feeBps, minFee) + payment * premiumBps / BPS;
    }

    /// @notice Escrow held for `j`.
    function escrow(IJobMarket.Job storage j) internal view returns (uint256) {
        return escrowOf(j.replicas, j.units, j.maxPricePerUnit, j.feeBps, j.minFee, j.premiumBps);
    }

    /// @notice What one upheld executor or verifier of `j` is paid: units x clearing price.
    function pay(IJobMarket.Job storage j) internal view returns (uint256) {
        return uint256(j.units) * j.clearingPrice;
    }

    /// @notice Collateral each participant of `j` locks: multiple x units x clearing price.
    function collateral(IJobMarket.Job storage j) internal view returns (uint96) {
        return uint96(uint256(j.collateralMultiple) * j.units * j.clearingPrice);
    }

    /// @notice Number of set bits.
    function popcount(uint256 x) internal pure returns (uint256 c) {
        for (; x != 0; x &= x - 1) ++c;
    }

    /// @notice Bits lo .. hi-1 set.
    function range(uint256 lo, uint256 hi) internal pure returns (uint256) {
        return ((1 << hi) - 1) & ~((1 << lo) - 1);
    }
}
