// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MarketFixture} from "../utils/MarketFixture.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice Shared helpers for the unit suites: state-guard errors, ready-made jobs in each state,
/// request builders and the audit-draw oracle the tests compare the contract against.
abstract contract UnitBase is MarketFixture {
    bytes32 internal constant GOOD = keccak256("correct output");
    bytes32 internal constant BAD = keccak256("fabricated output");
    bytes32 internal constant OTHER = keccak256("another output");
    bytes32 internal constant SPEC = keccak256("spec");

    uint256 internal constant BPS = 10_000;
    uint256 internal constant PAY = uint256(UNITS) * PRICE; // one replica at the max price
    uint256 internal constant FEE = PAY * 250 / 10_000;
    uint256 internal constant COLLATERAL = 10 * PAY; // collateralMultiple 10 at the clearing price
    uint256 internal constant PREMIUM = PAY * 1000 * 3 / 10_000; // auditBps x verifiers, replicas = 1
    uint256 internal constant ESCROW1 = PAY + FEE + PREMIUM; // a replicas = 1 job at the defaults
    uint256 internal constant BOND = 3 * PAY; // challenge bond: verifiers x units x clearing price

    uint256 internal constant S_NONE = 1 << 0;
    uint256 internal constant S_OPEN = 1 << 1;
    uint256 internal constant S_ASSIGNED = 1 << 2;
    uint256 internal constant S_COMMITTED = 1 << 3;
    uint256 internal constant S_AUDITING = 1 << 4;
    uint256 internal constant S_REVEALING = 1 << 5;
    uint256 internal constant S_FINALIZABLE = S_COMMITTED | S_AUDITING | S_REVEALING;
    uint256 internal constant S_EXPIRABLE = S_OPEN | S_ASSIGNED | S_AUDITING;
    uint256 internal constant S_COMMITTABLE = S_ASSIGNED | S_AUDITING;

    // ---------------------------------------------------------------- errors

    function unexpected(uint256 jobId, IJobMarket.JobState s, uint256 allowed) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketUnexpectedState.selector, jobId, s, allowed);
    }

    function notReached(uint256 jobId, uint256 deadline) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketDeadlineNotReached.selector, jobId, uint32(deadline));
    }

    function passed(uint256 jobId, uint256 deadline) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketDeadlinePassed.selector, jobId, uint32(deadline));
    }

    function invalidParams(string memory reason) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketInvalidParams.selector, reason);
    }

    // ---------------------------------------------------------------- assertions

    function assertState(uint256 jobId, IJobMarket.JobState s) internal view {
        assertEq(uint256(uint8(market.state(jobId))), uint256(uint8(s)), "job state");
    }

    function deadlineOf(uint256 jobId) internal view returns (uint256) {
        return market.job(jobId).deadline;
    }

    // ---------------------------------------------------------------- requests

    function req(uint32 units, uint80 price, uint8 replicas) internal pure returns (IJobMarket.JobRequest memory) {
        return IJobMarket.JobRequest({
            specHash: SPEC,
            units: units,
            maxPricePerUnit: price,
            profile: CPU_PROFILE,
            replicas: replicas,
            minVramGiB: 0,
            acceptWindow: 1 hours,
            execWindow: 1 hours
        });
    }

    function createReq(IJobMarket.JobRequest memory r) internal returns (uint256 id) {
        vm.prank(requester);
        id = market.createJob(r);
    }

    function applyParams(IJobMarket.Params memory p) internal {
        vm.prank(owner);
        market.setParams(p);
    }

    // ---------------------------------------------------------------- lists

    function two(address a, address b) internal pure returns (address[] memory l) {
        l = new address[](2);
        l[0] = a;
        l[1] = b;
    }

    function three(address a, address b, address c) internal pure returns (address[] memory l) {
        l = new address[](3);
        l[0] = a;
        l[1] = b;
        l[2] = c;
    }

    function ids1(uint256 a) internal pure returns (uint256[] memory l) {
        l = new uint256[](1);
        l[0] = a;
    }

    function ids2(uint256 a, uint256 b) internal pure returns (uint256[] memory l) {
        l = new uint256[](2);
        l[0] = a;
        l[1] = b;
    }

    // ---------------------------------------------------------------- ready-made jobs

    /// @notice A replicas = 1 job assigned to `p` at the default request.
    function assignedJob(address p) internal returns (uint256 id) {
        id = createJob(1);
        assignJob(id, one(p));
    }

    /// @notice A replicas = 1 job `p` committed GOOD to (state Committed).
    function committedJob(address p) internal returns (uint256 id) {
        id = assignedJob(p);
        commitAs(p, id, GOOD);
    }

    /// @notice A replicas = 1 job executed by `p` (committed `digest`) and selected for audit.
    function auditingJob(address p, bytes32 digest) internal returns (uint256 id) {
        setAuditBps(10_000);
        id = assignedJob(p);
        commitAs(p, id, digest);
        nextBlock();
        assertTrue(market.drawAudit(id), "audit drawn");
    }

    uint256 private _poolFunders;

    /// @notice Funds the audit pool (it has no direct deposit: a no-show slash credits its reward
    /// share to the pool, here 30% of the collateral) and cancels that job. Returns the increase.
    function fundPoolBySlash() internal returns (uint256 added) {
        uint256 before = market.auditPool();
        address lazy = newProvider(string.concat("pool-funder-", vm.toString(_poolFunders++)), PRICE);
        uint256 id = assignedJob(lazy);
        skipTime(1 hours + 1);
        market.expire(id);
        vm.prank(requester);
        market.cancel(id);
        added = market.auditPool() - before;
    }

    // ---------------------------------------------------------------- audit oracle

    /// @notice What the contract's draw must decide for `jobId` committed in `commitBlock` (the
    /// hash must be available: v2 re-seeds an aged draw instead of deciding it).
    function expectedSelected(uint256 jobId, uint256 commitBlock, uint256 auditBps) internal view returns (bool) {
        bytes32 seed = blockhash(commitBlock);
        require(seed != bytes32(0), "expectedSelected: hash not available");
        return uint256(keccak256(abi.encode(seed, jobId))) % BPS < auditBps;
    }

    /// @notice Escrow of a request at the default parameters (fee floor and premium included).
    function escrowAt(uint256 replicas, uint256 units, uint256 price) internal pure returns (uint256) {
        return JobLib.escrowOf(replicas, units, price, 250, 1e14, replicas == 1 ? 3000 : 0);
    }

    /// @notice One of the valid replica counts (1, 3, 5) picked by `x`.
    function oddReplicas(uint256 x) internal pure returns (uint8) {
        return uint8(2 * (x % 3) + 1);
    }

    function commitmentOf(uint256 jobId, address p, bytes32 digest) internal pure returns (uint64) {
        return JobLib.commitmentOf(jobId, p, digest);
    }

    function providerRec(address p) internal view returns (IProviderRegistry.Provider memory) {
        return registry.provider(p);
    }
}
