// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract ProviderRegistryTest is UnitBase {
    uint40 internal constant MAX_UNBONDING = 365 days;

    address internal alice = makeAddr("alice");
    address internal p; // registered and staked with PROVIDER_STAKE

    function setUp() public override {
        super.setUp();
        p = newProvider("p", PRICE);
    }

    function cpuOnlyTerms(uint80 price) internal pure returns (IProviderRegistry.Terms memory t) {
        t = terms(price, 0);
        t.profileMask = 1 << CPU_PROFILE;
        t.gpuModel = bytes32("cpu");
    }

    function fund(address who, uint256 amount) internal {
        vm.prank(owner);
        token.mint(who, amount);
        vm.prank(who);
        token.approve(address(registry), amount);
    }

    /// @notice Requirements that lock `amount` (a multiple of PRICE) from a provider asking PRICE:
    /// units = amount / PRICE at collateral multiple 1.
    function lockReq(uint96 amount, uint8 profile_, uint16 vram, uint80 maxPrice)
        internal
        pure
        returns (IProviderRegistry.Requirements memory)
    {
        require(amount % PRICE == 0, "lockReq: amount not a multiple of PRICE");
        return IProviderRegistry.Requirements({
            profile: profile_,
            minVramGiB: vram,
            maxPricePerUnit: maxPrice,
            units: uint32(amount / PRICE),
            execWindow: 1 hours,
            collateralMultiple: 1
        });
    }

    function lockExec(address[] memory who, IProviderRegistry.Requirements memory r)
        internal
        returns (uint80 price, uint96 collateral)
    {
        vm.prank(address(market));
        return registry.lockExecutors(1, who, r);
    }

    function lockAs(address who, uint96 amount) internal returns (uint80 price) {
        (price,) = lockExec(one(who), lockReq(amount, CPU_PROFILE, 0, PRICE));
    }

    // ---------------------------------------------------------------- constructor and views

    function test_constructor() public {
        ProviderRegistry r = new ProviderRegistry(token, alice, 3 days);
        assertEq(r.owner(), alice);
        assertEq(r.token(), address(token));
        assertEq(r.market(), address(0));
        assertEq(uint256(r.unbondingPeriod()), 3 days);
        assertEq(r.profileCount(), 0);
        assertEq(r.totalStaked(), 0);
    }

    function test_constructor_revertsZeroPeriod() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector, uint40(0), 1, MAX_UNBONDING
            )
        );
        new ProviderRegistry(token, alice, 0);
    }

    function test_constructor_revertsPeriodAboveCap() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector,
                MAX_UNBONDING + 1,
                1,
                MAX_UNBONDING
            )
        );
        new ProviderRegistry(token, alice, MAX_UNBONDING + 1);
    }

    function test_views() public view {
        assertEq(registry.token(), address(token));
        assertEq(registry.market(), address(market));
        assertEq(registry.profileCount(), 2);
        assertEq(registry.profile(CPU_PROFILE), keccak256("torch-2.13.0/cpu/float32/deterministic"));
        assertEq(registry.profile(CUDA_PROFILE), keccak256("torch-2.13.0/cuda-sm90/float32/deterministic"));
        assertEq(registry.profile(2), bytes32(0));
        assertEq(uint256(registry.unbondingPeriod()), UNBONDING);
        assertEq(registry.totalStaked(), PROVIDER_STAKE);
        assertEq(registry.freeStake(p), PROVIDER_STAKE);
        assertEq(registry.freeStake(alice), 0);
        IProviderRegistry.Provider memory rec = registry.provider(alice);
        assertFalse(rec.registered);
        assertEq(rec.stake, 0);
    }

    // ---------------------------------------------------------------- register

    function test_register() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 24);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.ProviderRegistered(alice, t);
        vm.prank(alice);
        registry.register(t);
        IProviderRegistry.Provider memory rec = registry.provider(alice);
        assertTrue(rec.registered);
        assertEq(rec.pricePerUnit, PRICE);
        assertEq(uint256(rec.vramGiB), 24);
        assertEq(rec.profileMask, 3);
        assertEq(rec.gpuModel, bytes32("NVIDIA H100"));
        assertEq(rec.endpoint, "http://127.0.0.1:9000");
        assertEq(rec.stake, 0);
        assertEq(rec.locked, 0);
        assertEq(uint256(rec.unbondAt), 0);
    }

    function test_register_revertsWhenRegistered() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 24);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryAlreadyRegistered.selector, p));
        registry.register(t);
    }

    function test_register_revertsZeroPrice() public {
        IProviderRegistry.Terms memory t = terms(0, 24);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidTerms.selector, 3, uint80(0)));
        registry.register(t);
    }

    function test_register_revertsEmptyProfileMask() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 24);
        t.profileMask = 0;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidTerms.selector, 0, PRICE));
        registry.register(t);
    }

    function test_register_revertsUnknownProfileBit() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 24);
        t.profileMask = 1 << 2; // only profiles 0 and 1 exist
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidTerms.selector, 4, PRICE));
        registry.register(t);
    }

    function testFuzz_register_profileMask(uint256 mask, uint80 price) public {
        IProviderRegistry.Terms memory t = terms(price, 8);
        t.profileMask = mask;
        bool ok = price != 0 && mask != 0 && mask >> 2 == 0;
        vm.prank(alice);
        if (!ok) {
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidTerms.selector, mask, price)
            );
        }
        registry.register(t);
        assertEq(registry.provider(alice).registered, ok);
    }

    // ---------------------------------------------------------------- updateTerms

    function test_updateTerms() public {
        IProviderRegistry.Terms memory t = cpuOnlyTerms(PRICE / 2);
        t.endpoint = "https://p.example";
        vm.expectEmit(address(registry));
        emit IProviderRegistry.TermsUpdated(p, t);
        vm.prank(p);
        registry.updateTerms(t);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.pricePerUnit, PRICE / 2);
        assertEq(rec.profileMask, 1);
        assertEq(uint256(rec.vramGiB), 0);
        assertEq(rec.gpuModel, bytes32("cpu"));
        assertEq(rec.endpoint, "https://p.example");
        assertEq(rec.stake, PROVIDER_STAKE, "stake untouched");
    }

    function test_updateTerms_revertsUnregistered() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 8);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.updateTerms(t);
    }

    function test_updateTerms_revertsInvalidTerms() public {
        IProviderRegistry.Terms memory t = terms(0, 8);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidTerms.selector, 3, uint80(0)));
        registry.updateTerms(t);
    }

    function test_updateTerms_keepsPriceOfRunningJob() public {
        uint256 id = assignedJob(p);
        IProviderRegistry.Terms memory t = terms(PRICE / 4, 80);
        vm.prank(p);
        registry.updateTerms(t);
        assertEq(market.job(id).clearingPrice, PRICE, "assigned price stays");
    }

    // ---------------------------------------------------------------- stake

    function test_stake() public {
        fund(p, 50e18);
        uint256 before = token.balanceOf(address(registry));
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Staked(p, 50e18, PROVIDER_STAKE + 50e18);
        vm.prank(p);
        registry.stake(50e18);
        assertEq(registry.provider(p).stake, PROVIDER_STAKE + 50e18);
        assertEq(registry.totalStaked(), PROVIDER_STAKE + 50e18);
        assertEq(token.balanceOf(address(registry)), before + 50e18);
        assertEq(token.balanceOf(p), 0);
    }

    function test_stake_revertsZero() public {
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryZeroAmount.selector));
        registry.stake(0);
    }

    function test_stake_revertsUnregistered() public {
        fund(alice, 1e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.stake(1e18);
    }

    function test_stake_revertsWithoutAllowance() public {
        vm.prank(owner);
        token.mint(p, 1e18);
        vm.prank(p);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(registry), 0, 1e18)
        );
        registry.stake(1e18);
    }

    function testFuzz_stake(uint96 a, uint96 b) public {
        a = uint96(bound(a, 1, type(uint96).max / 2));
        b = uint96(bound(b, 1, type(uint96).max / 2));
        vm.prank(alice);
        registry.register(terms(PRICE, 8));
        fund(alice, uint256(a) + b);
        vm.startPrank(alice);
        registry.stake(a);
        registry.stake(b);
        vm.stopPrank();
        assertEq(registry.provider(alice).stake, uint256(a) + b);
        assertEq(registry.freeStake(alice), uint256(a) + b);
        assertEq(registry.totalStaked(), uint256(PROVIDER_STAKE) + a + b);
        assertEq(token.balanceOf(alice), 0, "exact pull");
    }

    // ---------------------------------------------------------------- requestUnbond

    function test_requestUnbond() public {
        uint40 unbondAt = uint40(block.timestamp) + UNBONDING;
        vm.expectEmit(address(registry));
        emit IProviderRegistry.UnbondRequested(p, 400e18, unbondAt);
        vm.prank(p);
        registry.requestUnbond(400e18);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.unbonding, 400e18);
        assertEq(uint256(rec.unbondAt), unbondAt);
        assertEq(rec.stake, PROVIDER_STAKE, "stake stays until withdrawn");
        assertEq(registry.freeStake(p), PROVIDER_STAKE - 400e18);
    }

    function test_requestUnbond_revertsZero() public {
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryZeroAmount.selector));
        registry.requestUnbond(0);
    }

    function test_requestUnbond_revertsUnregistered() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.requestUnbond(1);
    }

    function test_requestUnbond_revertsWhenPending() public {
        vm.prank(p);
        registry.requestUnbond(1e18);
        uint40 unbondAt = uint40(block.timestamp) + UNBONDING;
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryUnbondPending.selector, p, unbondAt));
        registry.requestUnbond(1e18);
    }

    function test_requestUnbond_revertsAboveFreeStake() public {
        assignedJob(p); // locks COLLATERAL
        uint256 free = PROVIDER_STAKE - COLLATERAL;
        vm.prank(p);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInsufficientStake.selector, p, free, uint256(free + 1)
            )
        );
        registry.requestUnbond(uint96(free + 1));
    }

    function testFuzz_requestUnbond(uint96 amount) public {
        assignedJob(p);
        uint256 free = PROVIDER_STAKE - COLLATERAL;
        vm.assume(amount != 0);
        vm.prank(p);
        if (amount > free) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IProviderRegistry.ProviderRegistryInsufficientStake.selector, p, free, uint256(amount)
                )
            );
            registry.requestUnbond(amount);
            return;
        }
        registry.requestUnbond(amount);
        assertEq(registry.freeStake(p), free - amount);
        assertEq(registry.provider(p).unbonding, amount);
    }

    // ---------------------------------------------------------------- cancelUnbond

    function test_cancelUnbond() public {
        vm.prank(p);
        registry.requestUnbond(3e18);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.UnbondCancelled(p, 3e18);
        vm.prank(p);
        registry.cancelUnbond();
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.unbonding, 0);
        assertEq(uint256(rec.unbondAt), 0);
        assertEq(registry.freeStake(p), PROVIDER_STAKE);
        // Back in business: it can be assigned again.
        uint256 id = assignedJob(p);
        assertState(id, IJobMarket.JobState.Assigned);
    }

    function test_cancelUnbond_revertsWithoutRequest() public {
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNoUnbondPending.selector, p));
        registry.cancelUnbond();
    }

    function test_cancelUnbond_revertsUnregistered() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.cancelUnbond();
    }

    // ---------------------------------------------------------------- withdrawUnbonded

    function test_withdrawUnbonded() public {
        vm.prank(p);
        registry.requestUnbond(400e18);
        vm.warp(block.timestamp + UNBONDING);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Unbonded(p, 400e18);
        vm.prank(p);
        assertEq(registry.withdrawUnbonded(), 400e18);
        assertEq(token.balanceOf(p), 400e18);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.stake, PROVIDER_STAKE - 400e18);
        assertEq(rec.unbonding, 0);
        assertEq(uint256(rec.unbondAt), 0);
        assertEq(registry.totalStaked(), PROVIDER_STAKE - 400e18);
    }

    function test_withdrawUnbonded_revertsBeforeUnlock() public {
        vm.prank(p);
        registry.requestUnbond(1e18);
        uint40 unbondAt = uint40(block.timestamp) + UNBONDING;
        vm.warp(unbondAt - 1);
        vm.prank(p);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryUnbondLocked.selector, p, unbondAt, uint256(unbondAt - 1)
            )
        );
        registry.withdrawUnbonded();
    }

    function test_withdrawUnbonded_revertsWithoutRequest() public {
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNoUnbondPending.selector, p));
        registry.withdrawUnbonded();
    }

    function test_withdrawUnbonded_revertsUnregistered() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.withdrawUnbonded();
    }

    function testFuzz_withdrawUnbonded_time(uint96 amount, uint256 wait) public {
        amount = uint96(bound(amount, 1, PROVIDER_STAKE));
        wait = bound(wait, 0, 2 * uint256(UNBONDING));
        vm.prank(p);
        registry.requestUnbond(amount);
        uint40 unbondAt = uint40(block.timestamp) + UNBONDING;
        vm.warp(block.timestamp + wait);
        vm.prank(p);
        if (block.timestamp < unbondAt) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IProviderRegistry.ProviderRegistryUnbondLocked.selector, p, unbondAt, block.timestamp
                )
            );
            registry.withdrawUnbonded();
            return;
        }
        assertEq(registry.withdrawUnbonded(), amount);
        assertEq(token.balanceOf(p), amount);
        assertEq(registry.provider(p).stake, PROVIDER_STAKE - amount);
    }

    /// Locked collateral never leaves with an unbond: the payout is capped at stake - locked.
    function test_withdrawUnbonded_payoutCappedByLockedCollateral() public {
        vm.prank(p);
        registry.requestUnbond(PROVIDER_STAKE);
        // A job can no longer lock it (unbonding), so lock directly as the market would have before.
        vm.prank(p);
        registry.cancelUnbond();
        lockAs(p, uint96(COLLATERAL));
        vm.prank(p);
        registry.requestUnbond(uint96(PROVIDER_STAKE - COLLATERAL));
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(p);
        assertEq(registry.withdrawUnbonded(), PROVIDER_STAKE - COLLATERAL);
        assertEq(registry.provider(p).stake, COLLATERAL);
        assertEq(registry.provider(p).locked, COLLATERAL);
    }

    function test_withdrawUnbonded_afterSlashDuringDelay() public {
        lockAs(p, 100e18);
        vm.prank(p);
        registry.requestUnbond(uint96(PROVIDER_STAKE - 100e18));
        vm.prank(address(market));
        registry.slash(7, p, 100e18);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(p);
        assertEq(registry.withdrawUnbonded(), PROVIDER_STAKE - 100e18);
        assertEq(registry.provider(p).stake, 0);
        assertEq(registry.totalStaked(), 0);
    }

    // ---------------------------------------------------------------- market hooks: access

    function test_lockExecutors_onlyMarket() public {
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryUnauthorizedMarket.selector, alice));
        registry.lockExecutors(1, one(p), r);
    }

    function test_releaseCollateral_onlyMarket() public {
        lockAs(p, 1e18);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryUnauthorizedMarket.selector, p));
        registry.releaseCollateral(1, p, 1e18, true);
    }

    function test_slash_onlyMarket() public {
        lockAs(p, 1e18);
        vm.prank(owner); // not even the owner
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryUnauthorizedMarket.selector, owner));
        registry.slash(1, p, 1e18);
    }

    // ---------------------------------------------------------------- lockExecutors

    function test_lockExecutors() public {
        assertEq(lockAs(p, 10e18), PRICE, "returns the clearing price");
        assertEq(registry.provider(p).locked, 10e18);
        assertEq(registry.freeStake(p), PROVIDER_STAKE - 10e18);
        assertEq(registry.provider(p).stake, PROVIDER_STAKE);
    }

    function test_lockExecutors_clearingPriceIsHighestAskAndCollateralAtIt() public {
        address cheap = newProvider("cheap", PRICE / 4);
        address mid = newProvider("mid", PRICE / 2);
        IProviderRegistry.Requirements memory r = lockReq(uint96(100 * PRICE), CPU_PROFILE, 0, 1e18); // huge max
        r.collateralMultiple = 10;
        (uint80 clearing, uint96 collateral) = lockExec(three(cheap, mid, p), r);
        assertEq(uint256(clearing), PRICE, "highest ask, not the max price");
        assertEq(uint256(collateral), 10 * 100 * PRICE, "multiple x units x clearing price");
        assertEq(registry.provider(cheap).locked, collateral, "every executor locks the same");
        assertEq(registry.provider(mid).locked, collateral);
        assertEq(registry.provider(p).locked, collateral);
    }

    function test_lockAndRelease_emitNoEvents() public {
        vm.recordLogs();
        lockAs(p, 1e18);
        vm.prank(address(market));
        registry.releaseCollateral(1, p, 1e18, true);
        assertEq(vm.getRecordedLogs().length, 0, "the market's events carry locks and releases");
    }

    function test_lockExecutors_revertsUnregistered() public {
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, alice));
        registry.lockExecutors(1, one(alice), r);
    }

    function test_lockExecutors_revertsUnbonding() public {
        vm.prank(p);
        registry.requestUnbond(1);
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProviderUnbonding.selector, p));
        registry.lockExecutors(1, one(p), r);
    }

    function test_lockExecutors_revertsProfileUnsupported() public {
        vm.prank(p);
        registry.updateTerms(cpuOnlyTerms(PRICE));
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CUDA_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProfileUnsupported.selector, p, CUDA_PROFILE)
        );
        registry.lockExecutors(1, one(p), r);
    }

    function test_lockExecutors_revertsInsufficientVram() public {
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 81, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInsufficientVram.selector, p, uint16(80), uint16(81)
            )
        );
        registry.lockExecutors(1, one(p), r);
    }

    function test_lockExecutors_revertsPriceTooHigh() public {
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE - 1);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, p, PRICE, PRICE - 1)
        );
        registry.lockExecutors(1, one(p), r);
    }

    function test_lockExecutors_revertsExecWindowBelowProviderMinimum() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.minExecWindow = 2 hours;
        vm.prank(p);
        registry.updateTerms(t);
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryExecWindowTooShort.selector, p, uint32(1 hours), uint32(2 hours)
            )
        );
        registry.lockExecutors(1, one(p), r);
        r.execWindow = 2 hours;
        lockExec(one(p), r); // exactly the provider's minimum is accepted
        assertEq(registry.provider(p).locked, PRICE);
    }

    function test_lockExecutors_revertsTooManyUnits() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.maxUnits = 5;
        vm.prank(p);
        registry.updateTerms(t);
        IProviderRegistry.Requirements memory r = lockReq(uint96(6 * PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryTooManyUnits.selector, p, uint32(6), uint32(5))
        );
        registry.lockExecutors(1, one(p), r);
        lockExec(one(p), lockReq(uint96(5 * PRICE), CPU_PROFILE, 0, PRICE));
    }

    function test_lockExecutors_revertsInsufficientStake() public {
        lockAs(p, 600e18);
        IProviderRegistry.Requirements memory r = lockReq(uint96(400e18 + PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInsufficientStake.selector, p, uint256(400e18), uint256(400e18 + PRICE)
            )
        );
        registry.lockExecutors(1, one(p), r);
    }

    function test_lockExecutors_oneFailureLocksNobody() public {
        address poor = newProvider("poor", PRICE);
        lockAs(poor, 1000e18);
        IProviderRegistry.Requirements memory r = lockReq(uint96(PRICE), CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInsufficientStake.selector, poor, 0, PRICE)
        );
        registry.lockExecutors(1, two(p, poor), r);
        assertEq(registry.provider(p).locked, 0);
    }

    function testFuzz_lockExecutors_price(uint80 ask, uint80 maxPrice) public {
        ask = uint80(bound(ask, 1, 1e20));
        vm.prank(p);
        registry.updateTerms(terms(ask, 80));
        IProviderRegistry.Requirements memory r = IProviderRegistry.Requirements({
            profile: CPU_PROFILE, minVramGiB: 0, maxPricePerUnit: maxPrice, units: 1, execWindow: 1 hours, collateralMultiple: 1
        });
        vm.prank(address(market));
        if (ask > maxPrice) {
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, p, ask, maxPrice)
            );
            registry.lockExecutors(1, one(p), r);
            return;
        }
        (uint80 clearing, uint96 collateral) = registry.lockExecutors(1, one(p), r);
        assertEq(uint256(clearing), ask);
        assertEq(uint256(collateral), ask, "collateral at the ask, whatever the max price");
        assertEq(registry.provider(p).locked, ask);
    }

    function testFuzz_lockExecutors_amount(uint32 firstUnits, uint32 secondUnits) public {
        firstUnits = uint32(bound(firstUnits, 0, 1_000_000));
        secondUnits = uint32(bound(secondUnits, 1, 1_000_000));
        uint96 first = uint96(firstUnits * PRICE);
        uint96 second = uint96(secondUnits * PRICE);
        if (first != 0) lockAs(p, first);
        uint256 free = PROVIDER_STAKE - first;
        IProviderRegistry.Requirements memory r = lockReq(second, CPU_PROFILE, 0, PRICE);
        vm.prank(address(market));
        if (second > free) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IProviderRegistry.ProviderRegistryInsufficientStake.selector, p, free, uint256(second)
                )
            );
            registry.lockExecutors(1, one(p), r);
            return;
        }
        registry.lockExecutors(1, one(p), r);
        assertEq(registry.provider(p).locked, uint256(first) + second);
    }

    // ---------------------------------------------------------------- draw weights and drawVerifiers

    function test_profileStakeAndDrawWeight_followStakeAndTerms() public {
        assertEq(registry.profileStake(CPU_PROFILE), PROVIDER_STAKE);
        assertEq(registry.drawWeight(CUDA_PROFILE, p), PROVIDER_STAKE, "weight in every profile of the mask");
        fund(p, 5e18);
        vm.prank(p);
        registry.stake(5e18);
        assertEq(registry.drawWeight(CPU_PROFILE, p), PROVIDER_STAKE + 5e18, "stake raises it");
        vm.prank(p);
        registry.updateTerms(cpuOnlyTerms(PRICE));
        assertEq(registry.drawWeight(CUDA_PROFILE, p), 0, "leaving a profile removes the leaf");
        assertEq(registry.profileStake(CUDA_PROFILE), 0);
        vm.prank(p);
        registry.requestUnbond(1e18);
        assertEq(registry.drawWeight(CPU_PROFILE, p), 0, "unbonding: not drawable");
        assertEq(registry.profileStake(CPU_PROFILE), 0);
        vm.prank(p);
        registry.cancelUnbond();
        assertEq(registry.drawWeight(CPU_PROFILE, p), PROVIDER_STAKE + 5e18);
        lockAs(p, 10e18);
        vm.prank(address(market));
        registry.slash(1, p, 10e18);
        assertEq(registry.drawWeight(CPU_PROFILE, p), PROVIDER_STAKE + 5e18 - 10e18, "slash lowers it");
        vm.prank(p);
        registry.requestUnbond(5e18);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(p);
        registry.withdrawUnbonded();
        assertEq(registry.drawWeight(CPU_PROFILE, p), PROVIDER_STAKE - 10e18, "back after the withdrawal");
    }

    function drawReq(bytes32 seed, uint8 count, uint96 collateral) internal pure returns (IProviderRegistry.Draw memory) {
        return IProviderRegistry.Draw({
            seed: seed, profile: CPU_PROFILE, count: count, firstDraw: 0, maxDraws: 64, collateral: collateral
        });
    }

    function test_drawVerifiers_onlyMarket() public {
        IProviderRegistry.Draw memory d = drawReq(bytes32(uint256(1)), 1, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryUnauthorizedMarket.selector, alice));
        registry.drawVerifiers(1, d, new address[](0));
    }

    function test_drawVerifiers_excludesAndLocks() public {
        address q = newProvider("q", PRICE);
        address r = newProvider("r", PRICE);
        IProviderRegistry.Draw memory d = drawReq(keccak256("seed"), 2, 1e18);
        nextEpoch(); // draws weigh stake as it stood at the start of the epoch
        vm.prank(address(market));
        (address[] memory drawn, uint256 draws) = registry.drawVerifiers(1, d, one(p));
        assertEq(drawn.length, 2);
        assertTrue(draws >= 2);
        assertTrue(drawn[0] != p && drawn[1] != p, "excluded");
        assertTrue(drawn[0] != drawn[1], "distinct");
        assertTrue((drawn[0] == q || drawn[0] == r) && (drawn[1] == q || drawn[1] == r));
        assertEq(registry.provider(q).locked, 1e18, "collateral locked on draw");
        assertEq(registry.provider(r).locked, 1e18);
    }

    function test_drawVerifiers_skipsWithoutFreeStakeAndEmptyTree() public {
        nextEpoch();
        lockAs(p, uint96(PROVIDER_STAKE)); // all of p's stake locked
        IProviderRegistry.Draw memory d = drawReq(keccak256("seed"), 1, 1e18);
        vm.prank(address(market));
        (address[] memory drawn, uint256 draws) = registry.drawVerifiers(1, d, new address[](0));
        assertEq(drawn.length, 0, "no free stake: not drawn");
        assertEq(draws, 64, "the budget bounds the work");
        d.profile = 1;
        vm.prank(p);
        registry.updateTerms(cpuOnlyTerms(PRICE));
        nextEpoch();
        vm.prank(address(market));
        (drawn, draws) = registry.drawVerifiers(1, d, new address[](0));
        assertEq(drawn.length + draws, 0, "empty tree");
    }

    // ---------------------------------------------------------------- releaseCollateral

    function test_releaseCollateral_completed() public {
        lockAs(p, 10e18);
        vm.prank(address(market));
        registry.releaseCollateral(1, p, 10e18, true);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.locked, 0);
        assertEq(uint256(rec.jobsDone), 1);
        assertEq(rec.stake, PROVIDER_STAKE);
    }

    function test_releaseCollateral_notCompleted() public {
        lockAs(p, 10e18);
        vm.prank(address(market));
        registry.releaseCollateral(1, p, 4e18, false);
        assertEq(registry.provider(p).locked, 6e18);
        assertEq(uint256(registry.provider(p).jobsDone), 0);
    }

    // ---------------------------------------------------------------- slash

    function test_slash() public {
        lockAs(p, 10e18);
        uint256 marketBefore = token.balanceOf(address(market));
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(42, p, 10e18);
        vm.prank(address(market));
        registry.slash(42, p, 10e18);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.stake, PROVIDER_STAKE - 10e18);
        assertEq(rec.locked, 0);
        assertEq(uint256(rec.jobsSlashed), 1);
        assertEq(registry.totalStaked(), PROVIDER_STAKE - 10e18);
        assertEq(token.balanceOf(address(market)), marketBefore + 10e18, "slash goes to the market");
    }

    function test_slash_unbondingStaysWithinStake() public {
        lockAs(p, 10e18);
        vm.prank(p);
        registry.requestUnbond(uint96(PROVIDER_STAKE - 10e18));
        vm.prank(address(market));
        registry.slash(1, p, 10e18);
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.unbonding, PROVIDER_STAKE - 10e18);
        assertEq(registry.freeStake(p), 0);
    }

    // ---------------------------------------------------------------- setMarket

    function test_setMarket() public {
        ProviderRegistry r = new ProviderRegistry(token, owner, UNBONDING);
        vm.expectEmit(address(r));
        emit IProviderRegistry.MarketSet(address(market));
        vm.prank(owner);
        r.setMarket(address(market));
        assertEq(r.market(), address(market));
    }

    function test_setMarket_revertsTwice() public {
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryMarketAlreadySet.selector, address(market))
        );
        registry.setMarket(alice);
    }

    function test_setMarket_revertsZero() public {
        ProviderRegistry r = new ProviderRegistry(token, owner, UNBONDING);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryMarketAlreadySet.selector, address(0))
        );
        r.setMarket(address(0));
    }

    function test_setMarket_revertsForNonOwner() public {
        ProviderRegistry r = new ProviderRegistry(token, owner, UNBONDING);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        r.setMarket(address(market));
    }

    function test_setMarket_revertsWhenPeriodBelowTwiceLifetime() public {
        uint256 minimum = 2 * market.maxJobLifetime();
        uint40 period = uint40(minimum - 1);
        ProviderRegistry r = new ProviderRegistry(token, owner, period);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector, period, minimum, MAX_UNBONDING
            )
        );
        r.setMarket(address(market));
        assertEq(r.market(), address(0));
    }

    // ---------------------------------------------------------------- addProfile

    function test_addProfile() public {
        bytes32 d = keccak256("torch-2.13.0/rocm/float32/deterministic");
        vm.expectEmit(address(registry));
        emit IProviderRegistry.ProfileAdded(2, d);
        vm.prank(owner);
        assertEq(uint256(registry.addProfile(d)), 2);
        assertEq(registry.profile(2), d);
        assertEq(registry.profileCount(), 3);
        // The new profile bit is now accepted in terms.
        IProviderRegistry.Terms memory t = terms(PRICE, 8);
        t.profileMask = 1 << 2;
        vm.prank(alice);
        registry.register(t);
    }

    function test_addProfile_revertsZero() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidProfile.selector, bytes32(0)));
        registry.addProfile(bytes32(0));
    }

    function test_addProfile_revertsKnown() public {
        bytes32 d = keccak256("torch-2.13.0/cpu/float32/deterministic");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidProfile.selector, d));
        registry.addProfile(d);
    }

    function test_addProfile_revertsForNonOwner() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        registry.addProfile(keccak256("x"));
    }

    function test_addProfile_revertsAt64() public {
        vm.startPrank(owner);
        for (uint256 i = 2; i < 64; ++i) {
            assertEq(uint256(registry.addProfile(keccak256(abi.encode("profile", i)))), i);
        }
        assertEq(registry.profileCount(), 64);
        bytes32 d = keccak256("one too many");
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInvalidProfile.selector, d));
        registry.addProfile(d);
        vm.stopPrank();
        assertEq(registry.profileCount(), 64);
        // With all 64 defined, any non-zero 64-bit mask is valid, and bit 64 is not.
        IProviderRegistry.Terms memory t = terms(PRICE, 8);
        t.profileMask = uint256(type(uint64).max) + 1;
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidTerms.selector, uint256(type(uint64).max) + 1, PRICE
            )
        );
        registry.register(t);
        t.profileMask = type(uint64).max;
        vm.prank(alice);
        registry.register(t);
        assertEq(registry.provider(alice).profileMask, type(uint64).max);
    }

    // ---------------------------------------------------------------- setUnbondingPeriod

    function test_setUnbondingPeriod() public {
        vm.expectEmit(address(registry));
        emit IProviderRegistry.UnbondingPeriodSet(30 days);
        vm.prank(owner);
        registry.setUnbondingPeriod(30 days);
        assertEq(uint256(registry.unbondingPeriod()), 30 days);
        vm.prank(p);
        registry.requestUnbond(1);
        assertEq(uint256(registry.provider(p).unbondAt), block.timestamp + 30 days);
    }

    function test_setUnbondingPeriod_revertsBelowTwiceLifetime() public {
        uint256 minimum = 2 * market.maxJobLifetime();
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector,
                uint40(minimum - 1),
                minimum,
                MAX_UNBONDING
            )
        );
        registry.setUnbondingPeriod(uint40(minimum - 1));
    }

    function test_setUnbondingPeriod_revertsAboveCap() public {
        uint256 minimum = 2 * market.maxJobLifetime();
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector,
                MAX_UNBONDING + 1,
                minimum,
                MAX_UNBONDING
            )
        );
        registry.setUnbondingPeriod(MAX_UNBONDING + 1);
    }

    function test_setUnbondingPeriod_revertsForNonOwner() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        registry.setUnbondingPeriod(30 days);
    }

    function testFuzz_setUnbondingPeriod(uint40 period) public {
        uint256 minimum = 2 * market.maxJobLifetime();
        vm.prank(owner);
        if (period < minimum || period > MAX_UNBONDING) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IProviderRegistry.ProviderRegistryInvalidUnbondingPeriod.selector, period, minimum, MAX_UNBONDING
                )
            );
            registry.setUnbondingPeriod(period);
            assertEq(uint256(registry.unbondingPeriod()), UNBONDING);
            return;
        }
        registry.setUnbondingPeriod(period);
        assertEq(uint256(registry.unbondingPeriod()), period);
    }

    // ---------------------------------------------------------------- through the market

    function test_unbondingProviderCannotBeAssigned() public {
        vm.prank(p);
        registry.requestUnbond(1);
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProviderUnbonding.selector, p));
        market.assign(id, one(p));
    }
}
