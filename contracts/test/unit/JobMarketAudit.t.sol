// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {Vm} from "../utils/Test.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice drawAudit, drawAudits, auditSelected, challenge, assignVerifiers and how audits end.
contract JobMarketAuditTest is UnitBase {
    address internal exec;
    address[] internal vs;

    function setUp() public override {
        super.setUp();
        exec = newProvider("exec", PRICE);
        vs.push(newProvider("v0", PRICE));
        vs.push(newProvider("v1", PRICE / 2));
        vs.push(newProvider("v2", PRICE));
    }

    function verifiers() internal view returns (address[] memory) {
        return vs;
    }

    function assignVerifiersAs(uint256 id) internal {
        address[] memory l = vs;
        vm.prank(matcher);
        market.assignVerifiers(id, l);
    }

    function challengedJob() internal returns (uint256 id) {
        setAuditBps(0);
        id = committedJob(exec);
        vm.prank(requester);
        market.challenge(id);
    }

    // ---------------------------------------------------------------- drawAudit

    function test_drawAudit_revertsInCommitBlock() public {
        setAuditBps(10_000);
        uint256 id = committedJob(exec);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.drawAudit(id);
        // Also when only time moved: the draw needs a new block, not a new timestamp.
        vm.warp(block.timestamp + 1 hours);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.drawAudit(id);
    }

    function test_drawAudit_notSelected() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 deadline = deadlineOf(id);
        nextBlock();
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id, false);
        vm.prank(keeper);
        assertFalse(market.drawAudit(id));
        assertState(id, IJobMarket.JobState.Committed);
        assertEq(uint256(market.job(id).flags), 4, "clear draw recorded (bit 2)");
        assertEq(uint256(market.participants(id)[0].commitBlock), block.number - 1, "commit block kept");
        assertEq(deadlineOf(id), deadline, "challenge window unchanged");
        assertFalse(market.auditSelected(id));
    }

    function test_drawAudit_twiceReturnsFalseSilently() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        nextBlock();
        assertFalse(market.drawAudit(id));
        // Even with the rate now at 100% and the hash gone, a drawn job is not drawn again.
        setAuditBps(10_000);
        vm.roll(block.number + 300);
        vm.recordLogs();
        assertFalse(market.drawAudit(id));
        assertEq(vm.getRecordedLogs().length, 0, "no event the second time");
        assertState(id, IJobMarket.JobState.Committed);
    }

    function test_drawAudit_selected() public {
        setAuditBps(10_000);
        uint256 id = committedJob(exec);
        nextBlock();
        assertTrue(market.auditSelected(id));
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id, true);
        assertTrue(market.drawAudit(id));
        assertState(id, IJobMarket.JobState.Auditing);
        assertEq(deadlineOf(id), block.timestamp + 10 minutes, "verifier assign window");
        assertEq(uint256(market.job(id).participants), 1);
        assertEq(uint256(market.job(id).flags), 0, "not a challenge");
    }

    function test_drawAudit_selectedTwiceReverts() public {
        uint256 id = auditingJob(exec, GOOD);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Auditing, S_COMMITTED));
        market.drawAudit(id);
    }

    function test_drawAudit_revertsWrongState() public {
        uint256 id = assignedJob(exec);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_COMMITTED));
        market.drawAudit(id);
        vm.expectRevert(unexpected(99, IJobMarket.JobState.None, S_COMMITTED));
        market.drawAudit(99);
    }

    function test_drawAudit_staleBlockhashForcesAudit() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 commitBlock = block.number;
        vm.roll(commitBlock + 257); // blockhash(commitBlock) is gone
        assertEq(blockhash(commitBlock), bytes32(0));
        assertTrue(market.auditSelected(id));
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id, true);
        assertTrue(market.drawAudit(id), "a late draw never helps a cheater");
        assertState(id, IJobMarket.JobState.Auditing);
    }

    function test_drawAudit_lastBlockWithHashNotForced() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 commitBlock = block.number;
        vm.roll(commitBlock + 256);
        assertNotEq(blockhash(commitBlock), bytes32(0));
        assertFalse(market.drawAudit(id));
    }

    function testFuzz_drawAudit_matchesBlockhashDraw(uint16 auditBps, uint8 blocksLater) public {
        auditBps = uint16(bound(auditBps, 0, 10_000));
        setAuditBps(auditBps);
        uint256 id = committedJob(exec);
        uint256 commitBlock = block.number;
        vm.roll(commitBlock + bound(blocksLater, 1, 255));
        bool expected = expectedSelected(id, commitBlock, auditBps);
        assertEq(market.auditSelected(id), expected, "view");
        assertEq(market.drawAudit(id), expected, "draw");
        assertState(id, expected ? IJobMarket.JobState.Auditing : IJobMarket.JobState.Committed);
    }

    // ---------------------------------------------------------------- auditSelected

    function test_auditSelected_revertsInCommitBlock() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.auditSelected(id);
        nextBlock();
        assertFalse(market.auditSelected(id));
    }

    function test_auditSelected_revertsWrongState() public {
        uint256 id = createJob(1);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Open, S_COMMITTED));
        market.auditSelected(id);
    }

    // ---------------------------------------------------------------- drawAudits

    function test_drawAudits() public {
        setAuditBps(0);
        uint256 id1 = committedJob(exec);
        uint256 id2 = committedJob(vs[0]);
        nextBlock();
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id1, false);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id2, false);
        market.drawAudits(ids2(id1, id2));
        assertEq(uint256(market.job(id1).flags), 4);
        assertEq(uint256(market.job(id2).flags), 4);
    }

    function test_drawAudits_selects() public {
        setAuditBps(10_000);
        uint256 id1 = committedJob(exec);
        uint256 id2 = committedJob(vs[0]);
        nextBlock();
        market.drawAudits(ids2(id1, id2));
        assertState(id1, IJobMarket.JobState.Auditing);
        assertState(id2, IJobMarket.JobState.Auditing);
    }

    function test_drawAudits_revertsEmpty() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.drawAudits(new uint256[](0));
    }

    function test_drawAudits_oneBadJobRevertsAll() public {
        setAuditBps(0);
        uint256 id1 = committedJob(exec);
        uint256 id2 = assignedJob(vs[0]);
        nextBlock();
        vm.expectRevert(unexpected(id2, IJobMarket.JobState.Assigned, S_COMMITTED));
        market.drawAudits(ids2(id1, id2));
        assertEq(uint256(market.job(id1).flags), 0, "first draw rolled back");
    }

    function test_drawAudits_revertsInCommitBlock() public {
        setAuditBps(0);
        uint256 id1 = committedJob(exec);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id1, block.number));
        market.drawAudits(ids1(id1));
    }

    // ---------------------------------------------------------------- challenge

    function test_challenge() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 before = token.balanceOf(requester);
        vm.expectEmit(address(market));
        emit IJobMarket.JobChallenged(id, requester, BOND);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(requester, address(market), BOND);
        vm.prank(requester);
        market.challenge(id);
        assertState(id, IJobMarket.JobState.Auditing);
        assertEq(deadlineOf(id), block.timestamp + 10 minutes);
        assertEq(market.challengeBond(id), BOND);
        assertEq(market.totalBonds(), BOND);
        assertEq(before - token.balanceOf(requester), BOND);
        assertEq(uint256(market.job(id).flags) & 2, 2, "challenged flag");
    }

    function test_challenge_atDeadline() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.warp(deadlineOf(id));
        vm.prank(requester);
        market.challenge(id);
        assertState(id, IJobMarket.JobState.Auditing);
    }

    function test_challenge_afterUnselectedDraw() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        nextBlock();
        market.drawAudit(id);
        vm.prank(requester);
        market.challenge(id);
        assertState(id, IJobMarket.JobState.Auditing);
    }

    function test_challenge_revertsAfterWindow() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 deadline = deadlineOf(id);
        vm.warp(deadline + 1);
        vm.prank(requester);
        vm.expectRevert(passed(id, deadline));
        market.challenge(id);
    }

    function test_challenge_revertsForNonRequester() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotRequester.selector, id, keeper));
        market.challenge(id);
    }

    function test_challenge_revertsWhenAssigned() public {
        uint256 id = assignedJob(exec);
        vm.prank(requester);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_COMMITTED));
        market.challenge(id);
    }

    function test_challenge_revertsWhenAlreadyAudited() public {
        uint256 id = auditingJob(exec, GOOD);
        vm.prank(requester);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Auditing, S_COMMITTED));
        market.challenge(id);
    }

    function test_challenge_revertsReplicatedJob() public {
        uint256 id = createJob(2);
        assignJob(id, two(exec, vs[0]));
        commitAs(exec, id, GOOD);
        commitAs(vs[0], id, GOOD);
        vm.prank(requester);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Revealing, S_COMMITTED));
        market.challenge(id);
    }

    function test_challenge_revertsWithoutBondAllowance() public {
        setAuditBps(0);
        address frugal = makeAddr("frugal");
        vm.prank(owner);
        token.mint(frugal, 1_000e18);
        IJobMarket.JobRequest memory r = request(1);
        vm.startPrank(frugal);
        token.approve(address(market), PAY + FEE); // the escrow, not the bond
        uint256 id = market.createJob(r);
        vm.stopPrank();
        assignJob(id, one(exec));
        commitAs(exec, id, GOOD);
        vm.prank(frugal);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, BOND)
        );
        market.challenge(id);
        assertState(id, IJobMarket.JobState.Committed);
    }

    function testFuzz_challenge_timing(uint256 dt) public {
        dt = bound(dt, 0, 1 hours);
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 deadline = deadlineOf(id);
        vm.warp(block.timestamp + dt);
        vm.prank(requester);
        if (block.timestamp > deadline) {
            vm.expectRevert(passed(id, deadline));
            market.challenge(id);
            return;
        }
        market.challenge(id);
        assertEq(market.totalBonds(), BOND);
    }

    // ---------------------------------------------------------------- assignVerifiers

    function test_assignVerifiers() public {
        uint256 id = auditingJob(exec, GOOD);
        uint32 deadline = uint32(block.timestamp + 1 hours);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, vs[0], 1, PRICE, deadline);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, vs[1], 2, PRICE / 2, deadline);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, vs[2], 3, PRICE, deadline);
        assignVerifiersAs(id);
        assertState(id, IJobMarket.JobState.Auditing);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.participants), 4);
        assertEq(uint256(j.deadline), deadline, "execution window for the verifiers");
        assertEq(uint256(j.clearingPrice), PRICE, "executor's price kept");
        IJobMarket.Participant[] memory ps = market.participants(id);
        assertEq(ps.length, 4);
        assertEq(ps[0].provider, exec);
        for (uint256 i; i < 3; ++i) {
            assertEq(ps[1 + i].provider, vs[i]);
            assertEq(registry.provider(vs[i]).locked, COLLATERAL);
        }
    }

    function test_assignVerifiers_revertsForNonMatcher() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory l = verifiers();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotMatcher.selector, requester));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsWhenNotAuditing() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        address[] memory l = verifiers();
        vm.prank(matcher);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_AUDITING));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsTwice() public {
        uint256 id = auditingJob(exec, GOOD);
        assignVerifiersAs(id);
        address[] memory others = newProviders(3, PRICE);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketVerifiersAssigned.selector, id));
        market.assignVerifiers(id, others);
    }

    function test_assignVerifiers_revertsAfterAssignWindow() public {
        uint256 id = auditingJob(exec, GOOD);
        uint256 deadline = deadlineOf(id);
        vm.warp(deadline + 1);
        address[] memory l = verifiers();
        vm.prank(matcher);
        vm.expectRevert(passed(id, deadline));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsWrongCount() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory l = two(vs[0], vs[1]);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id, 2, 3));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsExecutorAsVerifier() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory l = three(vs[0], exec, vs[2]);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketDuplicateProvider.selector, id, exec));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsDuplicateVerifier() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory l = three(vs[0], vs[1], vs[0]);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketDuplicateProvider.selector, id, vs[0]));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsExcludedNoShow() public {
        setAuditBps(10_000);
        address lazy = newProvider("lazy", PRICE);
        uint256 id = assignedJob(lazy);
        skipTime(1 hours + 1);
        market.expire(id); // lazy slashed and excluded; job reopened
        assignJob(id, one(exec));
        commitAs(exec, id, GOOD);
        nextBlock();
        assertTrue(market.drawAudit(id));
        address[] memory l = three(vs[0], lazy, vs[2]);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketProviderExcluded.selector, id, lazy));
        market.assignVerifiers(id, l);
    }

    function test_assignVerifiers_revertsVerifierPriceTooHigh() public {
        uint256 id = auditingJob(exec, GOOD);
        address pricey = newProvider("pricey", PRICE + 1);
        address[] memory l = three(vs[0], vs[1], pricey);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, pricey, PRICE + 1, PRICE)
        );
        market.assignVerifiers(id, l);
        assertEq(registry.provider(vs[0]).locked, 0, "earlier locks rolled back");
    }

    function testFuzz_assignVerifiers_count(uint8 k, uint8 given) public {
        k = uint8(bound(k, 1, 7));
        given = uint8(bound(given, 0, 8));
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = 10_000;
        p.verifiers = k;
        applyParams(p);
        uint256 id = assignedJob(exec);
        commitAs(exec, id, GOOD);
        nextBlock();
        market.drawAudit(id);
        address[] memory l = newProviders(given, PRICE);
        vm.prank(matcher);
        if (given != k) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id, given, k));
            market.assignVerifiers(id, l);
            return;
        }
        market.assignVerifiers(id, l);
        assertEq(uint256(market.job(id).participants), 1 + uint256(k));
    }

    // ---------------------------------------------------------------- verifiers commit

    function test_verifiersCommitThenReveal() public {
        uint256 id = auditingJob(exec, GOOD);
        assignVerifiersAs(id);
        commitAs(vs[0], id, GOOD);
        commitAs(vs[1], id, GOOD);
        assertEq(uint256(market.job(id).commitMask), 1 | 2 | 4);
        assertState(id, IJobMarket.JobState.Auditing);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, uint32(block.timestamp + 10 minutes));
        commitAs(vs[2], id, GOOD);
        assertState(id, IJobMarket.JobState.Revealing);
        // The executor reveals the commitment it made before the audit.
        revealAs(exec, id, GOOD);
        assertEq(market.revealedDigest(id, 0), GOOD);
    }

    function test_verifierCommit_revertsTwice() public {
        uint256 id = auditingJob(exec, GOOD);
        assignVerifiersAs(id);
        commitAs(vs[0], id, GOOD);
        vm.prank(vs[0]);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAlreadyCommitted.selector, id, vs[0]));
        market.commit(id, bytes32(0), bytes32(0));
    }

    // ---------------------------------------------------------------- how audits end

    function revealAll(uint256 id, bytes32 execDigest, bytes32 verifierDigest) internal {
        assignVerifiersAs(id);
        for (uint256 i; i < 3; ++i) commitAs(vs[i], id, verifierDigest);
        revealAs(exec, id, execDigest);
        for (uint256 i; i < 3; ++i) revealAs(vs[i], id, verifierDigest);
    }

    function test_randomAudit_honest_verifiersPaidFromPool() public {
        uint256 pool = fundPoolBySlash();
        assertEq(pool, COLLATERAL * 3000 / BPS);
        uint256 id = auditingJob(exec, GOOD);
        revealAll(id, GOOD, GOOD);
        uint256 share = pool / 3; // wanted 3 x PAY is more than the pool: the pool is shared
        uint256 paid = PAY + 3 * share;
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, paid, 0, FEE, 0);
        market.finalize(id);
        assertEq(market.credits(exec), PAY);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), share);
            assertEq(registry.provider(vs[i]).locked, 0);
            assertEq(uint256(registry.provider(vs[i]).jobsDone), 1);
        }
        assertEq(market.auditPool(), pool - 3 * share + FEE / 2);
        assertEq(uint256(registry.provider(exec).jobsDone), 1);
    }

    function test_randomAudit_verifierPayCappedAtUnitsTimesMaxPrice() public {
        IJobMarket.Params memory p = defaultParams();
        p.verifiers = 1;
        applyParams(p);
        uint256 pool = fundPoolBySlash() + fundPoolBySlash(); // 1.2 x PAY
        p.auditBps = 10_000;
        applyParams(p);
        uint256 id = assignedJob(exec);
        commitAs(exec, id, GOOD);
        nextBlock();
        market.drawAudit(id);
        address[] memory l = one(vs[1]);
        vm.prank(matcher);
        market.assignVerifiers(id, l);
        commitAs(vs[1], id, GOOD);
        revealAs(exec, id, GOOD);
        revealAs(vs[1], id, GOOD);
        market.finalize(id);
        assertEq(market.credits(vs[1]), PAY, "units x max price, not the verifier's lower ask");
        assertEq(market.auditPool(), pool - PAY + FEE / 2);
    }

    function test_randomAudit_emptyPoolVerifiersUnpaid() public {
        uint256 id = auditingJob(exec, GOOD);
        revealAll(id, GOOD, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), 0);
        assertEq(market.credits(exec), PAY);
    }

    function test_randomAudit_cheaterCaught() public {
        uint256 id = auditingJob(exec, BAD);
        revealAll(id, BAD, GOOD);
        uint256 comp = COLLATERAL * 5000 / BPS;
        uint256 reward = COLLATERAL * 3000 / BPS;
        uint256 burned = COLLATERAL - comp - reward;
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(id, exec, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, exec, COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id, IJobMarket.JobState.Refunded, GOOD, 3 * (reward / 3), comp + PAY + FEE, reward - 3 * (reward / 3), burned
        );
        market.finalize(id);
        assertEq(market.credits(requester), PAY + FEE + comp);
        assertEq(market.credits(exec), 0);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), reward / 3);
        assertEq(supply - token.totalSupply(), burned);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(uint256(registry.provider(exec).jobsSlashed), 1);
    }

    function test_challengeWon_bondReturned() public {
        setAuditBps(0);
        uint256 id = assignedJob(exec);
        commitAs(exec, id, BAD);
        vm.prank(requester);
        market.challenge(id);
        revealAll(id, BAD, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        assertEq(market.credits(requester), PAY + FEE + COLLATERAL / 2 + BOND, "escrow, compensation and bond");
        assertEq(market.totalBonds(), 0);
        assertEq(market.challengeBond(id), 0);
    }

    function test_challengeLost_bondPaysVerifiers() public {
        uint256 id = challengedJob();
        revealAll(id, GOOD, GOOD);
        uint256 share = BOND / 3;
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, PAY + 3 * share, 0, FEE + (BOND - 3 * share), 0);
        market.finalize(id);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), share);
        assertEq(market.credits(requester), 0);
        assertEq(market.totalBonds(), 0);
        assertEq(market.auditPool(), BOND - 3 * share + FEE / 2, "dust and fee share to the pool");
    }

    function test_audit_noMajorityRefundsWithoutSlashing() public {
        uint256 id = challengedJob();
        assignVerifiersAs(id);
        commitAs(vs[0], id, BAD);
        commitAs(vs[1], id, OTHER);
        commitAs(vs[2], id, keccak256("yet another"));
        revealAs(exec, id, GOOD);
        revealAs(vs[0], id, BAD);
        revealAs(vs[1], id, OTHER);
        revealAs(vs[2], id, keccak256("yet another"));
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Refunded, bytes32(0), 0, PAY + FEE + BOND, 0, 0);
        market.finalize(id);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE);
        assertEq(registry.provider(exec).locked, 0);
        assertEq(uint256(registry.provider(exec).jobsDone), 0, "no completed job without a majority");
        for (uint256 i; i < 3; ++i) assertEq(registry.provider(vs[i]).locked, 0);
        assertEq(market.credits(requester), PAY + FEE + BOND);
    }

    function test_auditTimeout_noVerifiersSettlesUnverified() public {
        uint256 id = challengedJob();
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.expire(id);
        skipTime(10 minutes + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, bytes32(0), PAY, BOND, FEE, 0);
        market.expire(id);
        assertEq(market.credits(exec), PAY);
        assertEq(market.credits(requester), BOND, "bond back: nobody verified");
        assertEq(market.totalBonds(), 0);
    }

    function test_finalize_revertsAuditBeforeDeadline() public {
        uint256 id = challengedJob();
        assignVerifiersAs(id);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
        vm.warp(deadline);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
    }

    function test_auditTimeout_noVerifierCommitsSlashesVerifiers() public {
        uint256 id = challengedJob();
        assignVerifiersAs(id);
        skipTime(1 hours + 1);
        uint256 poolBefore = market.auditPool();
        uint256 comp = COLLATERAL * 5000 / BPS;
        uint256 reward = COLLATERAL * 3000 / BPS;
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id,
            IJobMarket.JobState.Settled,
            bytes32(0),
            PAY,
            3 * comp + BOND,
            FEE + 3 * reward,
            3 * (COLLATERAL - comp - reward)
        );
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        for (uint256 i; i < 3; ++i) {
            assertEq(registry.provider(vs[i]).stake, PROVIDER_STAKE - COLLATERAL);
            assertEq(registry.provider(vs[i]).locked, 0);
        }
        assertEq(market.credits(exec), PAY);
        assertEq(market.credits(requester), 3 * (COLLATERAL / 2) + BOND);
        assertEq(market.auditPool() - poolBefore, 3 * (COLLATERAL * 3000 / BPS) + FEE / 2);
    }

    function test_auditTimeout_partialCommitsGoToReveal() public {
        uint256 id = challengedJob();
        assignVerifiersAs(id);
        commitAs(vs[0], id, GOOD);
        commitAs(vs[2], id, GOOD);
        skipTime(1 hours + 1);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderSlashed(id, vs[1], COLLATERAL);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, uint32(block.timestamp + 10 minutes));
        market.expire(id);
        assertState(id, IJobMarket.JobState.Revealing);
        revealAs(exec, id, GOOD);
        revealAs(vs[0], id, GOOD);
        revealAs(vs[2], id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(vs[0]), BOND / 2);
        assertEq(market.credits(vs[2]), BOND / 2);
        assertEq(market.credits(vs[1]), 0);
    }
}
