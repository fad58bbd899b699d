// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";

/// @notice release: an executor that cannot run its job hands the seat back before the deadline,
/// paying units x clearing price of its collateral into the audit pool.
contract JobMarketReleaseTest is UnitBase {
    /// @dev The release fee at the default request: units x clearing price, a tenth of the
    /// collateral at the default multiple of 10.
    uint256 internal constant RELEASE_FEE = PAY;

    address internal a;
    address internal b;
    address internal c;

    function setUp() public override {
        super.setUp();
        a = newProvider("a", PRICE);
        b = newProvider("b", PRICE);
        c = newProvider("c", PRICE);
    }

    function releaseAs(address p, uint256 jobId) internal {
        vm.prank(p);
        market.release(jobId);
    }

    function notParticipant(uint256 jobId, address p) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, jobId, p);
    }

    function excluded(uint256 jobId, address p) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IJobMarket.JobMarketProviderExcluded.selector, jobId, p);
    }

    function assertReleased(address p, uint256 slashedTimes) internal view {
        IProviderRegistry.Provider memory rec = providerRec(p);
        assertEq(rec.stake, PROVIDER_STAKE - slashedTimes * RELEASE_FEE, "stake less the fee");
        assertEq(rec.locked, 0, "rest of the collateral unlocked");
        assertEq(registry.freeStake(p), PROVIDER_STAKE - slashedTimes * RELEASE_FEE, "free stake back");
        assertEq(uint256(rec.jobsSlashed), slashedTimes, "counted as a slash");
    }

    // ---------------------------------------------------------------- guards

    function test_release_revertsUnknownJob() public {
        vm.prank(a);
        vm.expectRevert(unexpected(7, IJobMarket.JobState.None, S_ASSIGNED));
        market.release(7);
    }

    function test_release_revertsOpen() public {
        uint256 id = createJob(1);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Open, S_ASSIGNED));
        market.release(id);
    }

    function test_release_revertsCommittedJob() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_ASSIGNED));
        market.release(id);
    }

    function test_release_revertsRevealing() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Revealing, S_ASSIGNED));
        market.release(id);
    }

    /// @notice Verifiers cannot release: a drawn verifier leaving could leave the round unstaffed
    /// (no verdict) and spare a cheating executor. The job is Auditing while they hold seats.
    function test_release_revertsVerifierAndExecutorDuringAudit() public {
        stakeVerifiers(6);
        uint256 id = auditingJob(a, BAD);
        address[] memory vs = staffRound(id);
        vm.prank(vs[0]);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Auditing, S_ASSIGNED));
        market.release(id);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Auditing, S_ASSIGNED));
        market.release(id);
    }

    function test_release_revertsClosedJob() public {
        uint256 id = assignedJob(a);
        releaseAs(a, id);
        vm.prank(requester);
        market.cancel(id);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Expired, S_ASSIGNED));
        market.release(id);
    }

    function test_release_revertsStrangerAndRequester() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        address stranger = newProvider("stranger", PRICE);
        vm.prank(stranger);
        vm.expectRevert(notParticipant(id, stranger));
        market.release(id);
        vm.prank(requester);
        vm.expectRevert(notParticipant(id, requester));
        market.release(id);
    }

    function test_release_revertsTwice() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        releaseAs(b, id);
        vm.prank(b);
        vm.expectRevert(notParticipant(id, b));
        market.release(id);
        assertReleased(b, 1);
    }

    /// @notice A committed result is never withdrawn: the audit draw is seeded after the commit.
    function test_release_revertsAfterCommit() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        commitAs(a, id, GOOD);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAlreadyCommitted.selector, id, a));
        market.release(id);
    }

    function test_release_revertsAfterDeadline() public {
        uint256 id = assignedJob(a);
        uint256 deadline = deadlineOf(id);
        vm.warp(deadline + 1);
        vm.prank(a);
        vm.expectRevert(passed(id, deadline));
        market.release(id);
    }

    function test_release_atDeadline() public {
        uint256 id = assignedJob(a);
        vm.warp(deadlineOf(id));
        releaseAs(a, id);
        assertState(id, IJobMarket.JobState.Open);
    }

    function test_release_releasedSeatCannotCommit() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        releaseAs(a, id);
        vm.expectRevert(notParticipant(id, a));
        commitAs(a, id, GOOD);
    }

    // ---------------------------------------------------------------- replicas = 1

    function test_release_replicas1Reopens() public {
        uint256 id = assignedJob(a);
        uint256 supply = token.totalSupply();
        uint256 held = heldByContracts();
        uint32 acceptBy = uint32(block.timestamp + 30 minutes);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(id, a, uint96(RELEASE_FEE));
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderReleased(id, a, RELEASE_FEE);
        vm.expectEmit(address(market));
        emit IJobMarket.JobReopened(id, acceptBy);
        releaseAs(a, id);

        assertState(id, IJobMarket.JobState.Open);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.flags), 1, "reopened flag");
        assertEq(uint256(j.participants), 0);
        assertEq(uint256(j.activeMask), 0);
        assertEq(uint256(j.deadline), acceptBy, "reassign window from now");
        assertEq(market.auditPool(), RELEASE_FEE, "the fee funds audits");
        assertEq(market.credits(requester), 0, "nobody profits from a release");
        assertEq(market.credits(a), 0);
        assertEq(token.totalSupply(), supply, "nothing burned");
        assertEq(heldByContracts(), held, "the fee moved from the registry to the market");
        assertReleased(a, 1);
    }

    function test_release_excludedFromReopenedJob() public {
        setAuditBps(0);
        uint256 id = assignedJob(a);
        releaseAs(a, id);
        vm.prank(matcher);
        vm.expectRevert(excluded(id, a));
        market.assign(id, one(a));
        assignJob(id, one(b));
        commitAs(b, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(b), PAY);
        assertEq(market.credits(a), 0);
        assertEq(market.credits(requester), 0, "the escrow was spent on b's run");
    }

    /// @notice A second release on a reopened job ends it: it was already reassigned once, and a
    /// second reopen would stretch the job past its lifetime bound.
    function test_release_secondOpeningExpiresWithFullRefund() public {
        uint256 id = assignedJob(a);
        releaseAs(a, id);
        assignJob(id, one(b));
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderReleased(id, b, RELEASE_FEE);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, requester, ESCROW1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Expired, bytes32(0), 0, ESCROW1, RELEASE_FEE, 0);
        releaseAs(b, id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), ESCROW1, "full refund");
        assertEq(market.auditPool(), 2 * RELEASE_FEE);
        assertReleased(a, 1);
        assertReleased(b, 1);
    }

    /// @notice A no-show on the reopened job after a release: the job expires as after two no-shows.
    function test_release_thenNoShowExpires() public {
        uint256 id = assignedJob(a);
        releaseAs(a, id);
        assignJob(id, one(b));
        skipTime(1 hours + 1);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), ESCROW1);
        assertEq(registry.provider(b).stake, PROVIDER_STAKE - COLLATERAL, "the no-show pays the full slash");
    }

    // ---------------------------------------------------------------- replicas = 3

    function test_release_oneOfThreeOthersKeepSeats() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        uint256 deadline = deadlineOf(id);
        skipTime(10 minutes);
        releaseAs(a, id);
        assertState(id, IJobMarket.JobState.Assigned);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.deadline), deadline, "the others keep their deadline");
        assertEq(uint256(j.activeMask), 6);
        assertEq(uint256(j.participants), 3);
        assertReleased(a, 1);
        assertEq(providerRec(b).locked, COLLATERAL);

        commitAs(b, id, GOOD);
        assertState(id, IJobMarket.JobState.Assigned);
        uint32 revealBy = uint32(block.timestamp + 10 minutes);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, revealBy);
        commitAs(c, id, GOOD);
        revealAs(b, id, GOOD);
        revealAs(c, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(b), PAY);
        assertEq(market.credits(c), PAY);
        assertEq(market.credits(a), 0, "a released seat is never paid");
        assertEq(market.credits(requester), PAY + FEE, "the released seat's escrow share back");
        assertReleased(a, 1);
        assertEq(providerRec(b).locked + providerRec(c).locked, 0);
        assertEq(market.auditPool(), RELEASE_FEE + FEE, "the fee plus the audit share of the job's fee");
    }

    function test_release_afterOthersCommittedStartsReveal() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        uint32 revealBy = uint32(block.timestamp + 10 minutes);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderReleased(id, c, RELEASE_FEE);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, revealBy);
        releaseAs(c, id);
        assertState(id, IJobMarket.JobState.Revealing);
        assertEq(deadlineOf(id), revealBy);
        revealAs(a, id, GOOD);
        revealAs(b, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(c), 0);
        assertEq(market.credits(requester), PAY + FEE);
    }

    function test_release_allThreeReopen() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        releaseAs(a, id);
        releaseAs(b, id);
        assertState(id, IJobMarket.JobState.Assigned);
        vm.expectEmit(address(market));
        emit IJobMarket.JobReopened(id, uint32(block.timestamp + 30 minutes));
        releaseAs(c, id);
        assertState(id, IJobMarket.JobState.Open);
        assertEq(market.auditPool(), 3 * RELEASE_FEE);
        assertEq(market.credits(requester), 0);
        assertReleased(a, 1);
        assertReleased(b, 1);
        assertReleased(c, 1);
        address[] memory again = three(newProvider("d", PRICE), b, newProvider("e", PRICE));
        vm.prank(matcher);
        vm.expectRevert(excluded(id, b));
        market.assign(id, again);
    }

    /// @notice Only the seat still held and not committed is a no-show at the deadline.
    function test_release_remainingNoShowSlashedReleasedNot() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        releaseAs(a, id);
        commitAs(b, id, GOOD);
        skipTime(1 hours + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, c, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, uint32(block.timestamp + 10 minutes));
        market.expire(id);
        assertReleased(a, 1);
        assertEq(providerRec(c).stake, PROVIDER_STAKE - COLLATERAL);
        revealAs(b, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(b), PAY);
        assertEq(market.credits(requester), 2 * (PAY + FEE));
    }

    /// @notice Two released, the third misses the deadline: nobody committed, so the job reopens.
    function test_release_twoReleasedThirdNoShowReopens() public {
        uint256 id = createJob(3);
        assignJob(id, three(a, b, c));
        releaseAs(a, id);
        releaseAs(c, id);
        skipTime(1 hours + 1);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Open);
        assertEq(providerRec(b).stake, PROVIDER_STAKE - COLLATERAL);
        assertReleased(a, 1);
        assertReleased(c, 1);
    }

    // ---------------------------------------------------------------- fee and conservation

    /// @notice Any replica count, clearing price and number of releases: the fee is units x
    /// clearing price each, all of it into the audit pool, the rest unlocked; nothing is burned;
    /// once the job ends and everyone withdraws, the contracts hold exactly stake + pool + fees.
    function testFuzz_release_feeAndConservation(uint256 rSeed, uint32 units, uint80 ask, uint256 releases)
        public
    {
        uint8 replicas = oddReplicas(rSeed);
        units = uint32(bound(units, 1, 10_000));
        ask = uint80(bound(ask, 1, PRICE));
        releases = bound(releases, 1, replicas);
        address[] memory ps = new address[](replicas);
        for (uint256 i; i < replicas; ++i) {
            ps[i] = newProvider(string.concat("fz-", vm.toString(i)), i == 0 ? ask : 1);
        }
        uint256 supply = token.totalSupply();
        uint256 id = createReq(req(units, PRICE, replicas));
        assignJob(id, ps);
        uint256 fee = uint256(units) * ask;
        uint256 collateral = collateralOf(id);
        assertEq(fee * 10, collateral, "a tenth of the collateral at multiple 10");

        for (uint256 i; i < releases; ++i) {
            uint256 pool = market.auditPool();
            vm.expectEmit(address(market));
            emit IJobMarket.ProviderReleased(id, ps[i], fee);
            releaseAs(ps[i], id);
            assertEq(market.auditPool() - pool, fee, "fee into the pool");
            assertEq(providerRec(ps[i]).stake, PROVIDER_STAKE - fee);
            assertEq(providerRec(ps[i]).locked, 0);
        }
        if (releases == replicas) {
            assertState(id, IJobMarket.JobState.Open);
            vm.prank(requester);
            market.cancel(id);
        } else {
            for (uint256 i = releases; i < replicas; ++i) commitAs(ps[i], id, GOOD);
            assertState(id, IJobMarket.JobState.Revealing);
            for (uint256 i = releases; i < replicas; ++i) revealAs(ps[i], id, GOOD);
            market.finalize(id);
            assertState(id, IJobMarket.JobState.Settled);
            for (uint256 i = releases; i < replicas; ++i) assertEq(market.credits(ps[i]), fee, "paid units x price");
        }
        assertEq(token.totalSupply(), supply, "a release burns nothing");
        for (uint256 i; i < replicas; ++i) {
            assertEq(providerRec(ps[i]).locked, 0);
            if (market.credits(ps[i]) != 0) {
                vm.prank(ps[i]);
                market.withdraw();
            }
        }
        vm.prank(requester);
        market.withdraw();
        assertEq(
            heldByContracts(),
            registry.totalStaked() + market.auditPool() + market.protocolFees(),
            "held = stake + pool + fees"
        );
    }
}
