// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice expire and expireBatch: unassigned jobs, no-shows (slash, exclude, reopen once) and
/// audits whose deadline passed.
contract JobMarketExpireTest is UnitBase {
    uint256 internal constant REWARD = COLLATERAL * 3000 / BPS;
    /// @dev v2: a no-show compensates nobody (the requester could profit from it), so everything
    /// but the reward share is burned.
    uint256 internal constant BURN = COLLATERAL - REWARD;

    address internal a;
    address internal b;
    address internal c;

    function setUp() public override {
        super.setUp();
        a = newProvider("a", PRICE);
        b = newProvider("b", PRICE);
        c = newProvider("c", PRICE);
    }

    // ---------------------------------------------------------------- Open

    function test_expire_openJobAfterAcceptWindow() public {
        uint256 id = createJob(3);
        uint256 escrow = 3 * (PAY + FEE);
        skipTime(1 hours + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, requester, escrow);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Expired, bytes32(0), 0, escrow, 0, 0);
        vm.prank(keeper);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), escrow);
    }

    function test_expire_revertsOpenBeforeAndAtDeadline() public {
        uint256 id = createJob(1);
        uint256 acceptBy = deadlineOf(id);
        vm.expectRevert(notReached(id, acceptBy));
        market.expire(id);
        vm.warp(acceptBy);
        vm.expectRevert(notReached(id, acceptBy));
        market.expire(id);
    }

    function testFuzz_expire_openTiming(uint32 acceptWindow, uint256 dt) public {
        acceptWindow = uint32(bound(acceptWindow, 10, 1 days));
        dt = bound(dt, 0, 2 days);
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.acceptWindow = acceptWindow;
        uint256 id = createReq(r);
        assertEq(deadlineOf(id), block.timestamp + acceptWindow);
        vm.warp(block.timestamp + dt);
        if (dt <= acceptWindow) {
            vm.expectRevert(notReached(id, deadlineOf(id)));
            market.expire(id);
            return;
        }
        market.expire(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), ESCROW1);
    }

    // ---------------------------------------------------------------- Assigned: no-shows

    function test_expire_noShowSlashedAndReopened() public {
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        uint256 supply = token.totalSupply();
        uint32 acceptBy = uint32(block.timestamp + 30 minutes);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(id, a, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, a, COLLATERAL);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(market), address(0), BURN);
        vm.expectEmit(address(market));
        emit IJobMarket.JobReopened(id, acceptBy);
        market.expire(id);

        assertState(id, IJobMarket.JobState.Open);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.flags), 1, "reopened flag");
        assertEq(uint256(j.participants), 0);
        assertEq(uint256(j.clearingPrice), 0);
        assertEq(uint256(j.deadline), acceptBy, "reassign window");
        assertEq(market.participants(id).length, 0);
        assertEq(market.credits(requester), 0, "a no-show never credits the requester");
        assertEq(market.auditPool(), REWARD, "no honest party yet: the reward funds audits");
        assertEq(supply - token.totalSupply(), BURN);
        IProviderRegistry.Provider memory rec = registry.provider(a);
        assertEq(rec.stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(rec.locked, 0);
        assertEq(uint256(rec.jobsSlashed), 1);
    }

    function test_expire_revertsAssignedBeforeAndAtDeadline() public {
        uint256 id = assignedJob(a);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.expire(id);
        vm.warp(deadline);
        vm.expectRevert(notReached(id, deadline));
        market.expire(id);
    }

    function testFuzz_expire_execWindowTiming(uint32 execWindow, uint256 dt) public {
        execWindow = uint32(bound(execWindow, 60, 1 days)); // the protocol floor is 60 s
        dt = bound(dt, 0, 2 days);
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.execWindow = execWindow;
        uint256 id = createReq(r);
        assignJob(id, one(a));
        uint256 deadline = deadlineOf(id);
        assertEq(deadline, block.timestamp + execWindow);
        vm.warp(block.timestamp + dt);
        if (block.timestamp <= deadline) {
            vm.expectRevert(notReached(id, deadline));
            market.expire(id);
            // and the provider may still commit
            commitAs(a, id, GOOD);
            assertState(id, IJobMarket.JobState.Committed);
            return;
        }
        market.expire(id);
        assertState(id, IJobMarket.JobState.Open);
        assertEq(registry.provider(a).stake, PROVIDER_STAKE - COLLATERAL);
    }

    function test_expire_reopenedThenSettled() public {
        setAuditBps(0);
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        market.expire(id);
        uint256 acceptBy = deadlineOf(id);
        vm.warp(acceptBy);
        assignJob(id, one(b));
        commitAs(b, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(b), PAY);
        assertEq(market.credits(requester), 0, "no compensation for the no-show");
    }

    function test_expire_reopenedAssignRevertsAfterReassignWindow() public {
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        market.expire(id);
        uint256 acceptBy = deadlineOf(id);
        vm.warp(acceptBy + 1);
        vm.prank(matcher);
        vm.expectRevert(passed(id, acceptBy));
        market.assign(id, one(b));
    }

    function test_expire_reopenedUnassignedExpires() public {
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        market.expire(id);
        skipTime(30 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Expired, bytes32(0), 0, ESCROW1, 0, 0);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), ESCROW1);
    }

    function test_expire_reopenedCanBeCancelled() public {
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        market.expire(id);
        vm.prank(requester);
        market.cancel(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), ESCROW1);
    }

    function test_expire_noShowTwiceExpires() public {
        uint256 id = assignedJob(a);
        skipTime(1 hours + 1);
        market.expire(id);
        assignJob(id, one(b));
        skipTime(1 hours + 1);
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, b, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Expired, bytes32(0), 0, ESCROW1, REWARD, BURN);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(uint256(market.job(id).flags), 1);
        assertEq(market.credits(requester), ESCROW1, "escrow back; no compensation for no-shows");
        assertEq(market.auditPool(), 2 * REWARD);
        assertEq(supply - token.totalSupply(), BURN);
        assertEq(registry.provider(b).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(registry.provider(a).locked + registry.provider(b).locked, 0);
    }

    function test_expire_missingReplicaSlashedRestReveal() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        commitAs(a, id, GOOD);
        commitAs(c, id, GOOD);
        skipTime(1 hours + 1);
        uint32 revealBy = uint32(block.timestamp + 10 minutes);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, b, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, revealBy);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Revealing);
        assertEq(market.credits(requester), 0);
        assertEq(market.auditPool(), REWARD);
        revealAs(a, id, GOOD);
        revealAs(c, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(a), PAY, "the no-show's reward went to the pool, not to the replicas");
        assertEq(market.credits(c), PAY);
        assertEq(market.credits(b), 0);
        assertEq(market.credits(requester), PAY + FEE, "its escrow share back");
    }

    function test_expire_allReplicasNoShowReopens() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        skipTime(1 hours + 1);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Open);
        assertEq(market.credits(requester), 0);
        assertEq(market.auditPool(), 3 * REWARD);
        for (uint256 i; i < 3; ++i) {
            address p = i == 0 ? a : i == 1 ? b : c;
            assertEq(registry.provider(p).stake, PROVIDER_STAKE - COLLATERAL);
        }
    }

    // ---------------------------------------------------------------- Auditing

    /// @notice v2 (replaces "an audit without verifiers settles"): no verdict, no pay: the
    /// requester is refunded and the executor released unpaid and unslashed.
    function test_expire_auditWithoutVerifiersRefunds() public {
        uint256 id = auditingJob(a, GOOD);
        uint256 escrow = market.escrowFor(request(1));
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.expire(id);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Refunded, bytes32(0), 0, escrow, 0, 0);
        market.expire(id);
        assertEq(market.credits(a), 0);
        assertEq(market.credits(requester), escrow);
        assertEq(registry.provider(a).stake, PROVIDER_STAKE);
        assertEq(registry.provider(a).locked, 0);
    }

    // ---------------------------------------------------------------- state guard

    function test_expire_revertsUnknownJob() public {
        vm.expectRevert(unexpected(4, IJobMarket.JobState.None, S_EXPIRABLE));
        market.expire(4);
    }

    function test_expire_revertsCommitted() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        skipTime(2 hours);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_EXPIRABLE));
        market.expire(id);
    }

    function test_expire_revertsRevealing() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        skipTime(2 hours);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Revealing, S_EXPIRABLE));
        market.expire(id);
    }

    function test_expire_twiceReverts() public {
        uint256 id = createJob(1);
        skipTime(2 hours);
        market.expire(id);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Expired, S_EXPIRABLE));
        market.expire(id);
        assertEq(market.credits(requester), ESCROW1, "refunded once");
    }

    // ---------------------------------------------------------------- expireBatch

    function test_expireBatch() public {
        uint256 id1 = createJob(1);
        uint256 id2 = assignedJob(a);
        skipTime(1 hours + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id1, IJobMarket.JobState.Expired, bytes32(0), 0, ESCROW1, 0, 0);
        vm.expectEmit(address(market));
        emit IJobMarket.JobReopened(id2, uint32(block.timestamp + 30 minutes));
        market.expireBatch(ids2(id1, id2));
        assertState(id1, IJobMarket.JobState.Expired);
        assertState(id2, IJobMarket.JobState.Open);
    }

    function test_expireBatch_revertsEmpty() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.expireBatch(new uint256[](0));
    }

    /// @notice v2 (replaces "one not due reverts all"): the item not due is skipped.
    function test_expireBatch_skipsItemNotDue() public {
        uint256 id1 = createJob(1);
        skipTime(1 hours + 1);
        uint256 id2 = createJob(1);
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(id2, market.expire.selector, notReached(id2, deadlineOf(id2)));
        market.expireBatch(ids2(id2, id1));
        assertState(id1, IJobMarket.JobState.Expired);
        assertState(id2, IJobMarket.JobState.Open);
        assertEq(market.credits(requester), ESCROW1);
    }
}
