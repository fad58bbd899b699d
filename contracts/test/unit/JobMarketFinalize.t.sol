// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice finalize and finalizeBatch: settlement, majority resolution, fees and slash arithmetic.
contract JobMarketFinalizeTest is UnitBase {
    address internal a;
    address internal b;
    address internal c;

    function setUp() public override {
        super.setUp();
        a = newProvider("a", PRICE);
        b = newProvider("b", PRICE);
        c = newProvider("c", PRICE);
    }

    function trioJob() internal returns (uint256 id) {
        id = createJob(3);
        assignJob(id, three(a, b, c));
    }

    // ---------------------------------------------------------------- replicas = 1

    function test_finalize_settlesAfterChallengeWindow() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, a, PAY);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, bytes32(0), PAY, 0, FEE + PREMIUM, 0);
        vm.prank(keeper);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(a), PAY);
        assertEq(market.credits(requester), 0);
        assertEq(market.auditPool(), FEE * 5000 / BPS + PREMIUM, "fee share and the audit premium");
        assertEq(market.protocolFees(), FEE - FEE * 5000 / BPS);
        IProviderRegistry.Provider memory rec = registry.provider(a);
        assertEq(rec.locked, 0);
        assertEq(uint256(rec.jobsDone), 1);
        assertEq(rec.stake, PROVIDER_STAKE);
    }

    function test_finalize_revertsInsideChallengeWindow() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
        vm.warp(deadline);
        vm.roll(block.number + 50);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
    }

    function testFuzz_finalize_timing(uint256 dt) public {
        dt = bound(dt, 1, 40 minutes); // skipTime rolls dt / 12 + 1 blocks: stay within 256 of the commit
        setAuditBps(0);
        uint256 id = committedJob(a);
        uint256 deadline = deadlineOf(id);
        skipTime(dt);
        if (block.timestamp <= deadline) {
            vm.expectRevert(notReached(id, deadline));
            market.finalize(id);
            assertState(id, IJobMarket.JobState.Committed);
            return;
        }
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(a), PAY);
    }

    function test_finalize_drawsAuditWhenNobodyDid() public {
        setAuditBps(10_000);
        uint256 id = committedJob(a);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id, true);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
        assertEq(deadlineOf(id), block.timestamp + 10 minutes);
        assertEq(market.credits(a), 0, "nothing paid yet");
        assertEq(registry.provider(a).locked, COLLATERAL);
    }

    /// @notice v2 (replaces "stale blockhash forces an audit"): finalize re-seeds an aged draw and
    /// decides it in a later block from a hash nobody knew.
    function test_finalize_agedHashReseedsThenDecides() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        uint256 commitBlock = block.number;
        skipTime(10 minutes + 1);
        vm.roll(commitBlock + 257);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditReseeded(id, uint32(block.number));
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Committed);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.finalize(id);
        steerDraw(id, false);
        nextBlock();
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
    }

    function test_finalize_agedHashReseedThenSelected() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        skipTime(10 minutes + 1);
        vm.roll(block.number + 300);
        market.finalize(id);
        steerDraw(id, true);
        nextBlock();
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
    }

    function test_finalize_afterUnselectedDrawSettlesWithoutRedraw() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        nextBlock();
        assertFalse(market.drawAudit(id));
        setAuditBps(10_000);
        skipTime(10 minutes + 1);
        vm.roll(block.number + 300);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
    }

    function test_finalize_revertsAuditNotDrawableWithoutNewBlock() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        uint256 commitBlock = block.number;
        vm.warp(block.timestamp + 1 hours); // time moved, the block did not
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, commitBlock));
        market.finalize(id);
    }

    function test_finalize_cheaperProviderRefundsDifference() public {
        setAuditBps(0);
        address cheap = newProvider("cheap", PRICE / 4);
        uint256 id = committedJob(cheap);
        skipTime(10 minutes + 1);
        market.finalize(id);
        uint256 paid = PAY / 4;
        uint256 fee = paid * 250 / BPS;
        uint256 premium = paid * 3000 / BPS;
        assertEq(market.credits(cheap), paid);
        assertEq(market.credits(requester), ESCROW1 - paid - fee - premium, "premium on what was paid");
    }

    // ---------------------------------------------------------------- state guard

    function test_finalize_revertsUnknownJob() public {
        vm.expectRevert(unexpected(3, IJobMarket.JobState.None, S_FINALIZABLE));
        market.finalize(3);
    }

    function test_finalize_revertsOpen() public {
        uint256 id = createJob(1);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Open, S_FINALIZABLE));
        market.finalize(id);
    }

    function test_finalize_revertsAssigned() public {
        uint256 id = assignedJob(a);
        skipTime(2 hours);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_FINALIZABLE));
        market.finalize(id);
    }

    function test_finalize_revertsExpired() public {
        uint256 id = createJob(1);
        vm.prank(requester);
        market.cancel(id);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Expired, S_FINALIZABLE));
        market.finalize(id);
    }

    function test_finalize_twiceCreditsNothingMore() public {
        setAuditBps(0);
        uint256 id = committedJob(a);
        skipTime(10 minutes + 1);
        market.finalize(id);
        uint256 credA = market.credits(a);
        uint256 credR = market.credits(requester);
        uint256 pool = market.auditPool();
        uint256 fees = market.protocolFees();
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Settled, S_FINALIZABLE));
        market.finalize(id);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Settled, S_EXPIRABLE));
        market.expire(id);
        assertEq(market.credits(a), credA);
        assertEq(market.credits(requester), credR);
        assertEq(market.auditPool(), pool);
        assertEq(market.protocolFees(), fees);
    }

    function test_finalize_refundedJobTwiceReverts() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id); // nobody revealed
        assertState(id, IJobMarket.JobState.Refunded);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Refunded, S_FINALIZABLE));
        market.finalize(id);
        assertEq(market.credits(requester), 3 * (PAY + FEE));
    }

    // ---------------------------------------------------------------- replicas > 1

    function test_finalize_replicasHonest() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        revealAs(a, id, GOOD);
        revealAs(b, id, GOOD);
        revealAs(c, id, GOOD);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, a, PAY);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, b, PAY);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, c, PAY);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, 3 * PAY, 0, 3 * FEE, 0);
        market.finalize(id); // every reveal in: no need to wait
        for (uint256 i; i < 3; ++i) {
            address p = i == 0 ? a : i == 1 ? b : c;
            assertEq(market.credits(p), PAY);
            assertEq(uint256(registry.provider(p).jobsDone), 1);
            assertEq(registry.provider(p).locked, 0);
        }
    }

    function test_finalize_revealingBeforeDeadlineNeedsAllReveals() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        revealAs(a, id, GOOD);
        revealAs(b, id, GOOD);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
        vm.warp(deadline);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
    }

    function test_finalize_nonRevealerSlashedAfterDeadline() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        revealAs(a, id, GOOD);
        revealAs(b, id, GOOD);
        skipTime(10 minutes + 1);
        uint256 reward = COLLATERAL * 3000 / BPS;
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, c, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id,
            IJobMarket.JobState.Settled,
            GOOD,
            2 * PAY + 2 * (reward / 2),
            PAY + FEE,
            2 * FEE + (reward - 2 * (reward / 2)),
            COLLATERAL - reward
        );
        market.finalize(id);
        assertEq(market.credits(a), PAY + reward / 2);
        assertEq(market.credits(c), 0);
        assertEq(registry.provider(c).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(market.credits(requester), PAY + FEE, "unpaid replica's escrow back; a non-revealer compensates nobody");
    }

    /// @notice v2 (replaces the 2-replica split vote): replicas are odd, and any disagreement
    /// goes to drawn verifiers; with no verifier majority in either round: refund, nobody slashed.
    function test_finalize_splitVoteGoesToVerifiersThenRefundsWithoutSlashing() public {
        stakeVerifiers(12);
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, BAD);
        commitAs(c, id, OTHER);
        revealAs(a, id, GOOD);
        revealAs(b, id, BAD);
        revealAs(c, id, OTHER);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
        address[] memory r1 = staffRound(id);
        commitAs(r1[0], id, GOOD);
        commitAs(r1[1], id, BAD);
        commitAs(r1[2], id, OTHER);
        revealAs(r1[0], id, GOOD);
        revealAs(r1[1], id, BAD);
        revealAs(r1[2], id, OTHER);
        market.finalize(id);
        assertEq(uint256(market.job(id).round), 2, "escalated");
        address[] memory r2 = staffRound(id);
        bytes32[7] memory d = [GOOD, GOOD, GOOD, BAD, BAD, OTHER, OTHER];
        for (uint256 i; i < 7; ++i) commitAs(r2[i], id, d[i]);
        for (uint256 i; i < 7; ++i) revealAs(r2[i], id, d[i]);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Refunded, bytes32(0), 0, 3 * (PAY + FEE), 0, 0);
        market.finalize(id);
        assertEq(registry.provider(a).stake, PROVIDER_STAKE);
        assertEq(registry.provider(b).stake, PROVIDER_STAKE);
        assertEq(registry.provider(a).locked + registry.provider(b).locked + registry.provider(c).locked, 0);
        assertEq(uint256(registry.provider(a).jobsDone), 0);
    }

    function test_finalize_nobodyRevealsAllSlashed() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
        skipTime(10 minutes + 1);
        uint256 poolBefore = market.auditPool();
        uint256 supply = token.totalSupply();
        uint256 reward = COLLATERAL * 3000 / BPS;
        uint256 burned = COLLATERAL - reward; // non-revealers compensate nobody
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Refunded, bytes32(0), 0, 3 * (PAY + FEE), 3 * reward, 3 * burned);
        market.finalize(id);
        assertEq(market.auditPool() - poolBefore, 3 * reward, "rewards with nobody to reward fund audits");
        assertEq(supply - token.totalSupply(), 3 * burned);
        assertEq(market.credits(requester), 3 * (PAY + FEE));
    }

    /// @notice v2: a minority digest among replicas is judged by drawn verifiers, then slashed.
    function test_finalize_minorityDigestSlashed() public {
        stakeVerifiers(4);
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, BAD);
        commitAs(c, id, GOOD);
        revealAs(a, id, GOOD);
        revealAs(b, id, BAD);
        revealAs(c, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAll(vs, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(uint256(registry.provider(b).jobsSlashed), 1);
        assertEq(uint256(registry.provider(a).jobsDone), 1);
        assertEq(market.revealedDigest(id, 1), BAD);
    }

    // ---------------------------------------------------------------- fuzz: money

    function testFuzz_finalize_clearingPriceAndRefund(uint8 replicas, uint80 maxPrice, uint256 seed) public {
        replicas = oddReplicas(replicas);
        maxPrice = uint80(bound(maxPrice, 1, 1e18));
        setAuditBps(0);
        address[] memory ps = new address[](replicas);
        uint80 clearing;
        for (uint256 i; i < replicas; ++i) {
            uint80 ask = uint80(bound(uint256(keccak256(abi.encode(seed, i))), 1, maxPrice));
            if (ask > clearing) clearing = ask;
            ps[i] = newProvider(string.concat("f", vm.toString(i)), ask);
        }
        uint256 id = createReq(req(UNITS, maxPrice, replicas));
        uint256 escrow = escrowAt(replicas, UNITS, maxPrice);
        assignJob(id, ps);
        for (uint256 i; i < replicas; ++i) commitAs(ps[i], id, GOOD);
        if (replicas == 1) skipTime(10 minutes + 1);
        else for (uint256 i; i < replicas; ++i) revealAs(ps[i], id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        uint256 each = uint256(UNITS) * clearing;
        uint256 paid = each * replicas;
        uint256 fee = paid * 250 / BPS;
        if (fee < 1e14) fee = 1e14; // the fee floor
        uint256 premium = replicas == 1 ? paid * 3000 / BPS : 0;
        for (uint256 i; i < replicas; ++i) assertEq(market.credits(ps[i]), each, "every replica at the clearing price");
        assertEq(market.credits(requester), escrow - paid - fee - premium, "refund = escrow - paid - fee - premium");
        assertEq(market.auditPool() + market.protocolFees(), fee + premium);
        assertEq(token.balanceOf(address(market)), escrow, "all of it is still held, as credits and fees");
    }

    function testFuzz_finalize_feeBps(uint16 feeBps, uint16 auditShareBps, uint80 ask) public {
        feeBps = uint16(bound(feeBps, 0, 1000));
        auditShareBps = uint16(bound(auditShareBps, 0, 10_000));
        ask = uint80(bound(ask, 1, PRICE));
        setAuditBps(0);
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = feeBps;
        p.auditShareBps = auditShareBps;
        applyParams(p);
        address seller = newProvider("seller", ask);
        uint256 maxFee = PAY * feeBps / BPS;
        if (maxFee < 1e14) maxFee = 1e14;
        uint256 escrow = PAY + maxFee + PREMIUM;
        assertEq(escrowOf(1), escrow);
        uint256 before = token.balanceOf(requester);
        uint256 id = committedJob(seller);
        assertEq(before - token.balanceOf(requester), escrow);
        skipTime(10 minutes + 1);
        market.finalize(id);
        uint256 paid = uint256(UNITS) * ask;
        uint256 fee = paid * feeBps / BPS;
        if (fee < 1e14) fee = 1e14; // the floor: every settled job pays at least minFee
        uint256 premium = paid * 3000 / BPS;
        uint256 auditShare = fee * auditShareBps / BPS;
        assertEq(market.credits(seller), paid);
        assertEq(market.auditPool(), auditShare + premium);
        assertEq(market.protocolFees(), fee - auditShare);
        assertEq(market.credits(requester), escrow - paid - fee - premium);
    }

    function testFuzz_finalize_slashSplit(uint16 requesterShareBps, uint16 rewardShareBps, uint8 multiple) public {
        requesterShareBps = uint16(bound(requesterShareBps, 0, 10_000));
        rewardShareBps = uint16(bound(rewardShareBps, 0, 10_000 - requesterShareBps));
        multiple = uint8(bound(multiple, 1, 20));
        stakeVerifiers(4);
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = 5000; // keeps auditBps x (1 + multiple) >= 10000 for every multiple
        p.requesterShareBps = requesterShareBps;
        p.rewardShareBps = rewardShareBps;
        p.collateralMultiple = multiple;
        applyParams(p);
        uint256 id = trioJob();
        uint256 collateral = uint256(multiple) * PAY;
        assertEq(collateralOf(id), collateral);
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, BAD);
        revealAs(a, id, GOOD);
        revealAs(b, id, GOOD);
        revealAs(c, id, BAD);
        market.finalize(id); // disagreement: drawn verifiers decide
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 supply = token.totalSupply();
        uint256 poolBefore = market.auditPool();
        market.finalize(id);
        uint256 comp = collateral * requesterShareBps / BPS;
        uint256 reward = collateral * rewardShareBps / BPS;
        uint256 burned = supply - token.totalSupply();
        assertEq(comp + reward + burned, collateral, "compensation + reward + burn == collateral");
        assertEq(burned, collateral - comp - reward);
        assertEq(market.credits(requester), comp + (PAY + FEE), "compensation and the unpaid replica's escrow");
        assertEq(market.credits(a), PAY + reward / 5, "reward shared by the 2 upheld replicas and 3 verifiers");
        assertEq(market.credits(b), PAY + reward / 5);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), reward / 5);
        assertEq(market.auditPool() - poolBefore, (reward - 5 * (reward / 5)) + 2 * FEE * 5000 / BPS);
        assertEq(registry.provider(c).stake, PROVIDER_STAKE - collateral);
    }

    // ---------------------------------------------------------------- finalizeBatch

    function test_finalizeBatch() public {
        setAuditBps(0);
        uint256 id1 = committedJob(a);
        uint256 id2 = committedJob(b);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id1, IJobMarket.JobState.Settled, bytes32(0), PAY, 0, FEE + PREMIUM, 0);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id2, IJobMarket.JobState.Settled, bytes32(0), PAY, 0, FEE + PREMIUM, 0);
        market.finalizeBatch(ids2(id1, id2));
        assertEq(market.credits(a), PAY);
        assertEq(market.credits(b), PAY);
    }

    function test_finalizeBatch_revertsEmpty() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.finalizeBatch(new uint256[](0));
    }

    /// @notice v2 (replaces "one not ready reverts all"): the item not ready is skipped.
    function test_finalizeBatch_skipsItemNotReady() public {
        setAuditBps(0);
        uint256 id1 = committedJob(a);
        skipTime(10 minutes + 1);
        uint256 id2 = committedJob(b);
        uint256 d2 = deadlineOf(id2);
        nextBlock();
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(id2, market.finalize.selector, notReached(id2, d2));
        market.finalizeBatch(ids2(id1, id2));
        assertState(id1, IJobMarket.JobState.Settled);
        assertState(id2, IJobMarket.JobState.Committed);
        assertEq(market.credits(a), PAY);
    }

    function test_finalizeBatch_sameJobTwiceSkipsSecond() public {
        setAuditBps(0);
        uint256 id1 = committedJob(a);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id1, market.finalize.selector, unexpected(id1, IJobMarket.JobState.Settled, S_FINALIZABLE)
        );
        market.finalizeBatch(ids2(id1, id1));
        assertEq(market.credits(a), PAY, "paid once");
    }
}
