// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";

/// @notice Who is paid, refunded, slashed and burned when an audit decides, down to the totals
/// JobClosed reports: the accounting the audit suites check only through credits and stakes.
contract MutantsVerdictTest is UnitBase {
    uint256 internal constant REWARD = COLLATERAL * 3000 / BPS;
    uint256 internal constant COMPENSATION = COLLATERAL * 5000 / BPS;
    uint256 internal constant BURNED = COLLATERAL - COMPENSATION - REWARD;

    address internal exec;

    function setUp() public override {
        super.setUp();
        exec = newProvider("exec", PRICE);
        stakeVerifiers(12);
    }

    /// @notice A random audit catches a cheating executor and the pool is empty: the verifiers
    /// get only the reward share (dust to the pool), the requester its escrow and compensation.
    function test_randomAudit_cheaterCaught_closesWithExactTotals() public {
        uint256 id = auditingJob(exec, BAD);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, BAD);
        revealAll(vs, id, GOOD);
        uint256 share = REWARD / 3;
        uint256 escrow = market.escrowFor(request(1)); // the premium at auditBps 100%
        uint256 poolBefore = market.auditPool();
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id, IJobMarket.JobState.Refunded, GOOD, 3 * share, escrow + COMPENSATION, REWARD - 3 * share, BURNED
        );
        market.finalize(id);
        assertEq(market.auditPool() - poolBefore, REWARD - 3 * share, "reward dust funds audits");
        assertEq(supply - token.totalSupply(), BURNED, "burn share destroyed");
        assertEq(market.credits(requester), escrow + COMPENSATION);
        assertEq(market.protocolFees(), 0, "no fee on a job nobody was paid for");
        assertEq(uint256(market.job(id).activeMask), 0, "the slashed executor holds no seat");
    }

    /// @notice A slashed executor's reward share that does not divide among the upholding
    /// verifiers: the rest funds audits and is reported as a fee.
    function test_randomAudit_cheaterCaught_rewardRestReportedAsFee() public {
        setAuditBps(10_000);
        oddRewardShare();
        uint256 escrow = market.escrowFor(request(1));
        uint256 id = assignedJob(exec);
        commitAs(exec, id, BAD);
        nextBlock();
        assertTrue(market.drawAudit(id));
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, BAD);
        revealAll(vs, id, GOOD);
        uint256 reward = COLLATERAL * 1001 / BPS;
        uint256 share = reward / 3;
        uint256 rest = reward - 3 * share;
        assertTrue(rest != 0, "the reward does not divide by three");
        uint256 poolBefore = market.auditPool();
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id,
            IJobMarket.JobState.Refunded,
            GOOD,
            3 * share,
            escrow + COMPENSATION,
            rest,
            COLLATERAL - COMPENSATION - reward
        );
        market.finalize(id);
        assertEq(market.auditPool() - poolBefore, rest);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), share);
    }

    /// @notice The requester challenged and won: the bond pays the verifiers in full, the
    /// cheater's slash compensates the requester, nothing of the bond comes back.
    function test_challengeWon_closesWithExactTotals() public {
        setAuditBps(0);
        uint256 id = assignedJob(exec);
        commitAs(exec, id, BAD);
        vm.prank(requester);
        market.challenge(id);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, BAD);
        revealAll(vs, id, GOOD);
        uint256 share = REWARD / 3;
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id,
            IJobMarket.JobState.Refunded,
            GOOD,
            3 * PAY + 3 * share,
            ESCROW1 + COMPENSATION,
            REWARD - 3 * share,
            BURNED
        );
        market.finalize(id);
        assertEq(market.totalBonds(), 0);
        assertEq(token.balanceOf(address(market)), market.credits(requester) + 3 * (PAY + share) + market.auditPool());
    }

    /// @notice The requester challenged and lost: executor and verifiers are paid, the fee and
    /// premium are charged on the executor's pay, nothing is refunded and nothing burned.
    function test_challengeLost_closesWithExactTotals() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.prank(requester);
        market.challenge(id);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 poolBefore = market.auditPool();
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, 4 * PAY, 0, FEE + PREMIUM, 0);
        market.finalize(id);
        assertEq(market.auditPool() - poolBefore, FEE / 2 + PREMIUM, "audit share of the fee and the premium");
        assertEq(market.protocolFees(), FEE - FEE / 2);
        assertEq(market.credits(requester), 0);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), PAY);
            assertEq(registry.provider(vs[i]).locked, 0, "verifier released");
            assertEq(registry.provider(vs[i]).stake, PROVIDER_STAKE);
        }
    }

    /// @notice Round 1 upholds the executor 2-1: the outvoted verifier, whichever seat it holds
    /// (the first verifier seat included), is released unpaid with its stake whole; the bond pays
    /// the two upholding verifiers and its rest goes back to the requester.
    function test_round1_loneDissenterAtEachSeatReleasedUnpaid() public {
        for (uint256 seat; seat < 3; ++seat) {
            setAuditBps(0);
            uint256 id = committedJob(exec);
            vm.prank(requester);
            market.challenge(id);
            address[] memory vs = staffRound(id);
            for (uint256 i; i < 3; ++i) commitAs(vs[i], id, i == seat ? BAD : GOOD);
            revealAs(exec, id, GOOD);
            for (uint256 i; i < 3; ++i) revealAs(vs[i], id, i == seat ? BAD : GOOD);
            uint256 before = market.credits(vs[seat]);
            uint256 requesterBefore = market.credits(requester);
            vm.expectEmit(address(market));
            emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, 3 * PAY, BOND - 2 * PAY, FEE + PREMIUM, 0);
            market.finalize(id);
            assertEq(market.credits(vs[seat]) - before, 0, "outvoted verifier unpaid");
            assertEq(registry.provider(vs[seat]).stake, PROVIDER_STAKE, "and not slashed");
            assertEq(registry.provider(vs[seat]).locked, 0, "and released");
            assertEq(market.credits(requester) - requesterBefore, BOND - 2 * PAY, "unused bond back");
            assertEq(market.challengeBond(id), 0, "no bond left on the closed job");
            assertEq(market.totalBonds(), 0);
        }
    }

    /// @notice Slash rewards of 10.01% of the collateral: shares that do not divide evenly.
    function oddRewardShare() internal {
        IJobMarket.Params memory p = market.params();
        p.rewardShareBps = 1001;
        applyParams(p);
    }

    /// @notice A random audit upholds the executor but the pool holds less than the verifiers'
    /// pay: they split the whole pool and the indivisible rest stays in it (it is not a new fee).
    function test_randomAudit_poolShortfall_remainderStaysInPool() public {
        setAuditBps(10_000);
        oddRewardShare();
        uint256 funded = fundPoolBySlash();
        assertEq(funded, COLLATERAL * 1001 / BPS);
        uint256 escrow = market.escrowFor(request(1));
        uint256 id = assignedJob(exec);
        commitAs(exec, id, GOOD);
        nextBlock();
        assertTrue(market.drawAudit(id));
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 share = funded / 3;
        uint256 rest = funded - 3 * share;
        assertTrue(rest != 0, "the pool does not divide by three");
        uint256 premium = escrow - PAY - FEE;
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Settled, GOOD, PAY + 3 * share, 0, FEE + premium, 0);
        market.finalize(id);
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), share);
        assertEq(market.auditPool(), rest + FEE / 2 + premium, "remainder, audit share of the fee, premium");
    }

    /// @notice Round 2 upholds the executor against all of round 1: the bond and then the pool
    /// pay the seven verifiers, the indivisible rest of that budget and of the three slashed
    /// verifiers' rewards goes to the pool and is reported as fees; nothing is refunded.
    function test_round2_bondAndPoolShortfall_remaindersReportedAsFees() public {
        oddRewardShare();
        uint256 pool = fundPoolBySlash();
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.prank(requester);
        market.challenge(id);
        uint256 requesterBefore = market.credits(requester);
        address[] memory r1 = staffRound(id);
        bytes32[3] memory d = [BAD, OTHER, keccak256("third output")];
        for (uint256 i; i < 3; ++i) commitAs(r1[i], id, d[i]);
        revealAs(exec, id, GOOD);
        for (uint256 i; i < 3; ++i) revealAs(r1[i], id, d[i]);
        market.finalize(id);
        assertEq(uint256(market.job(id).round), 2, "no majority in round 1");
        address[] memory r2 = staffAndCommit(id, GOOD);
        revealAll(r2, id, GOOD);

        uint256 budget = BOND + pool; // 7 PAY wanted, more than both hold
        uint256 share = budget / 7;
        uint256 payRest = budget - 7 * share;
        assertTrue(payRest != 0, "the budget does not divide by seven");
        uint256 reward = 3 * (COLLATERAL * 1001 / BPS); // the slashed round-1 verifiers
        uint256 rewardShare = reward / 8; // the executor and the seven
        uint256 rewardRest = reward - 8 * rewardShare;
        uint256 burned = 3 * (COLLATERAL - COLLATERAL * 1001 / BPS); // verifiers compensate nobody
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(
            id,
            IJobMarket.JobState.Settled,
            GOOD,
            PAY + 7 * share + 8 * rewardShare,
            0,
            FEE + PREMIUM + payRest + rewardRest,
            burned
        );
        market.finalize(id);
        assertEq(market.credits(exec), PAY + rewardShare);
        for (uint256 i; i < 7; ++i) assertEq(market.credits(r2[i]), share + rewardShare);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(r1[i]), 0);
            assertEq(registry.provider(r1[i]).stake, PROVIDER_STAKE - COLLATERAL, "outvoted in round 2: slashed");
        }
        assertEq(market.auditPool(), payRest + rewardRest + FEE / 2 + PREMIUM);
        assertEq(supply - token.totalSupply(), burned);
        assertEq(market.credits(requester), requesterBefore, "the bond is spent");
        assertEq(market.totalBonds(), 0);
    }
}
