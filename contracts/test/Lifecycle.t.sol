// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MarketFixture} from "./utils/MarketFixture.sol";
import {IJobMarket} from "../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";

/// @notice Every lifecycle path end to end, with who paid and who was paid checked to the wei.
contract LifecycleTest is MarketFixture {
    bytes32 internal constant GOOD = keccak256("correct output");
    bytes32 internal constant BAD = keccak256("fabricated output");

    uint256 internal constant PAY = uint256(UNITS) * PRICE; // one replica at the max price
    uint256 internal constant FEE = PAY * 250 / 10_000;
    uint256 internal constant COLLATERAL = 10 * PAY; // collateralMultiple 10 at the clearing price
    uint256 internal constant PREMIUM = PAY * 3000 / 10_000; // auditBps 1000 x 3 verifiers

    function test_replicas1_settledAfterWindow() public {
        setAuditBps(0);
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        assertEq(token.balanceOf(address(market)), PAY + FEE + PREMIUM, "escrow pulled, audit premium included");
        assignJob(id, one(p));
        assertEq(registry.provider(p).locked, COLLATERAL, "collateral locked");
        commitAs(p, id, GOOD);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Committed));
        skipTime(10 minutes + 1);
        vm.prank(keeper);
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
        assertEq(market.credits(p), PAY, "provider paid its price");
        assertEq(market.credits(requester), 0, "nothing to refund at the max price");
        assertEq(market.auditPool(), FEE / 2 + PREMIUM, "half the fee and the premium fund audits");
        assertEq(market.protocolFees(), FEE / 2, "the other half of the fee to the treasury");
        IProviderRegistry.Provider memory rec = registry.provider(p);
        assertEq(rec.locked, 0);
        assertEq(rec.jobsDone, 1);
        vm.prank(p);
        assertEq(market.withdraw(), PAY);
        assertEq(token.balanceOf(p), PAY);
    }

    function test_replicas1_cheaperProviderRefundsDifference() public {
        setAuditBps(0);
        address p = newProvider("p", PRICE / 2);
        uint256 id = createJob(1);
        assignJob(id, one(p));
        commitAs(p, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        uint256 paid = PAY / 2;
        uint256 fee = paid * 250 / 10_000;
        uint256 premium = paid * 3000 / 10_000;
        assertEq(market.credits(p), paid);
        assertEq(
            market.credits(requester),
            PAY + FEE + PREMIUM - paid - fee - premium,
            "difference, its fee and its premium refunded"
        );
    }

    function test_replicas3_honest() public {
        address[] memory ps = newProviders(3, PRICE);
        uint256 id = createJob(3);
        assignJob(id, ps);
        for (uint256 i; i < 3; ++i) commitAs(ps[i], id, GOOD);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Revealing));
        for (uint256 i; i < 3; ++i) revealAs(ps[i], id, GOOD);
        market.finalize(id); // every reveal is in: no need to wait for the window
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(ps[i]), PAY);
            assertEq(registry.provider(ps[i]).stake, PROVIDER_STAKE, "nobody honest slashed");
        }
    }

    /// @notice v2: replicas that disagree do not out-vote each other; drawn verifiers decide.
    function test_replicas3_disagreementGoesToVerifiers() public {
        address[] memory ps = newProviders(3, PRICE);
        stakeVerifiers(4);
        uint256 id = createJob(3);
        assignJob(id, ps);
        commitAs(ps[0], id, GOOD);
        commitAs(ps[1], id, GOOD);
        commitAs(ps[2], id, BAD);
        revealAs(ps[0], id, GOOD);
        revealAs(ps[1], id, GOOD);
        revealAs(ps[2], id, BAD);
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Auditing), "disagreement: audit round 1");
        address[] memory vs = staffAndCommit(id, GOOD);
        assertEq(vs.length, 3);
        revealAll(vs, id, GOOD);
        uint256 supplyBefore = token.totalSupply();
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
        uint256 reward = COLLATERAL * 3000 / 10_000;
        uint256 compensation = COLLATERAL / 2;
        assertEq(market.credits(ps[0]), PAY + reward / 5, "honest replica paid and rewarded");
        assertEq(market.credits(ps[1]), PAY + reward / 5);
        assertEq(market.credits(ps[2]), 0);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), reward / 5, "verifiers share the reward (the pool is empty)");
            assertEq(registry.provider(vs[i]).locked, 0);
        }
        assertEq(registry.provider(ps[2]).stake, PROVIDER_STAKE - COLLATERAL, "cheater slashed");
        assertEq(registry.provider(ps[2]).jobsSlashed, 1);
        uint256 escrow = 3 * (PAY + FEE);
        assertEq(market.credits(requester), escrow - 2 * PAY - 2 * FEE + compensation);
        assertEq(supplyBefore - token.totalSupply(), COLLATERAL - compensation - reward, "burned");
    }

    function test_replicas1_auditCatchesCheater() public {
        setAuditBps(10_000);
        address cheater = newProvider("cheater", PRICE);
        stakeVerifiers(3);
        uint256 id = createJob(1);
        assignJob(id, one(cheater));
        commitAs(cheater, id, BAD);
        nextBlock();
        assertTrue(market.drawAudit(id), "audit drawn");
        address[] memory vs = staffAndCommit(id, GOOD);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Revealing));
        revealAs(cheater, id, BAD);
        revealAll(vs, id, GOOD);
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Refunded));
        assertEq(registry.provider(cheater).stake, PROVIDER_STAKE - COLLATERAL, "cheater slashed");
        uint256 reward = COLLATERAL * 3000 / 10_000;
        for (uint256 i; i < 3; ++i) {
            assertEq(market.credits(vs[i]), reward / 3, "verifiers paid from the slash (the pool is empty)");
            assertEq(registry.provider(vs[i]).locked, 0);
        }
        IJobMarket.Params memory params = market.params();
        uint256 escrow = PAY + FEE + PAY * params.auditBps * params.verifiers / 10_000;
        assertEq(market.credits(requester), escrow + COLLATERAL / 2, "whole escrow back plus compensation");
        assertEq(market.credits(cheater), 0);
    }

    function test_replicas1_challengeLostPaysVerifiersFromBond() public {
        setAuditBps(0);
        address p = newProvider("p", PRICE);
        stakeVerifiers(3);
        uint256 id = createJob(1);
        assignJob(id, one(p));
        commitAs(p, id, GOOD);
        uint256 bond = 3 * PAY; // verifiers x units x clearing price
        vm.prank(requester);
        market.challenge(id);
        assertEq(market.challengeBond(id), bond);
        address[] memory vs = staffAndCommit(id, GOOD);
        revealAs(p, id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 poolBefore = market.auditPool();
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
        assertEq(market.credits(p), PAY, "executor paid");
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), PAY, "bond pays each verifier the clearing pay");
        assertEq(market.credits(requester), 0, "bond lost, nothing refunded");
        assertEq(market.totalBonds(), 0);
        assertEq(market.auditPool() - poolBefore, FEE / 2 + PREMIUM, "fee share and premium to the pool");
    }

    function test_noShow_slashedThenReopenedAndSettled() public {
        setAuditBps(0);
        address lazy = newProvider("lazy", PRICE);
        address p = newProvider("p", PRICE);
        uint256 id = createJob(1);
        assignJob(id, one(lazy));
        skipTime(1 hours + 1);
        vm.prank(keeper);
        market.expire(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Open), "reopened");
        assertEq(registry.provider(lazy).stake, PROVIDER_STAKE - COLLATERAL, "no-show slashed");
        assertEq(market.credits(requester), 0, "v2: a no-show never credits the requester");
        assertEq(market.auditPool(), COLLATERAL * 3000 / 10_000, "its reward share funds audits");
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketProviderExcluded.selector, id, lazy));
        market.assign(id, one(lazy));
        assignJob(id, one(p));
        commitAs(p, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
        assertEq(market.credits(p), PAY);
    }

    function test_noShowTwice_expiresWithFullRefund() public {
        address a = newProvider("a", PRICE);
        address b = newProvider("b", PRICE);
        uint256 id = createJob(1);
        assignJob(id, one(a));
        skipTime(1 hours + 1);
        market.expire(id);
        assignJob(id, one(b));
        skipTime(1 hours + 1);
        market.expire(id);
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Expired));
        assertEq(market.credits(requester), PAY + FEE + PREMIUM, "escrow back, no compensation for no-shows");
        assertEq(registry.provider(a).locked + registry.provider(b).locked, 0);
    }

    function test_unbondThenSlashDuringDelay() public {
        address p = newProvider("p", PRICE);
        address[] memory others = newProviders(2, PRICE);
        stakeVerifiers(3);
        address[] memory ps = new address[](3);
        ps[0] = p;
        ps[1] = others[0];
        ps[2] = others[1];
        uint256 id = createJob(3);
        assignJob(id, ps);
        uint96 free = uint96(registry.freeStake(p));
        vm.prank(p);
        registry.requestUnbond(free);
        // Unbonding providers take no new work.
        uint256 id2 = createJob(1);
        vm.prank(matcher);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.ProviderRegistryProviderUnbonding.selector, p));
        market.assign(id2, one(p));
        commitAs(p, id, BAD);
        commitAs(others[0], id, GOOD);
        commitAs(others[1], id, GOOD);
        revealAs(p, id, BAD);
        revealAs(others[0], id, GOOD);
        revealAs(others[1], id, GOOD);
        market.finalize(id); // the replicas disagree: drawn verifiers decide
        address[] memory vs = staffAndCommit(id, GOOD);
        for (uint256 i; i < vs.length; ++i) assertTrue(vs[i] != p, "an unbonding provider is never drawn");
        revealAll(vs, id, GOOD);
        market.finalize(id);
        assertEq(registry.provider(p).stake, PROVIDER_STAKE - COLLATERAL, "slashed while unbonding");
        vm.prank(p);
        vm.expectRevert();
        registry.withdrawUnbonded();
        skipTime(UNBONDING);
        vm.prank(p);
        assertEq(registry.withdrawUnbonded(), free, "the free part leaves after the delay");
        assertEq(registry.provider(p).stake, 0);
    }
}
