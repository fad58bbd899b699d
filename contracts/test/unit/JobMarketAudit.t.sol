// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {Vm} from "../utils/Test.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice drawAudit, drawAudits, auditSelected, challenge, staffAudit / staffAudits (verifiers
/// drawn on-chain, v2) and how audits end: verdicts, escalation to round 2, no-verdict refunds,
/// verifier pay from the bond then the pool.
contract JobMarketAuditTest is UnitBase {
    uint256 internal constant REWARD = COLLATERAL * 3000 / BPS;

    address internal exec;
    /// @dev Staked providers the registry can draw (12: two rounds of 3 and 7 fit).
    address[] internal pool;

    function setUp() public override {
        super.setUp();
        exec = newProvider("exec", PRICE);
        address[] memory l = stakeVerifiers(12);
        for (uint256 i; i < l.length; ++i) pool.push(l[i]);
    }

    function challengedJob() internal returns (uint256 id) {
        setAuditBps(0);
        id = committedJob(exec);
        vm.prank(requester);
        market.challenge(id);
    }

    function isIn(address a, address[] memory l) internal pure returns (bool) {
        for (uint256 i; i < l.length; ++i) {
            if (l[i] == a) return true;
        }
        return false;
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
        emit IJobMarket.AuditStarted(id, 1, 3, uint32(block.number), uint32(block.timestamp + 10 minutes));
        vm.expectEmit(address(market));
        emit IJobMarket.AuditDrawn(id, true);
        assertTrue(market.drawAudit(id));
        assertState(id, IJobMarket.JobState.Auditing);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.deadline), block.timestamp + 10 minutes, "verifier assign window");
        assertEq(uint256(j.participants), 1, "nobody named: verifiers are drawn by staffAudit");
        assertEq(uint256(j.flags), 0, "not a challenge");
        assertEq(uint256(j.round), 1);
        assertEq(uint256(j.seats), 3);
        assertEq(uint256(j.verifiersFrom), 1);
        assertEq(uint256(j.seedBlock), block.number, "seeded by the hash of this block, unknown to the caller");
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

    /// @notice v2 (replaces "stale blockhash forces an audit"): an aged draw is re-seeded from the
    /// current block's hash, which the caller cannot know, and decided in a later block.
    function test_drawAudit_agedHashReseeds() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 commitBlock = block.number;
        vm.roll(commitBlock + 257); // blockhash(commitBlock) is gone
        assertEq(blockhash(commitBlock), bytes32(0));
        vm.expectEmit(address(market));
        emit IJobMarket.AuditReseeded(id, uint32(block.number));
        assertFalse(market.drawAudit(id), "not forced either way");
        assertState(id, IJobMarket.JobState.Committed);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.flags), 8, "re-seeded (bit 3), not drawn");
        assertEq(uint256(j.seedBlock), block.number);
        // Same block: the new seed is not known yet.
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.drawAudit(id);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.auditSelected(id);
        steerDraw(id, true);
        nextBlock();
        assertTrue(market.auditSelected(id));
        assertTrue(market.drawAudit(id), "decided by the re-seeded block's hash");
        assertState(id, IJobMarket.JobState.Auditing);
    }

    function test_drawAudit_reseededNotSelectedIsDrawnClear() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.roll(block.number + 300);
        market.drawAudit(id);
        steerDraw(id, false);
        nextBlock();
        assertFalse(market.drawAudit(id));
        assertEq(uint256(market.job(id).flags), 8 | 4);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
    }

    function test_drawAudit_reseedAgesOutAgain() public {
        setAuditBps(10_000);
        uint256 id = committedJob(exec);
        vm.roll(block.number + 300);
        market.drawAudit(id);
        vm.roll(block.number + 300);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditReseeded(id, uint32(block.number));
        assertFalse(market.drawAudit(id));
        nextBlock();
        assertTrue(market.drawAudit(id));
    }

    function test_drawAudit_lastBlockWithHashNotForced() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        uint256 commitBlock = block.number;
        vm.roll(commitBlock + 256);
        assertNotEq(blockhash(commitBlock), bytes32(0));
        assertFalse(market.drawAudit(id));
        assertEq(uint256(market.job(id).flags), 4);
    }

    function testFuzz_drawAudit_matchesBlockhashDraw(uint16 auditBps, uint8 blocksLater) public {
        auditBps = uint16(bound(auditBps, 477, 10_000)); // 477 x 21 >= 10000
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
        uint256 id2 = committedJob(pool[0]);
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
        uint256 id2 = committedJob(pool[0]);
        nextBlock();
        market.drawAudits(ids2(id1, id2));
        assertState(id1, IJobMarket.JobState.Auditing);
        assertState(id2, IJobMarket.JobState.Auditing);
    }

    function test_drawAudits_revertsEmpty() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.drawAudits(new uint256[](0));
    }

    /// @notice v2 (replaces "one bad job reverts all"): the bad item is skipped and reported.
    function test_drawAudits_skipsItemNotCommitted() public {
        setAuditBps(0);
        uint256 id1 = committedJob(exec);
        uint256 id2 = assignedJob(pool[0]);
        nextBlock();
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id2, market.drawAudit.selector, unexpected(id2, IJobMarket.JobState.Assigned, S_COMMITTED)
        );
        market.drawAudits(ids2(id2, id1));
        assertEq(uint256(market.job(id1).flags), 4, "the other item drawn");
    }

    function test_drawAudits_skipsInCommitBlock() public {
        setAuditBps(0);
        uint256 id1 = committedJob(exec);
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id1,
            market.drawAudit.selector,
            abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id1, block.number)
        );
        market.drawAudits(ids1(id1));
        assertEq(uint256(market.job(id1).flags), 0);
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
        assertEq(uint256(market.job(id).round), 1);
        assertEq(uint256(market.job(id).participants), 1, "the requester names nobody");
    }

    /// @notice The bond is verifiers x units x clearing price: a cheap executor means a cheap bond.
    function test_challenge_bondAtClearingPrice() public {
        setAuditBps(0);
        address cheap = newProvider("cheap", PRICE / 4);
        uint256 id = committedJob(cheap);
        vm.prank(requester);
        market.challenge(id);
        assertEq(market.challengeBond(id), 3 * uint256(UNITS) * (PRICE / 4));
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
        uint256 id = createJob(3);
        assignJob(id, three(exec, pool[0], pool[1]));
        commitAs(exec, id, GOOD);
        commitAs(pool[0], id, GOOD);
        commitAs(pool[1], id, GOOD);
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
        token.approve(address(market), ESCROW1); // the escrow, not the bond
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

    // ---------------------------------------------------------------- staffAudit

    function test_staffAudit() public {
        uint256 id = auditingJob(exec, GOOD);
        nextBlock();
        vm.recordLogs();
        vm.prank(keeper); // permissionless
        assertEq(market.staffAudit(id), 3);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint32 deadline = uint32(block.timestamp + 30 minutes); // verifierExecWindow, not the requester's
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.participants), 4);
        assertEq(uint256(j.deadline), deadline);
        assertEq(uint256(j.activeMask), 0xF);
        address[] memory vs = roundVerifiers(id);
        uint256 assigned;
        bool staffed;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == IJobMarket.ProviderAssigned.selector) {
                ++assigned;
                (uint8 index, uint80 price, uint32 dl) = abi.decode(logs[i].data, (uint8, uint80, uint32));
                assertEq(uint256(index), assigned, "verifier indices follow the executors");
                assertEq(address(uint160(uint256(logs[i].topics[2]))), vs[index - 1]);
                assertEq(uint256(price), PRICE, "paid the clearing price");
                assertEq(uint256(dl), deadline);
            }
            if (logs[i].topics[0] == IJobMarket.AuditStaffed.selector) {
                staffed = true;
                assertEq(logs[i].data, abi.encode(uint8(1), deadline));
            }
        }
        assertEq(assigned, 3);
        assertTrue(staffed, "AuditStaffed");
        for (uint256 i; i < 3; ++i) {
            assertTrue(vs[i] != exec && vs[i] != requester, "executor and requester excluded");
            assertEq(registry.provider(vs[i]).locked, COLLATERAL, "verifier collateral at the clearing price");
            for (uint256 k; k < i; ++k) assertTrue(vs[i] != vs[k], "distinct");
        }
    }

    function test_staffAudit_revertsInSeedBlock() public {
        uint256 id = auditingJob(exec, GOOD);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketSeedNotReady.selector, id, block.number));
        market.staffAudit(id);
    }

    function test_staffAudit_revertsWhenStaffed() public {
        uint256 id = auditingJob(exec, GOOD);
        staffRound(id);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditStaffed.selector, id));
        market.staffAudit(id);
    }

    function test_staffAudit_revertsAfterAssignWindow() public {
        uint256 id = auditingJob(exec, GOOD);
        uint256 deadline = deadlineOf(id);
        skipTime(10 minutes + 1);
        vm.expectRevert(passed(id, deadline));
        market.staffAudit(id);
    }

    function test_staffAudit_revertsWrongState() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        nextBlock();
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_AUDITING));
        market.staffAudit(id);
    }

    /// @notice The requester may be a staked provider too: it is never drawn for its own job.
    function test_staffAudit_neverDrawsRequesterOrExecutor() public {
        vm.startPrank(owner);
        token.mint(requester, 100_000e18);
        vm.stopPrank();
        vm.startPrank(requester);
        registry.register(terms(PRICE, 80));
        token.approve(address(registry), 100_000e18);
        registry.stake(100_000e18); // 100x everyone else's stake
        vm.stopPrank();
        for (uint256 k; k < 5; ++k) {
            uint256 id = auditingJob(exec, GOOD);
            address[] memory vs = staffRound(id);
            assertFalse(isIn(requester, vs), "requester drawn");
            assertFalse(isIn(exec, vs), "executor drawn");
        }
    }

    function test_staffAudit_skipsProvidersWithoutFreeStake() public {
        // Lock every pool provider's stake but three: only those three can be drawn.
        for (uint256 i = 3; i < pool.length; ++i) {
            vm.prank(pool[i]);
            registry.requestUnbond(uint96(PROVIDER_STAKE)); // unbonding: weight 0, and no free stake
        }
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        for (uint256 i; i < 3; ++i) assertTrue(isIn(vs[i], three(pool[0], pool[1], pool[2])));
    }

    /// @notice Too few drawable providers: the seats found stay filled, later calls continue the
    /// draw, and a round still short at its deadline ends with no verdict (everyone released).
    function test_staffAudit_partialThenNoVerdict() public {
        for (uint256 i = 2; i < pool.length; ++i) {
            vm.prank(pool[i]);
            registry.requestUnbond(uint96(PROVIDER_STAKE));
        }
        uint256 id = auditingJob(exec, GOOD);
        nextBlock();
        assertEq(market.staffAudit(id), 2, "two seats filled");
        assertEq(market.staffAudit(id), 2, "nobody else drawable");
        assertState(id, IJobMarket.JobState.Auditing);
        address[] memory vs = roundVerifiers(id);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        for (uint256 i; i < 2; ++i) {
            assertEq(registry.provider(vs[i]).locked, 0, "released");
            assertEq(registry.provider(vs[i]).stake, PROVIDER_STAKE, "unslashed");
        }
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE);
    }

    /// @notice A round whose seed block aged out re-seeds from the current block.
    function test_staffAudit_agedSeedReseeds() public {
        uint256 id = auditingJob(exec, GOOD);
        vm.roll(block.number + 257);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditReseeded(id, uint32(block.number));
        assertEq(market.staffAudit(id), 0);
        assertEq(uint256(market.job(id).seedBlock), block.number);
        assertEq(uint256(market.job(id).participants), 1, "nobody drawn from a known hash");
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketSeedNotReady.selector, id, block.number));
        market.staffAudit(id);
        assertEq(staffRound(id).length, 3);
    }

    function test_staffAudits_skipsItems() public {
        uint256 id1 = auditingJob(exec, GOOD);
        uint256 id2 = createJob(1);
        nextBlock();
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id2, market.staffAudit.selector, unexpected(id2, IJobMarket.JobState.Open, S_AUDITING)
        );
        market.staffAudits(ids2(id2, id1));
        assertEq(uint256(market.job(id1).participants), 4, "the other item staffed");
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id1, market.staffAudit.selector, abi.encodeWithSelector(IJobMarket.JobMarketAuditStaffed.selector, id1)
        );
        market.staffAudits(ids1(id1));
    }

    function test_staffAudits_revertsEmpty() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.staffAudits(new uint256[](0));
    }

    function test_runBatchItem_onlySelf() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketOnlySelf.selector, address(this)));
        market.runBatchItem(market.finalize.selector, 1, new address[](0));
    }

    // ---------------------------------------------------------------- verifiers commit and reveal

    function test_verifiersCommitThenReveal() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        commitAs(vs[0], id, GOOD);
        commitAs(vs[1], id, GOOD);
        assertState(id, IJobMarket.JobState.Auditing);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, uint32(block.timestamp + 10 minutes));
        commitAs(vs[2], id, GOOD);
        assertState(id, IJobMarket.JobState.Revealing);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        assertEq(market.revealedDigest(id, 3), GOOD);
    }

    function test_verifierCommit_revertsTwice() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        commitAs(vs[0], id, GOOD);
        vm.prank(vs[0]);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAlreadyCommitted.selector, id, vs[0]));
        market.commit(id, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    /// A drawn verifier is held to its commitment exactly as an executor is: once the executor's
    /// digest is public, a verifier that committed another digest cannot switch to it, and one that
    /// copied another verifier's resultHash and seal cannot open them under its own key. Nothing it
    /// tried is recorded, and it can still reveal what it did commit.
    function test_verifierReveal_mustOpenItsOwnCommitment() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        commitAs(vs[0], id, GOOD);
        vm.prank(vs[1]);
        market.commit(id, JobLib.resultHash(id, GOOD), JobLib.seal(vs[0], id, GOOD)); // vs[0]'s pair, copied
        commitAs(vs[2], id, BAD);
        assertState(id, IJobMarket.JobState.Revealing);
        revealAs(exec, id, GOOD);
        revealAs(vs[0], id, GOOD);

        vm.prank(vs[2]);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, vs[2]));
        market.reveal(id, GOOD);
        vm.prank(vs[1]);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, vs[1]));
        market.reveal(id, GOOD);
        // seats: the executor 0, then vs[0..2] at 1..3
        assertEq(uint256(market.job(id).revealMask), 0x3, "only the executor's and vs[0]'s reveals recorded");
        assertEq(market.revealedDigest(id, 3), bytes32(0));

        revealAs(vs[2], id, BAD);
        assertEq(market.revealedDigest(id, 3), BAD);
    }

    function test_verifierCommit_revertsAfterVerifierExecWindow() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        uint256 deadline = deadlineOf(id);
        skipTime(30 minutes + 1);
        vm.prank(vs[0]);
        vm.expectRevert(passed(id, deadline));
        market.commit(id, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    // ---------------------------------------------------------------- verdicts

    function test_randomAudit_honest_verifiersPaidFromPool() public {
        uint256 funded = fundPoolBySlash() + fundPoolBySlash(); // 2 x 30% of a collateral = 6 PAY
        assertEq(funded, 2 * REWARD);
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 premium = PAY * 10_000 * 3 / BPS; // auditingJob set auditBps 10000 before creating
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(exec), PAY);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), PAY, "units x clearing price each, from the pool");
            assertEq(registry.provider(vs[i]).locked, 0);
            assertEq(uint256(registry.provider(vs[i]).jobsDone), 1);
        }
        assertEq(market.auditPool(), funded - 3 * PAY + FEE / 2 + premium, "pool paid out, premium in");
        assertEq(uint256(registry.provider(exec).jobsDone), 1);
    }

    function test_randomAudit_emptyPoolVerifiersUnpaid() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), 0, "pay capped by the pool");
            assertEq(registry.provider(vs[i]).locked, 0, "released");
        }
    }

    function test_randomAudit_cheaterCaught() public {
        uint256 id = auditingJob(exec, BAD);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, BAD);
        revealAll(vs, id, GOOD);
        uint256 escrow = market.escrowFor(request(1));
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(market.credits(requester), escrow + COLLATERAL / 2, "escrow back plus compensation");
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), REWARD / 3);
        assertEq(market.credits(exec), 0);
    }

    /// @notice The executor lied and the requester challenged: the cheater's slash compensates the
    /// requester; upholding verifiers are paid from the bond first (then the rest comes back).
    function test_challengeWon_requesterCompensated() public {
        setAuditBps(0);
        uint256 id = assignedJob(exec);
        commitAs(exec, id, BAD);
        vm.prank(requester);
        market.challenge(id);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, BAD);
        revealAll(vs, id, GOOD);
        uint256 before = market.credits(requester);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), PAY + REWARD / 3, "bond pay plus reward");
        assertEq(market.credits(requester) - before, ESCROW1 + COLLATERAL / 2, "escrow, compensation; bond spent");
        assertEq(market.totalBonds(), 0);
    }

    function test_challengeLost_bondPaysVerifiers() public {
        uint256 id = challengedJob();
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), PAY);
        assertEq(market.credits(requester), 0);
        assertEq(market.credits(exec), PAY);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE);
    }

    /// @notice Round 1 splits 1-1-1: 7 fresh verifiers decide; the bond pays first, the pool the rest.
    function test_escalation_round2DecidesAndPaysFromBondThenPool() public {
        uint256 funded = fundPoolBySlash() + fundPoolBySlash() + fundPoolBySlash(); // 9 PAY
        uint256 id = challengedJob();
        uint256 requesterCredits = market.credits(requester); // refunds of the pool-funding jobs
        address[] memory r1 = staffRound(id);
        commitAs(r1[0], id, GOOD);
        commitAs(r1[1], id, BAD);
        commitAs(r1[2], id, OTHER);
        revealAs(exec, id, GOOD);
        revealAs(r1[0], id, GOOD);
        revealAs(r1[1], id, BAD);
        revealAs(r1[2], id, OTHER);
        vm.expectEmit(address(market));
        emit IJobMarket.AuditStarted(id, 2, 7, uint32(block.number), uint32(block.timestamp + 10 minutes));
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
        assertEq(uint256(market.job(id).round), 2);
        address[] memory r2 = staffAndCommit(id, GOOD);
        assertEq(r2.length, 7, "2k + 1 fresh verifiers");
        for (uint256 i; i < 7; ++i) {
            assertFalse(isIn(r2[i], r1), "fresh");
            assertTrue(r2[i] != exec);
        }
        revealAll(r2, id, GOOD);
        uint256 poolBefore = market.auditPool();
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        // Upheld: the executor, r1[0] and the 7 of round 2; slashed: r1[1], r1[2].
        uint256 reward = 2 * REWARD / 9;
        assertEq(market.credits(exec), PAY + reward);
        assertEq(market.credits(r1[0]), PAY + reward);
        for (uint256 i; i < 7; ++i) assertEq(market.credits(r2[i]), PAY + reward);
        assertEq(market.credits(r1[1]), 0);
        assertEq(registry.provider(r1[1]).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(registry.provider(r1[2]).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(market.totalBonds(), 0, "the bond (3 PAY) went first");
        uint256 dust = 2 * REWARD - 9 * reward;
        assertEq(poolBefore + FEE / 2 + PREMIUM + dust - market.auditPool(), 5 * PAY, "the pool paid the other 5");
        assertEq(market.credits(requester), requesterCredits, "losing challenger gets nothing back");
        assertTrue(funded >= 5 * PAY);
    }

    /// @notice No majority in round 2 either: no verdict, refund, nobody who revealed is slashed.
    function test_escalation_noMajorityInRound2Refunds() public {
        uint256 id = challengedJob();
        address[] memory r1 = staffRound(id);
        bytes32[3] memory d = [GOOD, BAD, OTHER];
        for (uint256 i; i < 3; ++i) commitAs(r1[i], id, d[i]);
        revealAs(exec, id, GOOD);
        for (uint256 i; i < 3; ++i) revealAs(r1[i], id, d[i]);
        market.finalize(id);
        address[] memory r2 = staffRound(id);
        // 3 GOOD, 2 BAD, 2 OTHER of 7: no strict majority.
        bytes32[7] memory d2 = [GOOD, GOOD, GOOD, BAD, BAD, OTHER, OTHER];
        for (uint256 i; i < 7; ++i) commitAs(r2[i], id, d2[i]);
        for (uint256 i; i < 7; ++i) revealAs(r2[i], id, d2[i]);
        uint256 supply = token.totalSupply();
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        assertEq(token.totalSupply(), supply, "nothing burned");
        assertEq(market.credits(requester), ESCROW1 + BOND, "escrow and bond back");
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE);
        assertEq(registry.provider(exec).locked, 0);
        assertEq(market.credits(exec), 0, "no verdict, no pay");
        for (uint256 i; i < 7; ++i) {
            assertEq(registry.provider(r2[i]).locked, 0);
            assertEq(registry.provider(r2[i]).stake, PROVIDER_STAKE);
        }
    }

    /// @notice A round nobody can staff ends with no verdict: refund, executor released unpaid.
    function test_auditTimeout_unstaffedRefunds() public {
        for (uint256 i; i < pool.length; ++i) {
            vm.prank(pool[i]);
            registry.requestUnbond(uint96(PROVIDER_STAKE));
        }
        uint256 id = auditingJob(exec, BAD);
        nextBlock();
        assertEq(market.staffAudit(id), 0);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        assertEq(market.credits(requester), market.escrowFor(request(1)));
        assertEq(market.credits(exec), 0);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "not slashed");
        assertEq(registry.provider(exec).locked, 0);
    }

    function test_auditTimeout_noVerifierCommitsSlashesVerifiers() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
        skipTime(30 minutes + 1);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Revealing);
        for (uint256 i; i < 3; ++i) assertEq(registry.provider(vs[i]).stake, PROVIDER_STAKE - COLLATERAL);
        assertEq(market.credits(requester), 0, "no-show slashes never credit the requester");
        revealAs(exec, id, GOOD);
        market.finalize(id); // no verifier revealed in round 1: escalate
        assertEq(uint256(market.job(id).round), 2);
        address[] memory r2 = staffAndCommit(id, GOOD);
        revealAll(r2, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "the honest executor is never slashed");
    }

    function test_auditTimeout_partialCommitsGoToReveal() public {
        uint256 id = auditingJob(exec, GOOD);
        address[] memory vs = staffRound(id);
        commitAs(vs[0], id, GOOD);
        commitAs(vs[1], id, GOOD);
        skipTime(30 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Revealing);
        assertEq(registry.provider(vs[2]).stake, PROVIDER_STAKE - COLLATERAL, "the no-show slashed");
        revealAs(exec, id, GOOD);
        revealAs(vs[0], id, GOOD);
        revealAs(vs[1], id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(market.credits(vs[0]), REWARD / 3, "2 of 3 seats is a strict majority; reward shared");
    }

    function test_finalize_revertsAuditBeforeDeadline() public {
        uint256 id = auditingJob(exec, GOOD);
        uint256 deadline = deadlineOf(id);
        vm.expectRevert(notReached(id, deadline));
        market.finalize(id);
    }
}
