// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @notice Constructor, owner functions (params and their bounds, matcher, treasury), payouts
/// (withdraw, withdrawFees) and the views.
contract JobMarketAdminTest is UnitBase {
    string internal constant WINDOW_REASON = "a window is below 10 s or above 30 days";

    function expectOwnerOnly(address caller) internal {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, caller));
    }

    function assertParams(IJobMarket.Params memory p) internal view {
        assertEq(abi.encode(market.params()), abi.encode(p), "params");
    }

    function longUnbonding() internal {
        vm.prank(owner);
        registry.setUnbondingPeriod(365 days);
    }

    function settledJob() internal returns (uint256 id) {
        setAuditBps(0);
        address p = newProvider("p", PRICE);
        id = committedJob(p);
        skipTime(10 minutes + 1);
        market.finalize(id);
    }

    // ---------------------------------------------------------------- constructor

    function test_constructor() public {
        IJobMarket.Params memory p = defaultParams();
        vm.expectEmit();
        emit IJobMarket.TreasurySet(treasury);
        vm.expectEmit();
        emit IJobMarket.ParamsSet(p);
        JobMarket m = new JobMarket(token, registry, owner, treasury, p);
        assertEq(m.owner(), owner);
        assertEq(m.treasury(), treasury);
        assertEq(m.token(), address(token));
        assertEq(m.registry(), address(registry));
        assertEq(abi.encode(m.params()), abi.encode(p));
        assertEq(m.jobCount(), 0);
    }

    function test_constructor_revertsZeroTreasury() public {
        IJobMarket.Params memory p = defaultParams();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketZeroAddress.selector));
        new JobMarket(token, registry, owner, address(0), p);
    }

    function test_constructor_revertsZeroToken() public {
        IJobMarket.Params memory p = defaultParams();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketZeroAddress.selector));
        new JobMarket(IERC20(address(0)), registry, owner, treasury, p);
    }

    function test_constructor_revertsZeroRegistry() public {
        IJobMarket.Params memory p = defaultParams();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketZeroAddress.selector));
        new JobMarket(token, IProviderRegistry(address(0)), owner, treasury, p);
    }

    function test_constructor_revertsZeroOwner() public {
        IJobMarket.Params memory p = defaultParams();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        new JobMarket(token, registry, address(0), treasury, p);
    }

    function test_constructor_revertsInvalidParams() public {
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = 1001;
        vm.expectRevert(invalidParams("feeBps above 1000"));
        new JobMarket(token, registry, owner, treasury, p);
    }

    // ---------------------------------------------------------------- setParams

    function test_setParams() public {
        IJobMarket.Params memory p = IJobMarket.Params({
            feeBps: 100,
            auditShareBps: 2500,
            auditBps: 500,
            requesterShareBps: 6000,
            rewardShareBps: 2000,
            verifiers: 5,
            collateralMultiple: 20, // 500 x (1 + 20) >= 10000
            challengeWindow: 20 minutes,
            verifierAssignWindow: 5 minutes,
            verifierExecWindow: 40 minutes,
            revealWindow: 15 minutes,
            minExecWindow: 2 minutes,
            maxAcceptWindow: 12 hours,
            maxExecWindow: 6 hours,
            reassignWindow: 1 hours,
            minFee: 5e13
        });
        vm.expectEmit(address(market));
        emit IJobMarket.ParamsSet(p);
        vm.prank(owner);
        market.setParams(p);
        assertParams(p);
        assertEq(
            market.maxJobLifetime(),
            uint256(12 hours) + 6 hours + 1 hours + 6 hours + 20 minutes + 2 * (5 minutes + 40 minutes + 15 minutes)
        );
    }

    function test_setParams_revertsForNonOwner() public {
        IJobMarket.Params memory p = defaultParams();
        vm.prank(matcher);
        expectOwnerOnly(matcher);
        market.setParams(p);
    }

    function test_setParams_boundsAccepted() public {
        longUnbonding();
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = 1000;
        p.auditShareBps = 10_000;
        p.auditBps = 10_000;
        p.requesterShareBps = 10_000;
        p.rewardShareBps = 0;
        p.verifiers = 5;
        p.collateralMultiple = 20;
        p.challengeWindow = 30 days;
        p.minFee = 1;
        applyParams(p);
        assertParams(p);
        p.verifiers = 1;
        p.collateralMultiple = 1;
        p.auditBps = 5000; // 5000 x (1 + 1) = 10000: the bound itself
        p.requesterShareBps = 0;
        p.rewardShareBps = 10_000;
        p.challengeWindow = 10;
        p.minExecWindow = 10;
        p.minFee = type(uint64).max;
        applyParams(p);
        assertParams(p);
    }

    function setParamsExpect(IJobMarket.Params memory p, string memory reason) internal {
        vm.prank(owner);
        vm.expectRevert(invalidParams(reason));
        market.setParams(p);
    }

    function test_setParams_revertsFeeAbove1000() public {
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = 1001;
        setParamsExpect(p, "feeBps above 1000");
    }

    function test_setParams_revertsAuditShareAbove10000() public {
        IJobMarket.Params memory p = defaultParams();
        p.auditShareBps = 10_001;
        setParamsExpect(p, "auditShareBps above 10000");
    }

    function test_setParams_revertsAuditBpsAbove10000() public {
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = 10_001;
        setParamsExpect(p, "auditBps above 10000");
    }

    function test_setParams_revertsSlashSharesAbove10000() public {
        IJobMarket.Params memory p = defaultParams();
        p.requesterShareBps = 7000;
        p.rewardShareBps = 3001;
        setParamsExpect(p, "requesterShareBps + rewardShareBps above 10000");
    }

    function test_setParams_revertsSlashSharesNoOverflow() public {
        IJobMarket.Params memory p = defaultParams();
        p.requesterShareBps = type(uint16).max;
        p.rewardShareBps = type(uint16).max; // the sum is taken in 256 bits
        setParamsExpect(p, "requesterShareBps + rewardShareBps above 10000");
    }

    function test_setParams_revertsZeroVerifiers() public {
        IJobMarket.Params memory p = defaultParams();
        p.verifiers = 0;
        setParamsExpect(p, "verifiers not 1, 3 or 5");
    }

    /// @notice v2 (replaces "8 verifiers"): an even count could tie, so only 1, 3 or 5.
    function test_setParams_revertsEvenOrSevenVerifiers() public {
        IJobMarket.Params memory p = defaultParams();
        uint8[4] memory bad = [uint8(2), 4, 6, 7];
        for (uint256 i; i < 4; ++i) {
            p.verifiers = bad[i];
            setParamsExpect(p, "verifiers not 1, 3 or 5");
        }
    }

    /// @notice Invariant 12: auditBps x (1 + collateralMultiple) >= 10000, so a lazy executor's
    /// expected profit is <= 0.
    function test_setParams_revertsAuditBoundBelow10000() public {
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = 909; // 909 x 11 = 9999
        setParamsExpect(p, "auditBps x (1 + collateralMultiple) below 10000");
        p.auditBps = 910; // 10010
        applyParams(p);
        p.auditBps = 0;
        p.collateralMultiple = 20;
        setParamsExpect(p, "auditBps x (1 + collateralMultiple) below 10000");
    }

    function test_setParams_revertsMinExecAboveMaxExec() public {
        IJobMarket.Params memory p = defaultParams();
        p.minExecWindow = 2 days;
        p.maxExecWindow = 1 days;
        p.verifierExecWindow = 2 days;
        setParamsExpect(p, "minExecWindow above maxExecWindow");
    }

    function test_setParams_revertsVerifierExecBelowMinExec() public {
        IJobMarket.Params memory p = defaultParams();
        p.minExecWindow = 31 minutes;
        setParamsExpect(p, "verifierExecWindow below minExecWindow");
    }

    function test_setParams_revertsZeroMinFee() public {
        IJobMarket.Params memory p = defaultParams();
        p.minFee = 0;
        setParamsExpect(p, "minFee is 0");
    }

    function test_setParams_revertsZeroCollateralMultiple() public {
        IJobMarket.Params memory p = defaultParams();
        p.collateralMultiple = 0;
        setParamsExpect(p, "collateralMultiple not in 1..20");
    }

    function test_setParams_revertsCollateralMultipleAbove20() public {
        IJobMarket.Params memory p = defaultParams();
        p.collateralMultiple = 21;
        setParamsExpect(p, "collateralMultiple not in 1..20");
    }

    function withWindow(uint256 which, uint32 value) internal pure returns (IJobMarket.Params memory p) {
        p = defaultParams();
        if (which == 0) p.challengeWindow = value;
        else if (which == 1) p.verifierAssignWindow = value;
        else if (which == 2) p.revealWindow = value;
        else if (which == 3) p.reassignWindow = value;
        else if (which == 4) p.maxAcceptWindow = value;
        else if (which == 5) p.verifierExecWindow = value;
        else if (which == 6) p.minExecWindow = value;
        else p.maxExecWindow = value;
    }

    uint256 internal constant WINDOWS = 8;

    function test_setParams_revertsWindowsBelow10s() public {
        for (uint256 w; w < WINDOWS; ++w) {
            setParamsExpect(withWindow(w, 0), WINDOW_REASON);
            setParamsExpect(withWindow(w, 9), WINDOW_REASON);
        }
    }

    function test_setParams_revertsWindowsAbove30Days() public {
        longUnbonding();
        for (uint256 w; w < WINDOWS; ++w) {
            if (w == 6) continue; // minExecWindow above maxExecWindow fails its own check first
            setParamsExpect(withWindow(w, 30 days + 1), WINDOW_REASON);
            applyParams(withWindow(w, 30 days)); // the bound itself is fine
        }
    }

    function test_setParams_revertsLifetimeAboveHalfUnbonding() public {
        IJobMarket.Params memory p = defaultParams();
        // Default lifetime is 3 days 2 h 20 min; 14 days of unbonding allow up to 7 days.
        p.maxExecWindow = 3 days; // 1 d + 2 x 3 d + 2 h 20 min = 7 d 2 h 20 min
        setParamsExpect(p, "2 x maxJobLifetime above the registry's unbonding period");
    }

    function testFuzz_setParams_feeBps(uint16 feeBps) public {
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = feeBps;
        if (feeBps > 1000) return setParamsExpect(p, "feeBps above 1000");
        applyParams(p);
        assertEq(uint256(market.params().feeBps), feeBps);
        uint256 fee = PAY * feeBps / BPS;
        if (fee < p.minFee) fee = p.minFee;
        assertEq(market.escrowFor(request(1)), PAY + fee + PREMIUM, "fee floored at minFee");
    }

    function testFuzz_setParams_collateralMultiple(uint8 multiple) public {
        IJobMarket.Params memory p = defaultParams();
        p.collateralMultiple = multiple;
        p.auditBps = 5000; // keeps the audit bound for every multiple >= 1
        if (multiple == 0 || multiple > 20) return setParamsExpect(p, "collateralMultiple not in 1..20");
        applyParams(p);
        address prov = newProvider("p", PRICE);
        uint256 id = assignedJob(prov);
        assertEq(collateralOf(id), uint256(multiple) * PAY);
        assertEq(registry.provider(prov).locked, uint256(multiple) * PAY);
    }

    function testFuzz_setParams_slashShares(uint16 requesterShareBps, uint16 rewardShareBps) public {
        IJobMarket.Params memory p = defaultParams();
        p.requesterShareBps = requesterShareBps;
        p.rewardShareBps = rewardShareBps;
        if (uint256(requesterShareBps) + rewardShareBps > BPS) {
            return setParamsExpect(p, "requesterShareBps + rewardShareBps above 10000");
        }
        applyParams(p);
        assertParams(p);
    }

    function testFuzz_setParams_verifiers(uint8 k) public {
        IJobMarket.Params memory p = defaultParams();
        p.verifiers = k;
        if (k == 0 || k > 5 || k % 2 == 0) return setParamsExpect(p, "verifiers not 1, 3 or 5");
        applyParams(p);
        assertEq(uint256(market.params().verifiers), k);
    }

    function testFuzz_setParams_window(uint8 which, uint32 value) public {
        longUnbonding();
        which = uint8(bound(which, 0, 4)); // the ones without cross-checks
        IJobMarket.Params memory p = withWindow(which, value);
        if (value < 10 || value > 30 days) return setParamsExpect(p, WINDOW_REASON);
        applyParams(p);
        assertParams(p);
    }

    function testFuzz_setParams_lifetimeVsUnbonding(uint32 maxExecWindow, uint40 unbonding) public {
        unbonding = uint40(bound(unbonding, 2 * market.maxJobLifetime(), 365 days));
        vm.prank(owner);
        registry.setUnbondingPeriod(unbonding);
        maxExecWindow = uint32(bound(maxExecWindow, 60, 30 days));
        IJobMarket.Params memory p = defaultParams();
        p.maxExecWindow = maxExecWindow;
        uint256 lifetime =
            uint256(1 days) + 2 * uint256(maxExecWindow) + 30 minutes + 10 minutes + 2 * (10 minutes + 30 minutes + 10 minutes);
        if (2 * lifetime > unbonding) {
            return setParamsExpect(p, "2 x maxJobLifetime above the registry's unbonding period");
        }
        applyParams(p);
        assertEq(market.maxJobLifetime(), lifetime);
    }

    function test_setParams_affectsOnlyNewJobsEscrow() public {
        address p0 = newProvider("p0", PRICE);
        uint256 id = assignedJob(p0);
        commitAs(p0, id, GOOD);
        steerDraw(id, false);
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = 5000;
        p.feeBps = 1000;
        p.minFee = 1e18;
        applyParams(p);
        nextBlock();
        market.drawAudit(id);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertEq(market.auditPool() + market.protocolFees(), FEE + PREMIUM, "fee and premium at the job's snapshot");
        assertEq(market.credits(requester), 0);
    }

    // ---------------------------------------------------------------- setMatcher

    function test_setMatcher() public {
        address m2 = makeAddr("matcher2");
        vm.expectEmit(address(market));
        emit IJobMarket.MatcherSet(m2, true);
        vm.prank(owner);
        market.setMatcher(m2, true);
        assertTrue(market.isMatcher(m2));
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        vm.prank(m2);
        market.assign(id, one(p));
        vm.expectEmit(address(market));
        emit IJobMarket.MatcherSet(m2, false);
        vm.prank(owner);
        market.setMatcher(m2, false);
        assertFalse(market.isMatcher(m2));
    }

    function test_setMatcher_revertsZero() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketZeroAddress.selector));
        market.setMatcher(address(0), true);
    }

    function test_setMatcher_revertsForNonOwner() public {
        vm.prank(matcher);
        expectOwnerOnly(matcher);
        market.setMatcher(matcher, true);
    }

    // ---------------------------------------------------------------- setTreasury

    function test_setTreasury() public {
        address t2 = makeAddr("treasury2");
        vm.expectEmit(address(market));
        emit IJobMarket.TreasurySet(t2);
        vm.prank(owner);
        market.setTreasury(t2);
        assertEq(market.treasury(), t2);
        settledJob();
        uint256 fees = market.protocolFees();
        market.withdrawFees();
        assertEq(token.balanceOf(t2), fees, "fees go to the new treasury");
        assertEq(token.balanceOf(treasury), 0);
    }

    function test_setTreasury_revertsZero() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketZeroAddress.selector));
        market.setTreasury(address(0));
    }

    function test_setTreasury_revertsForNonOwner() public {
        vm.prank(treasury);
        expectOwnerOnly(treasury);
        market.setTreasury(treasury);
    }

    // ---------------------------------------------------------------- ownership

    function test_transferOwnership() public {
        address newOwner = makeAddr("newOwner");
        vm.prank(owner);
        market.transferOwnership(newOwner);
        assertEq(market.owner(), newOwner);
        IJobMarket.Params memory p = defaultParams();
        vm.prank(owner);
        expectOwnerOnly(owner);
        market.setParams(p);
        vm.prank(newOwner);
        market.setParams(p);
    }

    // ---------------------------------------------------------------- withdraw

    function test_withdraw() public {
        uint256 id = createJob(1);
        vm.prank(requester);
        market.cancel(id);
        uint256 before = token.balanceOf(requester);
        vm.expectEmit(address(market));
        emit IJobMarket.Withdrawn(requester, ESCROW1);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(market), requester, ESCROW1);
        vm.prank(requester);
        assertEq(market.withdraw(), ESCROW1);
        assertEq(token.balanceOf(requester), before + ESCROW1);
        assertEq(market.credits(requester), 0);
        assertEq(token.balanceOf(address(market)), 0);
    }

    function test_withdraw_revertsTwice() public {
        uint256 id = createJob(1);
        vm.prank(requester);
        market.cancel(id);
        vm.prank(requester);
        market.withdraw();
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToWithdraw.selector, requester));
        market.withdraw();
    }

    function test_withdraw_revertsWithoutCredit() public {
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToWithdraw.selector, keeper));
        market.withdraw();
    }

    function test_withdraw_providerPay() public {
        settledJob();
        address p = makeAddr("p");
        vm.prank(p);
        assertEq(market.withdraw(), PAY);
        assertEq(token.balanceOf(p), PAY);
    }

    // ---------------------------------------------------------------- withdrawFees

    function test_withdrawFees() public {
        settledJob();
        uint256 fees = FEE - FEE * 5000 / BPS;
        assertEq(market.protocolFees(), fees);
        vm.expectEmit(address(market));
        emit IJobMarket.FeesWithdrawn(treasury, fees);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(market), treasury, fees);
        vm.prank(keeper); // permissionless
        assertEq(market.withdrawFees(), fees);
        assertEq(token.balanceOf(treasury), fees);
        assertEq(market.protocolFees(), 0);
        assertEq(market.auditPool(), FEE * 5000 / BPS + PREMIUM, "the audit share and the premium stay");
    }

    function test_withdrawFees_revertsWhenNone() public {
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToWithdraw.selector, treasury));
        market.withdrawFees();
    }

    function test_withdrawFees_revertsTwice() public {
        settledJob();
        market.withdrawFees();
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToWithdraw.selector, treasury));
        market.withdrawFees();
    }

    // ---------------------------------------------------------------- views

    function test_views_initial() public view {
        assertEq(market.owner(), owner);
        assertEq(market.token(), address(token));
        assertEq(market.registry(), address(registry));
        assertEq(market.treasury(), treasury);
        assertTrue(market.isMatcher(matcher));
        assertFalse(market.isMatcher(requester));
        assertEq(market.jobCount(), 0);
        assertEq(market.protocolFees(), 0);
        assertEq(market.auditPool(), 0);
        assertEq(market.totalBonds(), 0);
        assertEq(market.credits(requester), 0);
        assertParams(defaultParams());
        assertEq(
            market.maxJobLifetime(),
            uint256(1 days) + 1 days + 30 minutes + 1 days + 10 minutes + 2 * (10 minutes + 30 minutes + 10 minutes)
        );
    }

    function test_views_unknownJob() public view {
        assertState(42, IJobMarket.JobState.None);
        IJobMarket.Job memory j = market.job(42);
        assertEq(j.requester, address(0));
        assertEq(uint256(j.deadline), 0);
        assertEq(uint256(j.replicas), 0);
        assertEq(market.participants(42).length, 0);
        assertEq(market.revealedDigest(42, 0), bytes32(0));
        assertEq(market.challengeBond(42), 0);
    }

    function testFuzz_escrowFor(uint32 units, uint80 price, uint8 replicas) public view {
        IJobMarket.JobRequest memory r = req(units, price, replicas);
        uint256 payment = uint256(replicas) * units * price;
        uint256 fee = payment * 250 / BPS;
        if (fee < 1e14) fee = 1e14; // the fee floor
        if (payment == 0) fee = 0;
        uint256 premium = replicas == 1 ? payment * 3000 / BPS : 0;
        assertEq(market.escrowFor(r), payment + fee + premium);
    }
}
