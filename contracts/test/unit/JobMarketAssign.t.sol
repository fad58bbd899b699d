// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";

/// @notice assign and assignBatch (assignVerifiers is covered with audits).
contract JobMarketAssignTest is UnitBase {
    function customProvider(string memory name, IProviderRegistry.Terms memory t, uint96 stakeAmount)
        internal
        returns (address p)
    {
        p = makeAddr(name);
        vm.prank(owner);
        token.mint(p, stakeAmount);
        vm.startPrank(p);
        registry.register(t);
        token.approve(address(registry), stakeAmount);
        registry.stake(stakeAmount);
        vm.stopPrank();
    }

    // ---------------------------------------------------------------- assign

    function test_assign() public {
        address a = newProvider("a", PRICE / 2);
        address b = newProvider("b", PRICE);
        address c = newProvider("c", PRICE * 3 / 4);
        uint256 id = createJob(3);
        uint32 deadline = uint32(block.timestamp + 1 hours);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, a, 0, PRICE, deadline); // v2: everyone at the clearing price
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, b, 1, PRICE, deadline);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id, c, 2, PRICE, deadline);
        vm.prank(matcher);
        market.assign(id, three(a, b, c));

        assertState(id, IJobMarket.JobState.Assigned);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.deadline), deadline);
        assertEq(uint256(j.participants), 3);
        assertEq(uint256(j.clearingPrice), PRICE, "clearing price = highest ask");
        IJobMarket.Participant[] memory ps = market.participants(id);
        assertEq(ps.length, 3);
        assertEq(ps[0].provider, a);
        assertEq(ps[1].provider, b);
        assertEq(ps[2].provider, c);
        for (uint256 i; i < 3; ++i) {
            assertEq(uint256(ps[i].commitment), 0);
            assertEq(uint256(ps[i].commitBlock), 0);
            assertEq(registry.provider(ps[i].provider).locked, COLLATERAL, "collateral locked");
        }
        assertEq(registry.freeStake(a), PROVIDER_STAKE - COLLATERAL);
    }

    function test_assign_atAcceptDeadline() public {
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        vm.warp(deadlineOf(id));
        assignJob(id, one(p));
        assertState(id, IJobMarket.JobState.Assigned);
    }

    function test_assign_revertsForNonMatcher() public {
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotMatcher.selector, requester));
        market.assign(id, one(p));
    }

    function test_assign_revertsForRemovedMatcher() public {
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        vm.prank(owner);
        market.setMatcher(matcher, false);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotMatcher.selector, matcher));
        market.assign(id, one(p));
    }

    function test_assign_revertsUnknownJob() public {
        address p = newProvider("p", PRICE);
        vm.prank(matcher);
        vm.expectRevert(unexpected(5, IJobMarket.JobState.None, S_OPEN));
        market.assign(5, one(p));
    }

    function test_assign_revertsWhenAssigned() public {
        address p = newProvider("p", PRICE);
        address q = newProvider("q", PRICE);
        uint256 id = assignedJob(p);
        vm.prank(matcher);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_OPEN));
        market.assign(id, one(q));
    }

    function test_assign_revertsAfterAcceptDeadline() public {
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        uint256 acceptBy = deadlineOf(id);
        vm.warp(acceptBy + 1);
        vm.prank(matcher);
        vm.expectRevert(passed(id, acceptBy));
        market.assign(id, one(p));
    }

    function test_assign_revertsTooFewProviders() public {
        address[] memory ps = newProviders(2, PRICE);
        uint256 id = createJob(3);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id, 2, 3));
        market.assign(id, ps);
    }

    function test_assign_revertsTooManyProviders() public {
        address[] memory ps = newProviders(2, PRICE);
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id, 2, 1));
        market.assign(id, ps);
    }

    function test_assign_revertsEmptyList() public {
        uint256 id = createJob(1);
        address[] memory none = new address[](0);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id, 0, 1));
        market.assign(id, none);
    }

    function test_assign_revertsDuplicateProvider() public {
        address p = newProvider("p", PRICE);
        address q = newProvider("q", PRICE);
        uint256 id = createJob(3);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketDuplicateProvider.selector, id, p));
        market.assign(id, three(p, q, p));
    }

    function test_assign_revertsExcludedNoShow() public {
        address lazy1 = newProvider("lazy1", PRICE);
        address lazy2 = newProvider("lazy2", PRICE);
        address fresh = newProvider("fresh", PRICE);
        address fresh2 = newProvider("fresh2", PRICE);
        address lazy3 = newProvider("lazy3", PRICE);
        uint256 id = createJob(3);
        assignJob(id, three(lazy1, lazy2, lazy3));
        skipTime(1 hours + 1);
        market.expire(id);
        assertState(id, IJobMarket.JobState.Open);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketProviderExcluded.selector, id, lazy2));
        market.assign(id, three(fresh, lazy2, fresh2));
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketProviderExcluded.selector, id, lazy1));
        market.assign(id, three(lazy1, fresh, fresh2));
    }

    function test_assign_excludedOnlyForThatJob() public {
        address lazy = newProvider("lazy", PRICE);
        uint256 id = assignedJob(lazy);
        skipTime(1 hours + 1);
        market.expire(id);
        uint256 other = assignedJob(lazy); // a different job takes it
        assertState(other, IJobMarket.JobState.Assigned);
    }

    function test_assign_revertsUnregistered() public {
        address nobody = makeAddr("nobody");
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryNotRegistered.selector, nobody));
        market.assign(id, one(nobody));
    }

    function test_assign_revertsUnbondingProvider() public {
        address p = newProvider("p", PRICE);
        vm.prank(p);
        registry.requestUnbond(1e18);
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProviderUnbonding.selector, p));
        market.assign(id, one(p));
    }

    function test_assign_revertsUnsupportedProfile() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 0);
        t.profileMask = 1 << CPU_PROFILE;
        address cpu = customProvider("cpu", t, PROVIDER_STAKE);
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.profile = CUDA_PROFILE;
        uint256 id = createReq(r);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProfileUnsupported.selector, cpu, CUDA_PROFILE)
        );
        market.assign(id, one(cpu));
    }

    function test_assign_revertsInsufficientVram() public {
        address p = newProvider("p", PRICE); // 80 GiB
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.minVramGiB = 141;
        uint256 id = createReq(r);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryInsufficientVram.selector, p, uint16(80), uint16(141))
        );
        market.assign(id, one(p));
    }

    function test_assign_revertsPriceTooHigh() public {
        address p = newProvider("p", PRICE + 1);
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, p, PRICE + 1, PRICE)
        );
        market.assign(id, one(p));
    }

    function test_assign_revertsInsufficientStake() public {
        address small = customProvider("small", terms(PRICE, 80), uint96(COLLATERAL - 1));
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryInsufficientStake.selector, small, COLLATERAL - 1, COLLATERAL
            )
        );
        market.assign(id, one(small));
    }

    function test_assign_failureRollsBackEarlierLocks() public {
        address a = newProvider("a", PRICE);
        address expensive = newProvider("expensive", 2 * PRICE);
        address b = newProvider("b", PRICE);
        uint256 id = createJob(3);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, expensive, 2 * PRICE, PRICE)
        );
        market.assign(id, three(a, b, expensive));
        assertEq(registry.provider(a).locked, 0);
        assertState(id, IJobMarket.JobState.Open);
    }

    function testFuzz_assign_priceVsMax(uint80 ask, uint80 maxPrice) public {
        maxPrice = uint80(bound(maxPrice, 1, 1e18));
        ask = uint80(bound(ask, 1, 2e18));
        address p = newProvider("p", ask);
        uint256 id = createReq(req(UNITS, maxPrice, 1));
        vm.prank(matcher);
        if (ask > maxPrice) {
            vm.expectRevert(
                abi.encodeWithSelector(IProviderRegistry.ProviderRegistryPriceTooHigh.selector, p, ask, maxPrice)
            );
            market.assign(id, one(p));
            return;
        }
        market.assign(id, one(p));
        assertEq(uint256(market.job(id).clearingPrice), ask);
        assertEq(registry.provider(p).locked, 10 * uint256(UNITS) * ask, "v2: collateral at the clearing price");
    }

    function testFuzz_assign_clearingPriceIsMaxAsk(uint8 replicas, uint256 seed) public {
        replicas = oddReplicas(replicas);
        address[] memory ps = new address[](replicas);
        uint80 highest;
        for (uint256 i; i < replicas; ++i) {
            uint80 ask = uint80(bound(uint256(keccak256(abi.encode(seed, i))), 1, PRICE));
            if (ask > highest) highest = ask;
            ps[i] = newProvider(string.concat("p", vm.toString(i)), ask);
        }
        uint256 id = createJob(replicas);
        assignJob(id, ps);
        assertEq(uint256(market.job(id).clearingPrice), highest);
    }

    function testFuzz_assign_collateralMultiple(uint8 multiple, uint96 stakeAmount) public {
        multiple = uint8(bound(multiple, 1, 20));
        stakeAmount = uint96(bound(stakeAmount, 1, 10 * COLLATERAL));
        IJobMarket.Params memory prm = defaultParams();
        prm.collateralMultiple = multiple;
        prm.auditBps = 5000; // the audit bound holds for every multiple
        applyParams(prm);
        address p = customProvider("p", terms(PRICE, 80), stakeAmount);
        uint256 id = createJob(1);
        uint256 collateral = uint256(multiple) * PAY;
        vm.prank(matcher);
        if (collateral > stakeAmount) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IProviderRegistry.ProviderRegistryInsufficientStake.selector, p, uint256(stakeAmount), collateral
                )
            );
            market.assign(id, one(p));
            return;
        }
        market.assign(id, one(p));
        assertEq(registry.provider(p).locked, collateral);
        assertEq(registry.freeStake(p), stakeAmount - collateral);
    }

    // ---------------------------------------------------------------- assignBatch

    function lists2(address[] memory a, address[] memory b) internal pure returns (address[][] memory l) {
        l = new address[][](2);
        l[0] = a;
        l[1] = b;
    }

    function test_assignBatch() public {
        address a = newProvider("a", PRICE);
        address b = newProvider("b", PRICE / 2);
        address c = newProvider("c", PRICE);
        uint256 id1 = createJob(1);
        address d = newProvider("d", PRICE);
        uint256 id2 = createJob(3);
        uint32 deadline = uint32(block.timestamp + 1 hours);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id1, a, 0, PRICE, deadline);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id2, b, 0, PRICE, deadline);
        vm.expectEmit(address(market));
        emit IJobMarket.ProviderAssigned(id2, c, 1, PRICE, deadline);
        vm.prank(matcher);
        market.assignBatch(ids2(id1, id2), lists2(one(a), three(b, c, d)));
        assertState(id1, IJobMarket.JobState.Assigned);
        assertState(id2, IJobMarket.JobState.Assigned);
        assertEq(market.participants(id2)[1].provider, c);
        assertEq(registry.provider(b).locked, COLLATERAL);
    }

    function test_assignBatch_revertsEmpty() public {
        uint256[] memory none = new uint256[](0);
        address[][] memory noLists = new address[][](0);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.assignBatch(none, noLists);
    }

    function test_assignBatch_revertsLengthMismatch() public {
        address a = newProvider("a", PRICE);
        uint256 id1 = createJob(1);
        uint256 id2 = createJob(1);
        address[][] memory l = new address[][](1);
        l[0] = one(a);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 2, 1));
        market.assignBatch(ids2(id1, id2), l);
    }

    function test_assignBatch_revertsEmptyIdsWithLists() public {
        address a = newProvider("a", PRICE);
        address[][] memory l = new address[][](1);
        l[0] = one(a);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 1));
        market.assignBatch(new uint256[](0), l);
    }

    function test_assignBatch_revertsForNonMatcher() public {
        address a = newProvider("a", PRICE);
        uint256 id1 = createJob(1);
        address[][] memory l = new address[][](1);
        l[0] = one(a);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotMatcher.selector, keeper));
        market.assignBatch(ids1(id1), l);
    }

    /// @notice v2 (replaces "one failure reverts all"): the failing item is skipped and reported.
    function test_assignBatch_skipsFailingItem() public {
        address a = newProvider("a", PRICE);
        address b = newProvider("b", PRICE);
        uint256 id1 = createJob(1);
        uint256 id2 = createJob(1);
        vm.expectEmit(address(market));
        emit IJobMarket.BatchItemSkipped(
            id2,
            market.assign.selector,
            abi.encodeWithSelector(IJobMarket.JobMarketWrongProviderCount.selector, id2, 2, 1)
        );
        vm.prank(matcher);
        market.assignBatch(ids2(id1, id2), lists2(one(a), two(a, b)));
        assertState(id1, IJobMarket.JobState.Assigned);
        assertState(id2, IJobMarket.JobState.Open);
        assertEq(registry.provider(a).locked, COLLATERAL);
        assertEq(registry.provider(b).locked, 0);
    }

    /// @notice Attack 2 (assign side): an exec window below the provider's own minimum is rejected.
    function test_assign_revertsExecWindowBelowProviderMinimum() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.minExecWindow = 2 hours;
        address slow = customProvider("slow", t, PROVIDER_STAKE);
        uint256 id = createJob(1); // 1 hour exec window
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryExecWindowTooShort.selector, slow, uint32(1 hours), uint32(2 hours)
            )
        );
        market.assign(id, one(slow));
    }

    function test_assign_revertsRequesterAsExecutor() public {
        address[] memory ps = newProviders(3, PRICE);
        uint256 id = createJob(3);
        ps[1] = requester;
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRequesterAsProvider.selector, id, requester));
        market.assign(id, ps);
    }

    function test_assign_revertsTooManyUnitsForProvider() public {
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.maxUnits = UNITS - 1;
        address small = customProvider("small", t, PROVIDER_STAKE);
        uint256 id = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.ProviderRegistryTooManyUnits.selector, small, UNITS, UNITS - 1)
        );
        market.assign(id, one(small));
    }

    function test_assignBatch_sameProviderTwoJobs() public {
        address a = newProvider("a", PRICE);
        uint256 id1 = createJob(1);
        uint256 id2 = createJob(1);
        vm.prank(matcher);
        market.assignBatch(ids2(id1, id2), lists2(one(a), one(a)));
        assertEq(registry.provider(a).locked, 2 * COLLATERAL);
    }
}
